// The error every part of the addon throws or rejects with: .code is what src/errors.ts maps onto YqpError.
#pragma once

#include <napi.h>

#include <string>

namespace yqp::core {

// Error with .code = 'E_CUDA' (or the given code). Defined in completion.cc.
Napi::Error CodedError(Napi::Env env, std::string const& message, char const* code = "E_CUDA");

}  // namespace yqp::core
