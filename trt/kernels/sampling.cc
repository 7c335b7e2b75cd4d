#include "kernels/sampling.h"

#include <vector>

#include "kernels/job.h"

namespace yqp::kernels {
namespace {

Napi::Value Sample(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  Job j = ParseJob(info[0].As<Napi::Object>(), false, false);
  j.Resolve(j.deviceFrames);
  Check(env, "sample kernel launch",
        LaunchSample(j.items.data(), static_cast<int>(j.items.size()), j.spec, reinterpret_cast<void*>(j.deviceOut),
                     reinterpret_cast<cudaStream_t>(j.stream)));
  return env.Undefined();
}

Napi::Value SampleHost(Napi::CallbackInfo const& info) {
  Job j = ParseJob(info[0].As<Napi::Object>(), true, true);
  std::vector<uint64_t> bases;
  for (auto const& f : j.hostFrames) bases.push_back(reinterpret_cast<uint64_t>(f.data));
  j.Resolve(bases);
  SampleOnHost(j.items.data(), static_cast<int>(j.items.size()), j.spec, j.hostOut.data);
  return info.Env().Undefined();
}

// Waits on an event off the event loop. BlockingSync: the pool thread sleeps instead of spinning a core.
class DoneWorker final : public Napi::AsyncWorker {
 public:
  DoneWorker(Napi::Env env, cudaStream_t stream)
      : Napi::AsyncWorker(env, "yqp-trt:kernels-done"), deferred_(Napi::Promise::Deferred::New(env)) {
    err_ = cudaEventCreateWithFlags(&event_, cudaEventBlockingSync | cudaEventDisableTiming);
    if (err_ == cudaSuccess) err_ = cudaEventRecord(event_, stream);
  }
  ~DoneWorker() override {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    if (err_ == cudaSuccess) err_ = cudaEventSynchronize(event_);
    if (err_ != cudaSuccess) SetError(CudaMessage("stream completion", err_));
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(Napi::Error const& e) override {
    deferred_.Reject(core::CodedError(Env(), e.Message(), "E_NATIVE").Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  cudaEvent_t event_ = nullptr;
  cudaError_t err_ = cudaSuccess;
};

Napi::Value Done(Napi::CallbackInfo const& info) {
  cudaStream_t s = info.Length() > 0 ? reinterpret_cast<cudaStream_t>(ToPtr(info[0])) : nullptr;
#ifdef YQP_KERNELS_WITH_CORE
  return yqp::core::StreamDone(info.Env(), s);
#endif
  auto* w = new DoneWorker(info.Env(), s);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void AddSampling(Napi::Env env, Napi::Object kernels) {
  kernels.Set("sample", Napi::Function::New(env, Sample, "sample"));
  kernels.Set("sampleOnHost", Napi::Function::New(env, SampleHost, "sampleOnHost"));
  kernels.Set("done", Napi::Function::New(env, Done, "done"));
}

}  // namespace yqp::kernels
