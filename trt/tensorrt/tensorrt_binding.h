// Entry point of the TensorRT adapter: addon.cc calls InitTensorRT under YQP_WITH_TENSORRT. It sets
// exports.tensorrt = { compiledVersion, load(), build(options, callbacks), Engine }.
#pragma once

#include <napi.h>

void InitTensorRT(Napi::Env env, Napi::Object exports);

namespace yqp::trt {
// Defined in build_binding.cc and engine_binding.cc.
void InitBuild(Napi::Env env, Napi::Object target);
void InitEngine(Napi::Env env, Napi::Object target);
}  // namespace yqp::trt
