#include "calibrator.h"

#if NV_TENSORRT_MAJOR < 11

#include <cstring>

#include "core/cuda_check.h"

namespace yqp::trt {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

EntropyCalibrator::EntropyCalibrator(std::vector<CalibrationInput> inputs, BatchSource* source,
                                     std::vector<uint8_t> cacheIn, int device)
    : inputs_(std::move(inputs)),
      device_(inputs_.size()),
      deviceIndex_(device),
      source_(source),
      cache_in_(std::move(cacheIn)) {}

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
      // TensorRT reads the batch synchronously on its own thread right after getBatch returns.
      if (!device_[i]) device_[i] = core::BufferPool::Device(deviceIndex_)->Acquire(inputs_[i].bytes);
      cudaError_t e = cudaMemcpy(device_[i]->data(), host_[i].data(), inputs_[i].bytes, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) {
        error_ = core::CudaError("cudaMemcpy of a calibration batch", e);
        return false;
      }
      bindings[b] = device_[i]->data();
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
