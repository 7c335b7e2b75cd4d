#include "kernels/kernel_bench.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/job.h"

namespace yqp::kernels {
namespace {

class TimeWorker final : public Napi::AsyncWorker {
 public:
  TimeWorker(Napi::Env env, Job job, int iterations, int warmup, Napi::Object keep)
      : Napi::AsyncWorker(env, "yqp-trt:kernels-time"),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)),
        iterations_(iterations),
        warmup_(warmup),
        keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    cudaStream_t s = reinterpret_cast<cudaStream_t>(job_.stream);
    std::vector<cudaEvent_t> ev(iterations_ + 1);
    for (auto& e : ev) cudaEventCreate(&e);
    cudaError_t err = cudaSuccess;
    for (int i = 0; i < warmup_ && err == cudaSuccess; ++i)
      err = LaunchSample(job_.items.data(), static_cast<int>(job_.items.size()), job_.spec,
                         reinterpret_cast<void*>(job_.deviceOut), s);
    for (int i = 0; i < iterations_ && err == cudaSuccess; ++i) {
      cudaEventRecord(ev[i], s);
      err = LaunchSample(job_.items.data(), static_cast<int>(job_.items.size()), job_.spec,
                         reinterpret_cast<void*>(job_.deviceOut), s);
    }
    cudaEventRecord(ev[iterations_], s);
    if (err == cudaSuccess) err = cudaEventSynchronize(ev[iterations_]);
    for (int i = 0; i < iterations_ && err == cudaSuccess; ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, ev[i], ev[i + 1]);
      ms_.push_back(ms);
    }
    for (auto& e : ev) cudaEventDestroy(e);
    if (err != cudaSuccess) SetError(CudaMessage("timeSample", err));
  }
  void OnOK() override {
    Napi::Array a = Napi::Array::New(Env(), ms_.size());
    for (size_t i = 0; i < ms_.size(); ++i) a.Set(static_cast<uint32_t>(i), ms_[i]);
    deferred_.Resolve(a);
  }
  void OnError(Napi::Error const& e) override {
    deferred_.Reject(core::CodedError(Env(), e.Message(), "E_NATIVE").Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  int iterations_, warmup_;
  Napi::ObjectReference keep_;
  std::vector<double> ms_;
};

Napi::Value TimeSample(Napi::CallbackInfo const& info) {
  Napi::Object jobObj = info[0].As<Napi::Object>();
  Job j = ParseJob(jobObj, false, false);
  j.Resolve(j.deviceFrames);
  Napi::Object opts =
      info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
  auto* w = new TimeWorker(info.Env(), std::move(j), std::max(1, Int(opts, "iterations", 50)),
                           std::max(0, Int(opts, "warmup", 5)), jobObj);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The preprocess -> model stand-in -> decode chain, eager against one CUDA graph replay. CPU launch time is the
// host time spent enqueuing one iteration (the stream is drained between iterations so a full launch queue
// never stalls the enqueue); total is enqueue plus wait.
class ChainWorker final : public Napi::AsyncWorker {
 public:
  ChainWorker(Napi::Env env, Job job, int stages, int iterations, Napi::Object keep)
      : Napi::AsyncWorker(env, "yqp-trt:kernels-chain"),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)),
        stages_(stages),
        iterations_(iterations),
        keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  cudaError_t Enqueue(cudaStream_t s) {
    cudaError_t err = cudaMemsetAsync(count_, 0, sizeof(int32_t), s);
    if (err == cudaSuccess)
      err = LaunchSample(job_.items.data(), static_cast<int>(job_.items.size()), job_.spec,
                         reinterpret_cast<void*>(job_.deviceOut), s);
    float* data = reinterpret_cast<float*>(job_.deviceOut);
    int64_t n = static_cast<int64_t>(job_.NeededOutBytes() / 4);
    for (int i = 0; i < stages_ && err == cudaSuccess; ++i) err = LaunchChainStage(data, n, 0.9f + 0.01f * i, 0.01f, s);
    if (err == cudaSuccess) err = LaunchChainDecode(data, n / 16, 16, 0.75f, count_, s);
    if (err == cudaSuccess) err = cudaMemcpyAsync(hostCount_, count_, sizeof(int32_t), cudaMemcpyDeviceToHost, s);
    return err;
  }

  void Execute() override {
    using Clock = std::chrono::steady_clock;
    cudaStream_t s = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (err == cudaSuccess) err = cudaMalloc(&count_, sizeof(int32_t));
    if (err == cudaSuccess) err = cudaHostAlloc(&hostCount_, sizeof(int32_t), cudaHostAllocDefault);
    std::vector<double> eagerLaunch, eagerTotal, graphLaunch, graphTotal;
    int32_t eagerCount = -1, graphCount = -2;
    for (int i = 0; i < iterations_ + 10 && err == cudaSuccess; ++i) {
      auto t0 = Clock::now();
      err = Enqueue(s);
      auto t1 = Clock::now();
      if (err == cudaSuccess) err = cudaStreamSynchronize(s);
      auto t2 = Clock::now();
      if (i >= 10) {
        eagerLaunch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        eagerTotal.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
      }
    }
    eagerCount = *hostCount_;
    if (err == cudaSuccess) err = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (err == cudaSuccess) {
      cudaError_t e = Enqueue(s);
      err = cudaStreamEndCapture(s, &graph);
      if (e != cudaSuccess) err = e;
    }
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
    if (err == cudaSuccess) {
      size_t n = 0;
      cudaGraphGetNodes(graph, nullptr, &n);
      nodes_ = static_cast<int>(n);
    }
    for (int i = 0; i < iterations_ + 10 && err == cudaSuccess; ++i) {
      auto t0 = Clock::now();
      err = cudaGraphLaunch(exec, s);
      auto t1 = Clock::now();
      if (err == cudaSuccess) err = cudaStreamSynchronize(s);
      auto t2 = Clock::now();
      if (i >= 10) {
        graphLaunch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        graphTotal.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
      }
    }
    if (hostCount_ != nullptr) graphCount = *hostCount_;
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (count_ != nullptr) cudaFree(count_);
    if (hostCount_ != nullptr) cudaFreeHost(hostCount_);
    if (s != nullptr) cudaStreamDestroy(s);
    if (err != cudaSuccess) return SetError(CudaMessage("benchChain", err));
    eagerLaunchUs_ = Median(eagerLaunch);
    eagerTotalUs_ = Median(eagerTotal);
    graphLaunchUs_ = Median(graphLaunch);
    graphTotalUs_ = Median(graphTotal);
    sameResult_ = eagerCount == graphCount;
    decodeCount_ = graphCount;
  }
  void OnOK() override {
    Napi::Object r = Napi::Object::New(Env());
    r.Set("eagerLaunchUs", eagerLaunchUs_);
    r.Set("eagerTotalUs", eagerTotalUs_);
    r.Set("graphLaunchUs", graphLaunchUs_);
    r.Set("graphTotalUs", graphTotalUs_);
    r.Set("graphNodes", nodes_);
    r.Set("sameResult", sameResult_);
    r.Set("decodeCount", decodeCount_);
    deferred_.Resolve(r);
  }
  void OnError(Napi::Error const& e) override {
    deferred_.Reject(core::CodedError(Env(), e.Message(), "E_NATIVE").Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  int stages_, iterations_;
  Napi::ObjectReference keep_;
  int32_t* count_ = nullptr;
  int32_t* hostCount_ = nullptr;
  double eagerLaunchUs_ = 0, eagerTotalUs_ = 0, graphLaunchUs_ = 0, graphTotalUs_ = 0;
  int nodes_ = 0;
  bool sameResult_ = false;
  int32_t decodeCount_ = 0;
};

// benchChain(job, { stages, iterations }): job is a device job (its out is the chain's tensor, fp32).
Napi::Value BenchChain(Napi::CallbackInfo const& info) {
  Napi::Object jobObj = info[0].As<Napi::Object>();
  Job j = ParseJob(jobObj, false, false);
  j.Resolve(j.deviceFrames);
  if (j.spec.fp16) throw core::CodedError(info.Env(), "benchChain needs a float32 output", "E_ARGUMENT");
  Napi::Object opts =
      info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
  auto* w = new ChainWorker(info.Env(), std::move(j), std::max(0, Int(opts, "stages", 6)),
                            std::max(1, Int(opts, "iterations", 200)), jobObj);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void AddBenchmarks(Napi::Env env, Napi::Object kernels) {
  kernels.Set("timeSample", Napi::Function::New(env, TimeSample, "timeSample"));
  kernels.Set("benchChain", Napi::Function::New(env, BenchChain, "benchChain"));
}

}  // namespace yqp::kernels
