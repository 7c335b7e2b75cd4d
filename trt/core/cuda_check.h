// CUDA error text for the core: every message names the call site and carries cudaGetErrorString.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace yqp::core {

inline std::string CudaError(char const* site, cudaError_t e) {
  return std::string(site) + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

// Thrown by the core's C++ API; the N-API layer turns it into a JS Error with code E_CUDA.
class CudaException : public std::runtime_error {
 public:
  CudaException(char const* site, cudaError_t e) : std::runtime_error(CudaError(site, e)), error(e) {}
  cudaError_t error;
};

inline void CudaCheck(char const* site, cudaError_t e) {
  if (e != cudaSuccess) throw CudaException(site, e);
}

}  // namespace yqp::core
