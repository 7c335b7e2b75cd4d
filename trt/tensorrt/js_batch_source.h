// Calibration batches pulled from JavaScript with bounded prefetch (the 10.x calibrator's BatchSource).
// Next() runs on TensorRT's builder thread and only waits on a condition variable; JavaScript is asked through a
// ThreadSafeFunction and answers asynchronously (a Promise), so a busy event loop delays calibration but cannot
// deadlock it, and cancel wakes the waiter within 100 ms. No TensorRT header is needed here.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "batch_source.h"

namespace yqp::trt {

struct BatchState {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::vector<std::vector<uint8_t>>> queue;
  size_t inFlight = 0;
  bool done = false;
  std::string error;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  // Stats: pulls asked of JavaScript, and the most batches ever requested-or-waiting at once.
  size_t pulls = 0;
  size_t peakOutstanding = 0;
};

class JsBatchSource final : public BatchSource {
 public:
  // `tsfn` wraps the JavaScript pull function: () => Promise<ArrayBufferView[] | null> (or a value).
  JsBatchSource(Napi::ThreadSafeFunction tsfn, std::shared_ptr<BatchState> state, size_t prefetch)
      : tsfn_(std::move(tsfn)), state_(std::move(state)), prefetch_(prefetch == 0 ? 1 : prefetch) {}

  bool Next(std::vector<std::vector<uint8_t>>* inputs, std::string* error) override;

 private:
  static void Settle(std::shared_ptr<BatchState> const& state, std::vector<std::vector<uint8_t>>* batch,
                     std::string const& error, bool end);
  static void Accept(Napi::Value value, std::shared_ptr<BatchState> const& state);
  static void Pull(Napi::Env env, Napi::Function pull, std::shared_ptr<BatchState> state);

  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<BatchState> state_;
  size_t prefetch_;
};

}  // namespace yqp::trt
