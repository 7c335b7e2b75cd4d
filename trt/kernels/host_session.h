// Session: host frames in, host tensor out through pinned staging on one stream; every copy and the
// wait run off the event loop.
#pragma once

#include <napi.h>

namespace yqp::kernels {

// Adds its functions to exports.kernels.
void AddHostSession(Napi::Env env, Napi::Object kernels);

}  // namespace yqp::kernels
