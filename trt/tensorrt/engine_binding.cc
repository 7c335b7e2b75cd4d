#include "tensorrt_binding.h"

namespace yqp::trt {
void InitEngine(Napi::Env, Napi::Object) {}
}  // namespace yqp::trt
