// Ordering for TensorRT's user-managed device memory: contexts that share one activation block must never run at
// once. Before() makes a context's stream wait for the last work recorded by After() on any stream, so the
// scheduler can still hand batches to several contexts while the GPU runs them one after another.
// (Streams, buffers, completion and graphs come from the CUDA core, trt/core.)
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <string>

namespace yqp::trt {

class MemoryOrder {
 public:
  // nullptr with *error when the event cannot be created.
  static std::unique_ptr<MemoryOrder> Create(std::string* error);
  ~MemoryOrder();
  bool Before(cudaStream_t stream, std::string* error);
  bool After(cudaStream_t stream, std::string* error);

 private:
  explicit MemoryOrder(cudaEvent_t e) : event_(e) {}
  std::mutex mutex_;
  cudaEvent_t event_;
};

}  // namespace yqp::trt
