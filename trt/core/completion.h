// Completion to JavaScript without blocking the event loop: an event recorded on the stream is waited for by a
// waiter thread of that stream (cudaEventSynchronize, blocking-sync event), which hands off to a
// ThreadSafeFunction whose call on the JS thread runs `done` (or settles a Promise). Unlike cudaLaunchHostFunc
// this leaves no gap in the stream. The pending completion keeps the event loop alive. Never a synchronize on
// the JS thread.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

#include <functional>
#include <string>

#include "core/coded_error.h"

namespace yqp::core {

// Calls done(env, error) on the JS thread once `stream` has reached this point; error is empty on success, else
// the CUDA error (cudaGetErrorString and where it was seen). If the host function cannot be enqueued, done runs
// synchronously with the error.
void OnStreamComplete(Napi::Env env, cudaStream_t stream, std::function<void(Napi::Env, std::string const&)> done);

// Runs callback on the stream's waiter thread (not the JS thread) once `stream` reaches this point; for C++-only
// follow-ups such as ending a frame-ring hold. False with *error when the event could not be recorded.
bool OnStreamCompleteNative(cudaStream_t stream, std::function<void(cudaError_t)> callback, std::string* error);

// Resolves `deferred` with `value()` (undefined when empty) or rejects it with an Error{code:'E_CUDA'}.
void ResolveOnComplete(Napi::Env env, cudaStream_t stream, Napi::Promise::Deferred deferred,
                       std::function<Napi::Value(Napi::Env)> value = nullptr);

// A Promise settled when `stream` reaches this point.
Napi::Promise StreamDone(Napi::Env env, cudaStream_t stream);

}  // namespace yqp::core
