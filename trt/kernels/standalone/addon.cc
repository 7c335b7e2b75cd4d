// A kernels (+ CUDA core runtime) addon for development and the GPU suite while the full addon (CMakeLists.txt,
// trt/addon.cc) is not built: it registers exports.kernels exactly as addon.cc does. Kept out of trt/kernels/*.cc so
// the main build's glob never picks up a second module registration.
#include <napi.h>

#include "../kernels_binding.h"
#if __has_include("../../core/runtime.h")
#include "../../core/runtime.h"
#define YQP_STANDALONE_RUNTIME 1
#endif

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef YQP_STANDALONE_RUNTIME
  yqp::InitRuntime(env, exports);  // exports.runtime too, so tests can hand the core's DeviceBuffers to kernels
#endif
  InitKernels(env, exports);
  return exports;
}

NODE_API_MODULE(yqp_kernels, Init)
