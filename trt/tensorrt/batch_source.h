// Where calibration batches come from. The binding implements it over a ThreadSafeFunction that pulls batches from
// the TypeScript calibration image loader; the builder thread only ever waits on it, never on N-API.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace yqp::trt {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Fills one host buffer per calibration input, in the order of the names given at construction.
  // Returns false at the end of the data, on error (then *error is set) or when cancelled.
  virtual bool Next(std::vector<std::vector<uint8_t>>* inputs, std::string* error) = 0;
};

}  // namespace yqp::trt
