// Raw CUDA helpers of exports.kernels (malloc, copies, streams, deviceInfo) for tests and benchmarks;
// the library itself uses the core's pools (trt/core).
#pragma once

#include <napi.h>

namespace yqp::kernels {

// Adds its functions to exports.kernels.
void AddRawHelpers(Napi::Env env, Napi::Object kernels);

}  // namespace yqp::kernels
