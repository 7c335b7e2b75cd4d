// TensorRT 10.x implicit INT8: an IInt8EntropyCalibrator2 fed by a BatchSource. TensorRT 11 removed implicit
// calibration (INT8 there is the Q/DQ model of the calibration issue), so this file compiles to nothing on 11.
#pragma once

#include <NvInfer.h>

#if NV_TENSORRT_MAJOR < 11

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "batch_source.h"
#include "core/buffer_pool.h"

namespace yqp::trt {

struct CalibrationInput {
  std::string name;
  size_t bytes = 0;  // of one batch at the calibration shape
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class EntropyCalibrator final : public nvinfer1::IInt8EntropyCalibrator2 {
 public:
  EntropyCalibrator(std::vector<CalibrationInput> inputs, BatchSource* source, std::vector<uint8_t> cacheIn,
                    int device);
  ~EntropyCalibrator() override = default;

  int32_t getBatchSize() const noexcept override;
  bool getBatch(void* bindings[], char const* names[], int32_t nbBindings) noexcept override;
  void const* readCalibrationCache(std::size_t& length) noexcept override;
  void writeCalibrationCache(void const* ptr, std::size_t length) noexcept override;

  std::vector<uint8_t> const& cacheOut() const { return cache_out_; }
  std::string const& error() const { return error_; }
  int64_t batches() const { return batches_; }

 private:
  std::vector<CalibrationInput> inputs_;
  std::vector<std::unique_ptr<core::Lease>> device_;  // from the core's device pool
  int deviceIndex_;
  BatchSource* source_;
  std::vector<uint8_t> cache_in_;
  std::vector<uint8_t> cache_out_;
  std::vector<std::vector<uint8_t>> host_;
  std::string error_;
  int64_t batches_ = 0;
};
#pragma GCC diagnostic pop

}  // namespace yqp::trt

#endif
