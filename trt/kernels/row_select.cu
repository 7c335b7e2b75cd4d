#include "kernels/row_select.h"

namespace yqp::kernels {
namespace {

constexpr int kThreads = 256;

// One block per (image, pair): threads stride over the rows; a passing row takes the next slot of the image's
// shared counter. The count written is the true count, so the host sees an overflow.
__global__ void SelectRows(SelectionLaunch launch) {
  SelectionPair const& p = launch.pairs[blockIdx.y];
  int image = blockIdx.x;
  __shared__ int passed;
  if (threadIdx.x == 0) passed = 0;
  __syncthreads();
  size_t record = 2 + static_cast<size_t>(p.width);
  float* out = p.out + static_cast<size_t>(image) * (kSelectionHeader + launch.maxRows * record);
  float const* scores = p.scores + static_cast<size_t>(image) * p.count;
  float const* rows = p.rows + static_cast<size_t>(image) * p.count * p.width;
  for (int i = threadIdx.x; i < p.count; i += blockDim.x) {
    float s = scores[i];
    if (!(s >= launch.minScore)) continue;
    int slot = atomicAdd(&passed, 1);
    if (slot >= launch.maxRows) continue;
    float* r = out + kSelectionHeader + slot * record;
    r[0] = static_cast<float>(i);
    r[1] = s;
    for (int k = 0; k < p.width; ++k) r[2 + k] = rows[static_cast<size_t>(i) * p.width + k];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int* header = reinterpret_cast<int*>(out);
    header[0] = passed;
    header[1] = p.count;
    header[2] = p.width;
    header[3] = launch.maxRows;
  }
}

}  // namespace

cudaError_t LaunchRowSelection(SelectionLaunch const& launch, cudaStream_t stream) {
  if (launch.pairCount <= 0 || launch.pairCount > kMaxSelectionPairs || launch.batch <= 0 || launch.maxRows <= 0)
    return cudaErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(launch.batch), static_cast<unsigned>(launch.pairCount));
  SelectRows<<<grid, kThreads, 0, stream>>>(launch);
  return cudaGetLastError();
}

}  // namespace yqp::kernels
