// Size-bucketed pools of device memory (per GPU) and pinned host memory: a request takes a cached block of its
// bucket or allocates one; releasing returns the block to its bucket, so steady-state requests never call
// cudaMalloc/cudaHostAlloc. Buckets are 1, 1.25, 1.5 and 1.75 x 2^k bytes (at most 25% slack).
// A block must be released only once the GPU work using it has completed (after a Completion).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace yqp::core {

enum class MemoryKind { kDevice, kPinned };

struct PoolStats {
  uint64_t allocations = 0;  // cudaMalloc/cudaHostAlloc calls
  uint64_t reuses = 0;       // requests served from the cache
  uint64_t releases = 0;
  uint64_t bytesAllocated = 0;  // capacity held from CUDA (in use + cached)
  uint64_t bytesInUse = 0;
  uint64_t peakBytesAllocated = 0;
};

class BufferPool;

// One block on loan from a pool; returned on destruction or Release().
class Lease {
 public:
  Lease(std::shared_ptr<BufferPool> pool, void* ptr, size_t size, size_t capacity)
      : pool_(std::move(pool)), ptr_(ptr), size_(size), capacity_(capacity) {}
  ~Lease() { Release(); }
  Lease(Lease const&) = delete;
  Lease& operator=(Lease const&) = delete;

  void* data() const { return ptr_; }
  size_t size() const { return size_; }          // bytes asked for
  size_t capacity() const { return capacity_; }  // bucket size
  bool released() const { return ptr_ == nullptr; }
  void Release();

 private:
  std::shared_ptr<BufferPool> pool_;
  void* ptr_;
  size_t size_;
  size_t capacity_;
};

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // device is ignored for pinned pools (portable pinned memory serves every GPU).
  static std::shared_ptr<BufferPool> Create(MemoryKind kind, int device);
  // The process-wide pools used by the N-API layer and the TensorRT adapter.
  static std::shared_ptr<BufferPool> Device(int device);
  static std::shared_ptr<BufferPool> Pinned();

  ~BufferPool();
  // Throws CudaException when CUDA cannot allocate (after dropping cached blocks and retrying once).
  std::unique_ptr<Lease> Acquire(size_t bytes);
  // Frees every cached (unused) block.
  void Trim();
  PoolStats stats() const;
  MemoryKind kind() const { return kind_; }
  int device() const { return device_; }

  static size_t BucketSize(size_t bytes);

 private:
  friend class Lease;
  BufferPool(MemoryKind kind, int device) : kind_(kind), device_(device) {}
  void Return(void* ptr, size_t capacity);
  void* Allocate(size_t capacity);  // cudaError_t via exception
  void FreeBlock(void* ptr);
  void TrimLocked();

  MemoryKind kind_;
  int device_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  PoolStats stats_;
};

}  // namespace yqp::core
