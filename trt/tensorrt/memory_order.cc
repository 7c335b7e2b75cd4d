#include "memory_order.h"

#include "core/cuda_check.h"

namespace yqp::trt {

std::unique_ptr<MemoryOrder> MemoryOrder::Create(std::string* error) {
  cudaEvent_t e = nullptr;
  cudaError_t r = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  if (r != cudaSuccess) {
    *error = core::CudaError("cudaEventCreateWithFlags", r);
    return nullptr;
  }
  return std::unique_ptr<MemoryOrder>(new MemoryOrder(e));
}

MemoryOrder::~MemoryOrder() { cudaEventDestroy(event_); }

bool MemoryOrder::Before(cudaStream_t stream, std::string* error) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Waiting on a never-recorded event is a no-op, so the first context starts at once.
  cudaError_t e = cudaStreamWaitEvent(stream, event_, 0);
  if (e != cudaSuccess) *error = core::CudaError("cudaStreamWaitEvent", e);
  return e == cudaSuccess;
}

bool MemoryOrder::After(cudaStream_t stream, std::string* error) {
  std::lock_guard<std::mutex> lock(mutex_);
  cudaError_t e = cudaEventRecord(event_, stream);
  if (e != cudaSuccess) *error = core::CudaError("cudaEventRecord", e);
  return e == cudaSuccess;
}

}  // namespace yqp::trt
