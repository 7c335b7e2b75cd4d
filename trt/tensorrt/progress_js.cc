#include "progress_js.h"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace yqp::trt {

ProgressMonitor::Callback ProgressToJs(Napi::ThreadSafeFunction tsfn, int minStepIntervalMs) {
  auto last = std::make_shared<std::atomic<int64_t>>(INT64_MIN / 2);
  int64_t interval = static_cast<int64_t>(minStepIntervalMs) * 1000000;
  return [tsfn, last, interval](ProgressEvent const& ev) mutable {
    int64_t now =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    if (ev.kind == ProgressEvent::Kind::kStep) {
      int64_t prev = last->load();
      // One step per interval wins the exchange; the others are dropped.
      if (now - prev < interval || !last->compare_exchange_strong(prev, now)) return;
    }
    auto* copy = new ProgressEvent(ev);
    napi_status s = tsfn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, ProgressEvent* e) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("kind", e->kind == ProgressEvent::Kind::kStart  ? "start"
                    : e->kind == ProgressEvent::Kind::kStep ? "step"
                                                            : "finish");
      o.Set("phase", e->phase);
      if (!e->parent.empty()) o.Set("parent", e->parent);
      o.Set("step", e->step);
      o.Set("steps", e->steps);
      delete e;
      fn.Call({o});
    });
    if (s != napi_ok) delete copy;
  };
}

Napi::ThreadSafeFunction MakeProgressTsfn(Napi::Env env, Napi::Function onProgress, char const* name,
                                          std::shared_ptr<AfterDrain> drain) {
  return Napi::ThreadSafeFunction::New(env, onProgress, name, 0, 1, [drain](Napi::Env e) { drain->Drained(e); });
}

}  // namespace yqp::trt
