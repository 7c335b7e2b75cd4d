// Test-only Node module (not part of the addon): runs JsBatchSource::Next() on a worker thread exactly as the
// 10.x calibrator's getBatch() does on TensorRT's builder thread, so the pull protocol (bounded prefetch, order,
// end, errors, cancel, a busy event loop) is tested without TensorRT or a GPU. Built by
// test/tensorrt-batch-source.test.ts.
#include <napi.h>

#include <chrono>
#include <thread>

#include "tensorrt/js_batch_source.h"

namespace {

using yqp::trt::BatchState;
using yqp::trt::JsBatchSource;

class Drain final : public Napi::AsyncWorker {
 public:
  Drain(Napi::Env env, Napi::Function pull, size_t prefetch, int consumeDelayMs, std::shared_ptr<BatchState> state)
      : Napi::AsyncWorker(env, "yqp-trt:batch-source-check"),
        deferred_(Napi::Promise::Deferred::New(env)),
        tsfn_(Napi::ThreadSafeFunction::New(env, pull, "yqp-trt:batch-source-check", 0, 1)),
        state_(std::move(state)),
        prefetch_(prefetch),
        consumeDelayMs_(consumeDelayMs) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    JsBatchSource source(tsfn_, state_, prefetch_);
    std::vector<std::vector<uint8_t>> batch;
    while (source.Next(&batch, &error_)) {
      firstBytes_.push_back(batch.empty() || batch[0].empty() ? -1 : batch[0][0]);
      sizes_.push_back(batch.empty() ? 0 : batch[0].size());
      // A calibration pass takes time; meanwhile prefetched batches must stay bounded.
      if (consumeDelayMs_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(consumeDelayMs_));
    }
  }

  void OnOK() override {
    tsfn_.Release();
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Array first = Napi::Array::New(env, firstBytes_.size());
    for (size_t i = 0; i < firstBytes_.size(); ++i) first.Set(static_cast<uint32_t>(i), firstBytes_[i]);
    Napi::Array sizes = Napi::Array::New(env, sizes_.size());
    for (size_t i = 0; i < sizes_.size(); ++i) sizes.Set(static_cast<uint32_t>(i), static_cast<double>(sizes_[i]));
    out.Set("firstBytes", first);
    out.Set("sizes", sizes);
    out.Set("error", error_);
    std::lock_guard<std::mutex> lock(state_->mutex);
    out.Set("pulls", static_cast<double>(state_->pulls));
    out.Set("peakOutstanding", static_cast<double>(state_->peakOutstanding));
    out.Set("cancelled", state_->cancelled->load());
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<BatchState> state_;
  size_t prefetch_;
  int consumeDelayMs_;
  std::string error_;
  std::vector<int> firstBytes_;
  std::vector<size_t> sizes_;
};

// drain(pull, prefetch, consumeDelayMs) -> { promise, cancel }
Napi::Value DrainFn(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  auto state = std::make_shared<BatchState>();
  auto* worker = new Drain(env, info[0].As<Napi::Function>(), info[1].As<Napi::Number>().Uint32Value(),
                           info[2].As<Napi::Number>().Int32Value(), state);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", worker->Promise());
  handle.Set("cancel", Napi::Function::New(env, [state](Napi::CallbackInfo const&) {
               state->cancelled->store(true);
               state->ready.notify_all();
             }));
  worker->Queue();
  return handle;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("drain", Napi::Function::New(env, DrainFn));
  return exports;
}

}  // namespace

NODE_API_MODULE(batch_source_check, Init)
