// A kernels-only addon for development and the GPU suite while the full addon (CMakeLists.txt, trt/addon.cc)
// is not built: it registers exports.kernels exactly as addon.cc does. Kept out of trt/kernels/*.cc so the main
// build's glob never picks up a second module registration.
#include <napi.h>

#include "../kernels_binding.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitKernels(env, exports);
  return exports;
}

NODE_API_MODULE(yqp_kernels, Init)
