// ILogger that keeps TensorRT's last error so every failure we report carries it (TensorRT's own return
// values say only that something failed; the reason is in the log).
#pragma once

#include <NvInferRuntime.h>

#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace yqp::trt {

class Logger final : public nvinfer1::ILogger {
 public:
  explicit Logger(Severity threshold = Severity::kWARNING) : threshold_(threshold) {}

  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override;

  // The most recent kERROR/kINTERNAL_ERROR message, empty when none.
  std::string LastError() const;
  // Appends " (TensorRT: <last error>)" when TensorRT logged an error, so a failure names its cause.
  std::string WithLastError(std::string const& message) const;
  // Warnings and errors logged since the last Drain(), oldest first; bounded so a chatty build cannot grow it.
  std::vector<std::string> Drain();
  void ClearLastError();
  void SetThreshold(Severity threshold);

  static char const* SeverityName(Severity severity) noexcept;

 private:
  static constexpr size_t kMaxKept = 200;
  mutable std::mutex mutex_;
  Severity threshold_;
  std::string last_error_;
  std::deque<std::string> kept_;
};

}  // namespace yqp::trt
