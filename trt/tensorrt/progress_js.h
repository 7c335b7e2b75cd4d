// ProgressMonitor callback that forwards TensorRT's build phases to a JavaScript function through a
// ThreadSafeFunction: phase starts and finishes always, steps at most every `minStepIntervalMs` (tactic steps come
// by the thousand; a progress bar needs a few per second). Safe to call from any thread.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>

#include "progress_monitor.h"

namespace yqp::trt {

ProgressMonitor::Callback ProgressToJs(Napi::ThreadSafeFunction tsfn, int minStepIntervalMs = 100);

// Runs `then` once the progress ThreadSafeFunction has delivered its last call (its finalizer ran), so a build's
// promise never settles before its final "finish" events reach JavaScript. JS thread only.
struct AfterDrain {
  bool drained = false;
  std::function<void(Napi::Env)> then;
  void Drained(Napi::Env env) {
    drained = true;
    if (then) {
      auto f = std::move(then);
      then = nullptr;
      f(env);
    }
  }
  void Then(Napi::Env env, std::function<void(Napi::Env)> f) {
    if (drained)
      f(env);
    else
      then = std::move(f);
  }
};

// A progress ThreadSafeFunction whose finalizer marks `drain` drained.
Napi::ThreadSafeFunction MakeProgressTsfn(Napi::Env env, Napi::Function onProgress, char const* name,
                                          std::shared_ptr<AfterDrain> drain);

}  // namespace yqp::trt
