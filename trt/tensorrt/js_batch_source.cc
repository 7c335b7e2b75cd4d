#include "js_batch_source.h"

#include <algorithm>
#include <chrono>

#include "napi_util.h"

namespace yqp::trt {

bool JsBatchSource::Next(std::vector<std::vector<uint8_t>>* inputs, std::string* error) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  for (;;) {
    if (state_->cancelled->load()) return false;
    if (!state_->error.empty()) {
      *error = state_->error;
      return false;
    }
    // Keep up to `prefetch` batches requested or waiting so decoding overlaps TensorRT's calibration passes.
    while (!state_->done && state_->queue.size() + state_->inFlight < prefetch_) {
      ++state_->inFlight;
      ++state_->pulls;
      state_->peakOutstanding = std::max(state_->peakOutstanding, state_->queue.size() + state_->inFlight);
      std::shared_ptr<BatchState> state = state_;
      napi_status s = tsfn_.NonBlockingCall([state](Napi::Env env, Napi::Function pull) { Pull(env, pull, state); });
      if (s != napi_ok) {
        --state_->inFlight;
        state_->done = true;
      }
    }
    if (!state_->queue.empty()) {
      *inputs = std::move(state_->queue.front());
      state_->queue.pop_front();
      return true;
    }
    if (state_->done && state_->inFlight == 0) return false;
    // Wake periodically to notice Ctrl-C even when JavaScript never answers.
    state_->ready.wait_for(lock, std::chrono::milliseconds(100));
  }
}

void JsBatchSource::Settle(std::shared_ptr<BatchState> const& state, std::vector<std::vector<uint8_t>>* batch,
                           std::string const& error, bool end) {
  std::lock_guard<std::mutex> lock(state->mutex);
  if (state->inFlight > 0) --state->inFlight;
  if (!error.empty() && state->error.empty()) state->error = error;
  if (end) state->done = true;
  // Batches answered after the end (prefetched past the last one) are dropped: order is the stream's order.
  if (batch != nullptr && !state->done) state->queue.push_back(std::move(*batch));
  state->ready.notify_all();
}

void JsBatchSource::Accept(Napi::Value value, std::shared_ptr<BatchState> const& state) {
  if (value.IsNull() || value.IsUndefined()) return Settle(state, nullptr, "", true);
  if (!value.IsArray())
    return Settle(state, nullptr, "pullBatch must resolve to an array of typed arrays or null", true);
  Napi::Array a = value.As<Napi::Array>();
  std::vector<std::vector<uint8_t>> batch;
  for (uint32_t i = 0; i < a.Length(); ++i) batch.push_back(BytesOf(a.Get(i)));
  Settle(state, &batch, "", false);
}

void JsBatchSource::Pull(Napi::Env env, Napi::Function pull, std::shared_ptr<BatchState> state) {
  try {
    Napi::Value r = pull.Call({});
    if (!r.IsPromise()) return Accept(r, state);
    Napi::Object promise = r.As<Napi::Object>();
    Napi::Function onOk = Napi::Function::New(env, [state](Napi::CallbackInfo const& info) {
      Accept(info.Length() > 0 ? info[0] : info.Env().Undefined(), state);
    });
    Napi::Function onErr = Napi::Function::New(env, [state](Napi::CallbackInfo const& info) {
      std::string message = "the calibration loader failed";
      if (info.Length() > 0 && info[0].IsObject()) {
        Napi::Value m = info[0].As<Napi::Object>().Get("message");
        if (m.IsString()) message = m.As<Napi::String>().Utf8Value();
      }
      Settle(state, nullptr, message, true);
    });
    promise.Get("then").As<Napi::Function>().Call(promise, {onOk, onErr});
  } catch (Napi::Error const& e) {
    Settle(state, nullptr, e.Message(), true);
  }
}

}  // namespace yqp::trt
