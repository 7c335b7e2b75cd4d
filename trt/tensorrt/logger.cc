#include "logger.h"

#include <cstdio>
#include <cstdlib>

namespace yqp::trt {

char const* Logger::SeverityName(Severity severity) noexcept {
  switch (severity) {
    case Severity::kINTERNAL_ERROR:
      return "internal error";
    case Severity::kERROR:
      return "error";
    case Severity::kWARNING:
      return "warning";
    case Severity::kINFO:
      return "info";
    case Severity::kVERBOSE:
      return "verbose";
  }
  return "unknown";
}

void Logger::log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept {
  // TensorRT calls this from its own threads; never throw and never touch N-API here.
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string text = msg == nullptr ? std::string() : std::string(msg);
    if (severity <= Severity::kERROR) last_error_ = text;
    if (severity > threshold_) return;
    kept_.push_back(std::string(SeverityName(severity)) + ": " + text);
    if (kept_.size() > kMaxKept) kept_.pop_front();
    if (std::getenv("YQP_TRT_LOG_STDERR") != nullptr) std::fprintf(stderr, "[TensorRT] %s\n", kept_.back().c_str());
  } catch (...) {
  }
}

std::string Logger::LastError() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

std::string Logger::WithLastError(std::string const& message) const {
  std::string last = LastError();
  if (last.empty()) return message;
  return message + " (TensorRT: " + last + ")";
}

std::vector<std::string> Logger::Drain() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out(kept_.begin(), kept_.end());
  kept_.clear();
  return out;
}

void Logger::ClearLastError() {
  std::lock_guard<std::mutex> lock(mutex_);
  last_error_.clear();
}

void Logger::SetThreshold(Severity threshold) {
  std::lock_guard<std::mutex> lock(mutex_);
  threshold_ = threshold;
}

}  // namespace yqp::trt
