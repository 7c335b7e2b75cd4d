#include "core/stream_pool.h"

#include "core/cuda_check.h"

namespace yqp::core {

StreamPool::StreamPool(int device, int count) : device_(device) {
  CudaCheck("cudaSetDevice (StreamPool)", cudaSetDevice(device));
  streams_.reserve(count);
  for (int i = 0; i < count; ++i) {
    cudaStream_t s = nullptr;
    cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
      for (cudaStream_t made : streams_) cudaStreamDestroy(made);
      throw CudaException("cudaStreamCreateWithFlags (StreamPool)", e);
    }
    streams_.push_back(s);
  }
}

StreamPool::~StreamPool() {
  // cudaStreamDestroy returns at once; work already queued still completes.
  for (cudaStream_t s : streams_) cudaStreamDestroy(s);
}

}  // namespace yqp::core
