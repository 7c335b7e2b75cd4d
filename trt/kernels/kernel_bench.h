// Kernel benchmarks: timeSample (per-iteration GPU time from CUDA events) and benchChain (one CUDA graph
// against eager launches for a preprocess -> model stand-in -> decode chain). Used by bench/, not the library.
#pragma once

#include <napi.h>

namespace yqp::kernels {

// Adds its functions to exports.kernels.
void AddBenchmarks(Napi::Env env, Napi::Object kernels);

}  // namespace yqp::kernels
