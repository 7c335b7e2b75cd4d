#include "progress_monitor.h"

namespace yqp::trt {

void ProgressMonitor::Emit(ProgressEvent const& event) noexcept {
  if (!callback_) return;
  try {
    callback_(event);
  } catch (...) {
    // Progress is advisory; a failing reporter must not abort a build.
  }
}

void ProgressMonitor::phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept {
  Emit({ProgressEvent::Kind::kStart, phaseName ? phaseName : "", parentPhase ? parentPhase : "", 0, nbSteps});
}

bool ProgressMonitor::stepComplete(char const* phaseName, int32_t step) noexcept {
  Emit({ProgressEvent::Kind::kStep, phaseName ? phaseName : "", "", step, 0});
  // Returning false is TensorRT's way to cancel a build at the next step boundary.
  return !(cancelled_ && cancelled_->load());
}

void ProgressMonitor::phaseFinish(char const* phaseName) noexcept {
  Emit({ProgressEvent::Kind::kFinish, phaseName ? phaseName : "", "", 0, 0});
}

}  // namespace yqp::trt
