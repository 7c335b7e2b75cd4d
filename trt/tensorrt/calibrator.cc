#include "calibrator.h"

#if NV_TENSORRT_MAJOR < 11

#include <cstring>

namespace yqp::trt {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

EntropyCalibrator::EntropyCalibrator(std::vector<CalibrationInput> inputs, BatchSource* source,
                                     std::vector<uint8_t> cacheIn)
    : inputs_(std::move(inputs)), device_(inputs_.size(), nullptr), source_(source), cache_in_(std::move(cacheIn)) {}

EntropyCalibrator::~EntropyCalibrator() {
  for (void* p : device_)
    if (p != nullptr) cudaFree(p);
}

// Explicit-batch networks carry the batch in the tensor shape; TensorRT 10 ignores this value.
int32_t EntropyCalibrator::getBatchSize() const noexcept { return 1; }

bool EntropyCalibrator::getBatch(void* bindings[], char const* names[], int32_t nbBindings) noexcept {
  if (source_ == nullptr) return false;
  try {
    if (!source_->Next(&host_, &error_)) return false;
    if (host_.size() != inputs_.size()) {
      error_ = "calibration batch has " + std::to_string(host_.size()) + " inputs, expected " +
               std::to_string(inputs_.size());
      return false;
    }
    for (int32_t b = 0; b < nbBindings; ++b) {
      size_t i = 0;
      while (i < inputs_.size() && inputs_[i].name != names[b]) ++i;
      if (i == inputs_.size()) {
        error_ = std::string("TensorRT asked for calibration input ") + names[b] + " which the loader does not feed";
        return false;
      }
      if (host_[i].size() != inputs_[i].bytes) {
        error_ = "calibration batch for " + inputs_[i].name + " has " + std::to_string(host_[i].size()) +
                 " bytes, expected " + std::to_string(inputs_[i].bytes);
        return false;
      }
      // Calibration runs once per build on TensorRT's thread, synchronously; no stream or pool is involved.
      if (device_[i] == nullptr) {
        cudaError_t e = cudaMalloc(&device_[i], inputs_[i].bytes);
        if (e != cudaSuccess) {
          error_ = std::string("cudaMalloc for calibration input failed: ") + cudaGetErrorString(e);
          return false;
        }
      }
      cudaError_t e = cudaMemcpy(device_[i], host_[i].data(), inputs_[i].bytes, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) {
        error_ = std::string("cudaMemcpy of calibration batch failed: ") + cudaGetErrorString(e);
        return false;
      }
      bindings[b] = device_[i];
    }
    ++batches_;
    return true;
  } catch (std::exception const& ex) {
    error_ = ex.what();
    return false;
  }
}

void const* EntropyCalibrator::readCalibrationCache(std::size_t& length) noexcept {
  length = cache_in_.size();
  return cache_in_.empty() ? nullptr : cache_in_.data();
}

void EntropyCalibrator::writeCalibrationCache(void const* ptr, std::size_t length) noexcept {
  try {
    auto const* p = static_cast<uint8_t const*>(ptr);
    cache_out_.assign(p, p + length);
  } catch (...) {
  }
}

#pragma GCC diagnostic pop

}  // namespace yqp::trt

#endif
