#include "core/buffer_pool.h"

#include <cuda_runtime_api.h>

#include "core/cuda_check.h"

namespace yqp::core {

void Lease::Release() {
  if (ptr_ == nullptr) return;
  pool_->Return(ptr_, capacity_);
  ptr_ = nullptr;
}

size_t BufferPool::BucketSize(size_t bytes) {
  if (bytes <= 256) return 256;
  int k = 63 - __builtin_clzll(static_cast<unsigned long long>(bytes));
  size_t step = size_t{1} << (k - 2);
  return (bytes + step - 1) / step * step;
}

std::shared_ptr<BufferPool> BufferPool::Create(MemoryKind kind, int device) {
  return std::shared_ptr<BufferPool>(new BufferPool(kind, device));
}

std::shared_ptr<BufferPool> BufferPool::Device(int device) {
  // Leaked on purpose: freeing at process exit would race the CUDA runtime's own teardown.
  static auto* m = new std::mutex();
  static auto* pools = new std::map<int, std::shared_ptr<BufferPool>>();
  std::lock_guard<std::mutex> lock(*m);
  auto& p = (*pools)[device];
  if (!p) p = Create(MemoryKind::kDevice, device);
  return p;
}

std::shared_ptr<BufferPool> BufferPool::Pinned() {
  static auto* pool = new std::shared_ptr<BufferPool>(Create(MemoryKind::kPinned, 0));
  return *pool;
}

BufferPool::~BufferPool() {
  std::lock_guard<std::mutex> lock(mutex_);
  TrimLocked();
}

void* BufferPool::Allocate(size_t capacity) {
  void* p = nullptr;
  cudaError_t e;
  if (kind_ == MemoryKind::kDevice) {
    CudaCheck("cudaSetDevice (device pool)", cudaSetDevice(device_));
    e = cudaMalloc(&p, capacity);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      TrimLocked();
      e = cudaMalloc(&p, capacity);
    }
    if (e != cudaSuccess) throw CudaException("cudaMalloc (device pool)", e);
  } else {
    e = cudaHostAlloc(&p, capacity, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      TrimLocked();
      e = cudaHostAlloc(&p, capacity, cudaHostAllocPortable);
    }
    if (e != cudaSuccess) throw CudaException("cudaHostAlloc (pinned pool)", e);
  }
  return p;
}

void BufferPool::FreeBlock(void* p) {
  if (kind_ == MemoryKind::kDevice)
    cudaFree(p);
  else
    cudaFreeHost(p);
}

std::unique_ptr<Lease> BufferPool::Acquire(size_t bytes) {
  size_t capacity = BucketSize(bytes == 0 ? 1 : bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* p = nullptr;
  auto it = free_.find(capacity);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    ++stats_.reuses;
  } else {
    p = Allocate(capacity);
    ++stats_.allocations;
    stats_.bytesAllocated += capacity;
    if (stats_.bytesAllocated > stats_.peakBytesAllocated) stats_.peakBytesAllocated = stats_.bytesAllocated;
  }
  stats_.bytesInUse += capacity;
  return std::make_unique<Lease>(shared_from_this(), p, bytes, capacity);
}

void BufferPool::Return(void* ptr, size_t capacity) {
  std::lock_guard<std::mutex> lock(mutex_);
  free_[capacity].push_back(ptr);
  stats_.bytesInUse -= capacity;
  ++stats_.releases;
}

void BufferPool::TrimLocked() {
  for (auto& [capacity, blocks] : free_) {
    for (void* p : blocks) FreeBlock(p);
    stats_.bytesAllocated -= capacity * blocks.size();
    blocks.clear();
  }
}

void BufferPool::Trim() {
  std::lock_guard<std::mutex> lock(mutex_);
  TrimLocked();
}

PoolStats BufferPool::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace yqp::core
