// Test-only Node module (not part of the addon): drives the real ProgressMonitor + ProgressToJs from a worker
// thread the way TensorRT's builder calls IProgressMonitor, so phase events, step throttling and cancellation
// (stepComplete returning false) are tested without TensorRT. Built by test/tensorrt-progress.test.ts.
#include <napi.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tensorrt/logger.h"
#include "tensorrt/progress_js.h"

namespace {

using yqp::trt::ProgressMonitor;

class Simulate final : public Napi::AsyncWorker {
 public:
  Simulate(Napi::Env env, Napi::Function onProgress, int steps, int stepMs,
           std::shared_ptr<std::atomic<bool>> cancelled)
      : Napi::AsyncWorker(env, "yqp-trt:progress-check"),
        deferred_(Napi::Promise::Deferred::New(env)),
        drain_(std::make_shared<yqp::trt::AfterDrain>()),
        tsfn_(yqp::trt::MakeProgressTsfn(env, onProgress, "yqp-trt:progress-check", drain_)),
        steps_(steps),
        stepMs_(stepMs),
        cancelled_(std::move(cancelled)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    ProgressMonitor monitor(yqp::trt::ProgressToJs(tsfn_), cancelled_);
    nvinfer1::IProgressMonitor& m = monitor;  // called through TensorRT's interface, as the builder does
    m.phaseStart("Building engine", nullptr, 1);
    m.phaseStart("Tactic selection", "Building engine", steps_);
    for (int i = 0; i < steps_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(stepMs_));
      ++run_;
      if (!m.stepComplete("Tactic selection", i)) {
        stopped_ = true;
        break;
      }
    }
    m.phaseFinish("Tactic selection");
    m.stepComplete("Building engine", 0);
    m.phaseFinish("Building engine");
  }

  void OnOK() override {
    Napi::Object out = Napi::Object::New(Env());
    out.Set("stepsRun", run_);
    out.Set("stopped", stopped_);
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out));
    Napi::Promise::Deferred deferred = deferred_;
    tsfn_.Release();
    drain_->Then(Env(), [deferred, ref](Napi::Env) { deferred.Resolve(ref->Value()); });
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<yqp::trt::AfterDrain> drain_;
  Napi::ThreadSafeFunction tsfn_;
  int steps_;
  int stepMs_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  int run_ = 0;
  bool stopped_ = false;
};

// simulate(onProgress, steps, stepMs) -> { promise, cancel }
Napi::Value SimulateFn(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* w = new Simulate(env, info[0].As<Napi::Function>(), info[1].As<Napi::Number>().Int32Value(),
                         info[2].As<Napi::Number>().Int32Value(), cancelled);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", w->Promise());
  handle.Set("cancel", Napi::Function::New(env, [cancelled](Napi::CallbackInfo const&) { cancelled->store(true); }));
  w->Queue();
  return handle;
}

// logger(threads, perThread) -> { last, withLast, kept, clean }: many threads log through TensorRT's ILogger
// interface at once (TensorRT does); the last error is kept and appended to failure messages.
Napi::Value LoggerFn(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  int threads = info[0].As<Napi::Number>().Int32Value();
  int perThread = info[1].As<Napi::Number>().Int32Value();
  yqp::trt::Logger logger;
  std::string clean = logger.WithLastError("buildSerializedNetwork failed");
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&logger, t, perThread] {
      nvinfer1::ILogger& l = logger;
      for (int i = 0; i < perThread; ++i) {
        l.log(nvinfer1::ILogger::Severity::kVERBOSE, "tactic timing");
        l.log(nvinfer1::ILogger::Severity::kWARNING, ("warning " + std::to_string(t)).c_str());
      }
    });
  for (auto& th : pool) th.join();
  nvinfer1::ILogger& l = logger;
  l.log(nvinfer1::ILogger::Severity::kERROR, "IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error");
  l.log(nvinfer1::ILogger::Severity::kINFO, "after the error");
  Napi::Object out = Napi::Object::New(env);
  out.Set("clean", clean);
  out.Set("last", logger.LastError());
  out.Set("withLast", logger.WithLastError("buildSerializedNetwork failed"));
  std::vector<std::string> kept = logger.Drain();
  Napi::Array a = Napi::Array::New(env, kept.size());
  for (size_t i = 0; i < kept.size(); ++i) a.Set(static_cast<uint32_t>(i), kept[i]);
  out.Set("kept", a);
  out.Set("afterDrain", static_cast<double>(logger.Drain().size()));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("simulate", Napi::Function::New(env, SimulateFn));
  exports.Set("logger", Napi::Function::New(env, LoggerFn));
  return exports;
}

}  // namespace

NODE_API_MODULE(progress_check, Init)
