// Sampling on the caller's stream: sample(job) enqueues on device memory, done(stream) resolves from the
// stream, sampleOnHost(job) runs the kernel's own per-pixel code on the CPU (the reference).
#pragma once

#include <napi.h>

namespace yqp::kernels {

// Adds its functions to exports.kernels.
void AddSampling(Napi::Env env, Napi::Object kernels);

}  // namespace yqp::kernels
