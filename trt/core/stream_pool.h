// A fixed set of non-blocking CUDA streams on one device, handed out round-robin or by index.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <vector>

namespace yqp::core {

class StreamPool {
 public:
  // Creates `count` streams with cudaStreamNonBlocking on `device` (throws CudaException).
  StreamPool(int device, int count);
  ~StreamPool();
  StreamPool(StreamPool const&) = delete;
  StreamPool& operator=(StreamPool const&) = delete;

  cudaStream_t At(size_t index) const { return streams_.at(index); }
  // Round-robin: spreads independent work (contexts, cameras) over the streams.
  cudaStream_t Next() { return streams_[next_.fetch_add(1) % streams_.size()]; }
  size_t size() const { return streams_.size(); }
  int device() const { return device_; }

 private:
  int device_;
  std::vector<cudaStream_t> streams_;
  std::atomic<size_t> next_{0};
};

}  // namespace yqp::core
