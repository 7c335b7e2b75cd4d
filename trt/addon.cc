// Module entry: each concern registers its exports (one file pair per concern).
#include <napi.h>

#include "core/cuda_info.h"
#include "core/frame_ring.h"
#include "core/ipc_memory.h"
#include "core/nvml.h"
#include "core/runtime.h"
#include "kernels/kernels_binding.h"
#include "onnxruntime/ort_session.h"
#ifdef YQP_WITH_TENSORRT
#include "tensorrt/tensorrt_binding.h"
#endif

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  yqp::InitCudaInfo(env, exports);
  yqp::InitRuntime(env, exports);
  yqp::InitIpcMemory(env, exports);  // adds to exports.runtime
  yqp::InitFrameRing(env, exports);  // adds to exports.runtime
  yqp::InitNvml(env, exports);
  InitKernels(env, exports);
  yqp::ort::InitOnnxruntime(env, exports);
#ifdef YQP_WITH_TENSORRT
  InitTensorRT(env, exports);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(yqp_trt, Init)
