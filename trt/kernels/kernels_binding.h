// Entry point of the GPU kernels: addon.cc calls InitKernels, which sets exports.kernels (see
// kernels_binding.cc for its functions; src/gpu/preprocess.ts and src/gpu/roi.ts are their typed wrappers).
#pragma once

#include <napi.h>

void InitKernels(Napi::Env env, Napi::Object exports);
