#include "core/completion.h"

#include "core/cuda_check.h"

namespace yqp::core {

namespace {

struct Pending {
  Napi::ThreadSafeFunction tsfn;
  std::function<void(Napi::Env, std::string const&)> done;
  cudaStream_t stream;
};

void Finish(Napi::Env env, Pending* p) {
  // Sticky errors (a faulting kernel) show on any later call; NotReady only means more work was queued since.
  cudaError_t e = cudaStreamQuery(p->stream);
  std::string error;
  if (e != cudaSuccess && e != cudaErrorNotReady) error = CudaError("work on the CUDA stream", e);
  else cudaGetLastError();
  auto done = std::move(p->done);
  p->tsfn.Release();
  delete p;
  done(env, error);
}

// Runs on a CUDA-internal thread: CUDA calls are not allowed here, only the hand-off.
void CUDART_CB HostDone(void* data) {
  auto* p = static_cast<Pending*>(data);
  napi_status s = p->tsfn.NonBlockingCall([p](Napi::Env env, Napi::Function) { Finish(env, p); });
  if (s != napi_ok) {
    // The environment is shutting down: nobody is left to tell.
    p->tsfn.Release();
    delete p;
  }
}

}  // namespace

Napi::Error CodedError(Napi::Env env, std::string const& message, char const* code) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void OnStreamComplete(Napi::Env env, cudaStream_t stream, std::function<void(Napi::Env, std::string const&)> done) {
  auto* p = new Pending{Napi::ThreadSafeFunction::New(env, Napi::Function(), "yqp-cuda-completion", 0, 1),
                        std::move(done), stream};
  cudaError_t e = cudaLaunchHostFunc(stream, HostDone, p);
  if (e != cudaSuccess) {
    auto d = std::move(p->done);
    p->tsfn.Release();
    delete p;
    d(env, CudaError("cudaLaunchHostFunc (completion)", e));
  }
}

void ResolveOnComplete(Napi::Env env, cudaStream_t stream, Napi::Promise::Deferred deferred,
                       std::function<Napi::Value(Napi::Env)> value) {
  OnStreamComplete(env, stream, [deferred, value](Napi::Env env, std::string const& error) {
    Napi::HandleScope scope(env);
    if (!error.empty()) {
      deferred.Reject(CodedError(env, error).Value());
      return;
    }
    try {
      deferred.Resolve(value ? value(env) : env.Undefined());
    } catch (Napi::Error const& e) {
      deferred.Reject(e.Value());
    }
  });
}

Napi::Promise StreamDone(Napi::Env env, cudaStream_t stream) {
  auto deferred = Napi::Promise::Deferred::New(env);
  ResolveOnComplete(env, stream, deferred);
  return deferred.Promise();
}

}  // namespace yqp::core
