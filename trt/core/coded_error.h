// The error every part of the addon throws or rejects with: .code is what src/errors.ts maps onto YqpError.
// The one helper for it (core, kernels, TensorRT adapter, onnxruntime runner); header-only, so a part built
// without the rest of the core (a test addon) has it too.
#pragma once

#include <napi.h>

#include <string>

namespace yqp::core {

// Error with .code = 'E_CUDA' (or the given code).
inline Napi::Error CodedError(Napi::Env env, std::string const& message, char const* code = "E_CUDA") {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

}  // namespace yqp::core
