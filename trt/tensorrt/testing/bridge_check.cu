// Test-only Node module (not part of the addon): runs the TensorRT runtime's own CUDA piece, MemoryOrder (contexts
// sharing user-managed memory never overlap on the GPU), on a real GPU with small kernels standing in for
// enqueueV3, and resolves through the core's completion. Built by build.sh; used by
// test/gpu/tensorrt-bridge.test.ts. Streams, pools, completion and graphs are tested by the core's own suite.
#include <napi.h>

#include <memory>

#include "core/completion.h"
#include "core/cuda_check.h"
#include "tensorrt/memory_order.h"

namespace {

// Spins for about `cycles` clock cycles, then writes `value`: a slow producer, so overlap would show.
__global__ void SpinThenWrite(float* x, long long cycles, float value) {
  long long start = clock64();
  while (clock64() - start < cycles) {
  }
  x[0] = value;
}

__global__ void CopyTimesTwo(float const* src, float* dst) { dst[0] = src[0] * 2.0f; }

struct Resources {
  cudaStream_t a = nullptr, b = nullptr;
  float* shared = nullptr;
  float* host = nullptr;
  ~Resources() {
    if (a) cudaStreamSynchronize(a);
    if (b) cudaStreamSynchronize(b);
    cudaFree(shared);
    cudaFreeHost(host);
    if (a) cudaStreamDestroy(a);
    if (b) cudaStreamDestroy(b);
  }
};

// ordered(cycles, serialize) -> Promise<number>: context A (stream a) spins then writes 7 into shared memory,
// context B (stream b) then reads it and writes twice that. With MemoryOrder B always sees 7 (-> 14).
Napi::Value Ordered(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  long long cycles = info[0].As<Napi::Number>().Int64Value();
  bool serialize = info[1].ToBoolean().Value();
  auto r = std::make_shared<Resources>();
  std::string error;
  std::shared_ptr<yqp::trt::MemoryOrder> order(yqp::trt::MemoryOrder::Create(&error));
  try {
    if (!order) throw std::runtime_error(error);
    yqp::core::CudaCheck("cudaStreamCreate", cudaStreamCreateWithFlags(&r->a, cudaStreamNonBlocking));
    yqp::core::CudaCheck("cudaStreamCreate", cudaStreamCreateWithFlags(&r->b, cudaStreamNonBlocking));
    yqp::core::CudaCheck("cudaMalloc", cudaMalloc(&r->shared, 2 * sizeof(float)));
    yqp::core::CudaCheck("cudaHostAlloc", cudaHostAlloc(&r->host, sizeof(float), cudaHostAllocDefault));
    yqp::core::CudaCheck("cudaMemset", cudaMemset(r->shared, 0, 2 * sizeof(float)));
    if (serialize && !order->Before(r->a, &error)) throw std::runtime_error(error);
    SpinThenWrite<<<1, 1, 0, r->a>>>(r->shared, cycles, 7.0f);
    if (serialize && !order->After(r->a, &error)) throw std::runtime_error(error);
    if (serialize && !order->Before(r->b, &error)) throw std::runtime_error(error);
    CopyTimesTwo<<<1, 1, 0, r->b>>>(r->shared, r->shared + 1);
    if (serialize && !order->After(r->b, &error)) throw std::runtime_error(error);
    yqp::core::CudaCheck("cudaMemcpyAsync",
                         cudaMemcpyAsync(r->host, r->shared + 1, sizeof(float), cudaMemcpyDeviceToHost, r->b));
  } catch (std::exception const& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto deferred = Napi::Promise::Deferred::New(env);
  yqp::core::OnStreamComplete(env, r->b, [r, order, deferred](Napi::Env e, std::string const& err) {
    if (!err.empty()) return deferred.Reject(Napi::Error::New(e, err).Value());
    deferred.Resolve(Napi::Number::New(e, *r->host));
  });
  return deferred.Promise();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ordered", Napi::Function::New(env, Ordered));
  return exports;
}

}  // namespace

NODE_API_MODULE(bridge_check, Init)
