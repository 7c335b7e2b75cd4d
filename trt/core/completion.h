// Completion to JavaScript without blocking the event loop: cudaLaunchHostFunc on the stream hands off to a
// ThreadSafeFunction, whose call on the JS thread runs `done` (or settles a Promise). The pending completion
// keeps the event loop alive. Never cudaStreamSynchronize on the JS thread.
#pragma once

#include <napi.h>
#include <cuda_runtime_api.h>

#include <functional>
#include <string>

namespace yqp::core {

// Calls done(env, error) on the JS thread once `stream` has reached this point; error is empty on success, else
// the CUDA error (cudaGetErrorString and where it was seen). If the host function cannot be enqueued, done runs
// synchronously with the error.
void OnStreamComplete(Napi::Env env, cudaStream_t stream, std::function<void(Napi::Env, std::string const&)> done);

// Resolves `deferred` with `value()` (undefined when empty) or rejects it with an Error{code:'E_CUDA'}.
void ResolveOnComplete(Napi::Env env, cudaStream_t stream, Napi::Promise::Deferred deferred,
                       std::function<Napi::Value(Napi::Env)> value = nullptr);

// A Promise settled when `stream` reaches this point.
Napi::Promise StreamDone(Napi::Env env, cudaStream_t stream);

// Error with .code = 'E_CUDA' (or the given code), as src/errors.ts maps native errors.
Napi::Error CodedError(Napi::Env env, std::string const& message, char const* code = "E_CUDA");

}  // namespace yqp::core
