#include <cstdint>

#include "kernels/gpu_delay.h"

namespace yqp::kernels {
namespace {

__global__ void GpuDelay(uint64_t nanoseconds) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < nanoseconds);
}

}  // namespace

cudaError_t LaunchGpuDelay(cudaStream_t stream, unsigned microseconds) {
  GpuDelay<<<1, 1, 0, stream>>>(static_cast<uint64_t>(microseconds) * 1000);
  return cudaGetLastError();
}

}  // namespace yqp::kernels
