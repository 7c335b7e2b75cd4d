// Module entry: each concern registers its exports (one file pair per concern).
#include <napi.h>

#include "core/cuda_info.h"
#include "core/runtime.h"
#define YQP_HAS_RUNTIME 1
#include "core/frame_ring.h"
#define YQP_HAS_FRAME_RING 1
#include "core/nvml.h"
#define YQP_HAS_NVML 1
#include "kernels/kernels_binding.h"
#ifdef YQP_WITH_TENSORRT
#include "tensorrt/tensorrt_binding.h"
#endif

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  yqp::InitCudaInfo(env, exports);
#ifdef YQP_HAS_RUNTIME
  yqp::InitRuntime(env, exports);
#endif
#ifdef YQP_HAS_FRAME_RING
  yqp::InitFrameRing(env, exports);
#endif
#ifdef YQP_HAS_NVML
  yqp::InitNvml(env, exports);
#endif
  InitKernels(env, exports);
#ifdef YQP_WITH_TENSORRT
  InitTensorRT(env, exports);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(yqp_trt, Init)
