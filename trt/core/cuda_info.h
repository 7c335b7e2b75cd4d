// CUDA runtime and driver versions, the visible GPUs, and whether TensorRT was compiled in: exports.cudaInfo().
#pragma once

#include <napi.h>

namespace yqp {

void InitCudaInfo(Napi::Env env, Napi::Object exports);

}  // namespace yqp
