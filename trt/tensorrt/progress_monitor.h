// IProgressMonitor forwarding TensorRT's build phases to a callback (the binding turns it into a ThreadSafeFunction
// call that drives the CLI's progress bar) and cancelling the build when the shared flag is set (Ctrl-C).
#pragma once

#include <NvInfer.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace yqp::trt {

struct ProgressEvent {
  enum class Kind { kStart, kStep, kFinish } kind;
  std::string phase;
  std::string parent;  // empty for a top-level phase
  int32_t step = 0;
  int32_t steps = 0;  // the phase's step count (known from its start)
};

class ProgressMonitor final : public nvinfer1::IProgressMonitor {
 public:
  using Callback = std::function<void(ProgressEvent const&)>;
  ProgressMonitor(Callback callback, std::shared_ptr<std::atomic<bool>> cancelled)
      : callback_(std::move(callback)), cancelled_(std::move(cancelled)) {}

  void phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept override;
  bool stepComplete(char const* phaseName, int32_t step) noexcept override;
  void phaseFinish(char const* phaseName) noexcept override;

 private:
  void Emit(ProgressEvent const& event) noexcept;
  Callback callback_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
};

}  // namespace yqp::trt
