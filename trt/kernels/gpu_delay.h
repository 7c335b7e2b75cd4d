// A kernel that keeps a stream busy for a set time: a timing diagnostic enqueues it before the work it times,
// so the host has launched that work before the GPU reaches the start event, and the events then measure the
// GPU's time alone, not the host's launch overhead in between (torch.cuda._sleep serves the PyTorch peer so).
#pragma once

#include <cuda_runtime.h>

namespace yqp::kernels {

cudaError_t LaunchGpuDelay(cudaStream_t stream, unsigned microseconds);

}  // namespace yqp::kernels
