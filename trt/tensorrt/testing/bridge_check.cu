// Test-only Node module (not part of the addon): drives core_bridge.cc on a real GPU with small kernels standing
// in for TensorRT's enqueueV3, so the CUDA side of the TensorRT runtime (streams, pinned staging, completion to
// JavaScript, graph capture/replay/fallback, ordering of contexts sharing memory) runs without TensorRT.
// Built by scripts/build-bridge-check.sh; used by test/gpu/tensorrt-bridge.test.ts.
#include <napi.h>

#include <cstring>
#include <memory>
#include <vector>

#include "tensorrt/core_bridge.h"

namespace {

using namespace yqp::trt::bridge;

__global__ void AddOne(float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

// Spins for about `cycles` clock cycles, then writes `value` (ordering checks need a slow producer).
__global__ void SpinThenWrite(float* x, long long cycles, float value) {
  long long start = clock64();
  while (clock64() - start < cycles) {
  }
  x[0] = value;
}

__global__ void CopyTimesTwo(float const* src, float* dst) { dst[0] = src[0] * 2.0f; }

struct State {
  std::unique_ptr<Stream> stream;
  std::unique_ptr<Buffer> device;
  std::unique_ptr<Buffer> pinned;
  std::unique_ptr<GraphCache> graphs;
  int n = 0;
};

Napi::Error Fail(Napi::Env env, std::string const& m) { return Napi::Error::New(env, m); }

// graphs(n, iterations, breakCapture) -> Promise<{ values, graphs, captureDisabled }>
// Each iteration is one "enqueue" through GraphCache::Run with the same key: plain, captured, replayed...
Napi::Value Graphs(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  auto st = std::make_shared<State>();
  st->n = info[0].As<Napi::Number>().Int32Value();
  int iterations = info[1].As<Napi::Number>().Int32Value();
  bool breakCapture = info[2].ToBoolean().Value();
  std::string error;
  size_t bytes = sizeof(float) * static_cast<size_t>(st->n);
  st->stream = AcquireStream(0, &error);
  if (st->stream) st->device = AllocDevice(0, bytes, &error);
  if (st->device) st->pinned = AllocPinned(bytes, &error);
  if (!st->pinned) throw Fail(env, error);
  st->graphs = MakeGraphCache();
  cudaStream_t s = st->stream->get();
  cudaMemsetAsync(st->device->data(), 0, bytes, s);
  auto enqueue = [&](cudaStream_t stream, std::string* err) {
    if (breakCapture) {
      // Synchronizing the stream is illegal while it is being captured and fine otherwise, like a TensorRT layer
      // that cannot be captured: the capture is invalidated and the bridge must fall back.
      cudaError_t e = cudaStreamSynchronize(stream);
      if (e != cudaSuccess) {
        *err = CudaError("cudaStreamSynchronize", e);
        return false;
      }
    }
    AddOne<<<(st->n + 255) / 256, 256, 0, stream>>>(static_cast<float*>(st->device->data()), st->n);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
      *err = CudaError("AddOne", e);
      return false;
    }
    return true;
  };
  for (int i = 0; i < iterations; ++i)
    if (!st->graphs->Run(42, s, enqueue, &error)) throw Fail(env, error);
  cudaMemcpyAsync(st->pinned->data(), st->device->data(), bytes, cudaMemcpyDeviceToHost, s);
  auto deferred = Napi::Promise::Deferred::New(env);
  OnStreamComplete(env, s, [st, deferred](Napi::Env e, std::string const& err) {
    if (!err.empty()) return deferred.Reject(Napi::Error::New(e, err).Value());
    Napi::Float32Array values = Napi::Float32Array::New(e, static_cast<size_t>(st->n));
    std::memcpy(values.Data(), st->pinned->data(), sizeof(float) * static_cast<size_t>(st->n));
    Napi::Object out = Napi::Object::New(e);
    out.Set("values", values);
    out.Set("graphs", Napi::Number::New(e, static_cast<double>(st->graphs->size())));
    out.Set("captureDisabled", st->graphs->captureDisabled());
    deferred.Resolve(out);
  });
  return deferred.Promise();
}

// spin(cycles) -> Promise<undefined>, resolved by the stream's completion while JavaScript keeps running.
Napi::Value Spin(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  auto st = std::make_shared<State>();
  std::string error;
  st->stream = AcquireStream(0, &error);
  if (st->stream) st->device = AllocDevice(0, sizeof(float), &error);
  if (!st->device) throw Fail(env, error);
  SpinThenWrite<<<1, 1, 0, st->stream->get()>>>(static_cast<float*>(st->device->data()),
                                                 static_cast<long long>(info[0].As<Napi::Number>().Int64Value()), 1.0f);
  auto deferred = Napi::Promise::Deferred::New(env);
  OnStreamComplete(env, st->stream->get(), [st, deferred](Napi::Env e, std::string const& err) {
    if (!err.empty()) return deferred.Reject(Napi::Error::New(e, err).Value());
    deferred.Resolve(e.Undefined());
  });
  return deferred.Promise();
}

// ordered(cycles, serialize) -> Promise<number>: context A spins then writes 7 into shared memory, context B (other
// stream) reads it and writes twice that. With the Serializer B sees 7 (-> 14); without, B usually reads 0.
Napi::Value Ordered(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  long long cycles = info[0].As<Napi::Number>().Int64Value();
  bool serialize = info[1].ToBoolean().Value();
  std::string error;
  auto a = std::shared_ptr<Stream>(AcquireStream(0, &error));
  auto b = std::shared_ptr<Stream>(AcquireStream(0, &error));
  auto shared = std::shared_ptr<Buffer>(AllocDevice(0, 2 * sizeof(float), &error));
  auto pinned = std::shared_ptr<Buffer>(AllocPinned(sizeof(float), &error));
  auto ser = std::shared_ptr<Serializer>(MakeSerializer(&error));
  if (!a || !b || !shared || !pinned || !ser) throw Fail(env, error);
  float* p = static_cast<float*>(shared->data());
  cudaMemset(p, 0, 2 * sizeof(float));
  if (serialize && !ser->Before(a->get(), &error)) throw Fail(env, error);
  SpinThenWrite<<<1, 1, 0, a->get()>>>(p, cycles, 7.0f);
  if (serialize && !ser->After(a->get(), &error)) throw Fail(env, error);
  if (serialize && !ser->Before(b->get(), &error)) throw Fail(env, error);
  CopyTimesTwo<<<1, 1, 0, b->get()>>>(p, p + 1);
  if (serialize && !ser->After(b->get(), &error)) throw Fail(env, error);
  cudaMemcpyAsync(pinned->data(), p + 1, sizeof(float), cudaMemcpyDeviceToHost, b->get());
  auto deferred = Napi::Promise::Deferred::New(env);
  OnStreamComplete(env, b->get(), [a, b, shared, pinned, ser, deferred](Napi::Env e, std::string const& err) {
    if (!err.empty()) return deferred.Reject(Napi::Error::New(e, err).Value());
    cudaStreamSynchronize(a->get());  // let A finish before its buffers go
    deferred.Resolve(Napi::Number::New(e, *static_cast<float*>(pinned->data())));
  });
  return deferred.Promise();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("graphs", Napi::Function::New(env, Graphs));
  exports.Set("spin", Napi::Function::New(env, Spin));
  exports.Set("ordered", Napi::Function::New(env, Ordered));
  return exports;
}

}  // namespace

NODE_API_MODULE(bridge_check, Init)
