#include "core/completion.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/cuda_check.h"

namespace yqp::core {

namespace {

struct Pending {
  Napi::ThreadSafeFunction tsfn;
  std::function<void(Napi::Env, std::string const&)> done;
  std::string error;
  std::function<void(cudaError_t)> native;  // set instead of tsfn/done: runs on the waiter thread
};

void Deliver(Pending* p) {
  if (p->native) {
    p->native(p->error.empty() ? cudaSuccess : cudaErrorUnknown);
    delete p;
    return;
  }
  napi_status s = p->tsfn.NonBlockingCall([p](Napi::Env env, Napi::Function) {
    auto done = std::move(p->done);
    std::string error = std::move(p->error);
    p->tsfn.Release();
    delete p;
    done(env, error);
  });
  if (s != napi_ok) {
    // The environment is shutting down: nobody is left to tell.
    p->tsfn.Release();
    delete p;
  }
}

// Events recorded on a stream are waited for by one thread per stream, in order (events of one stream complete
// in order). An event, unlike cudaLaunchHostFunc, leaves no bubble in the stream: copies and kernels queued
// after it start at once. Blocking-sync events let the waiter sleep instead of spinning.
class Waiter {
 public:
  Waiter(int device) : thread_([this, device] { Loop(device); }) {}
  void Push(cudaEvent_t event, Pending* p) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back({event, p});
    }
    cv_.notify_one();
  }

 private:
  struct Item {
    cudaEvent_t event;
    Pending* pending;
  };
  void Loop(int device) {
    cudaSetDevice(device);
    for (;;) {
      Item item;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        item = queue_.front();
        queue_.pop_front();
      }
      cudaError_t e = cudaEventSynchronize(item.event);
      if (e != cudaSuccess) item.pending->error = CudaError("work on the CUDA stream (completion event)", e);
      ReturnEvent(device, item.event);
      Deliver(item.pending);
    }
  }
  static void ReturnEvent(int device, cudaEvent_t e);

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::thread thread_;

 public:
  static cudaEvent_t TakeEvent(int device, cudaError_t* error);
};

// Leaked on purpose (threads and events live for the process; no teardown race with the CUDA runtime).
std::mutex* g_mutex = new std::mutex();
std::unordered_map<cudaStream_t, Waiter*>* g_waiters = new std::unordered_map<cudaStream_t, Waiter*>();
std::unordered_map<int, std::vector<cudaEvent_t>>* g_events = new std::unordered_map<int, std::vector<cudaEvent_t>>();

void Waiter::ReturnEvent(int device, cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(*g_mutex);
  (*g_events)[device].push_back(e);
}

cudaEvent_t Waiter::TakeEvent(int device, cudaError_t* error) {
  {
    std::lock_guard<std::mutex> lock(*g_mutex);
    auto& free = (*g_events)[device];
    if (!free.empty()) {
      cudaEvent_t e = free.back();
      free.pop_back();
      return e;
    }
  }
  cudaEvent_t e = nullptr;
  *error = cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync);
  return e;
}

Waiter* WaiterFor(cudaStream_t stream, int device) {
  std::lock_guard<std::mutex> lock(*g_mutex);
  Waiter*& w = (*g_waiters)[stream];
  // A stream handle reused after cudaStreamDestroy keeps its waiter: order within it still holds.
  if (w == nullptr) w = new Waiter(device);
  return w;
}

// Records a pooled event on stream and hands it with p to the stream's waiter; false with *error otherwise.
bool Enqueue(cudaStream_t stream, Pending* p, std::string* error) {
  int device = 0;
  cudaError_t e = cudaStreamGetDevice(stream, &device);
  cudaEvent_t event = nullptr;
  if (e == cudaSuccess) {
    int current = 0;
    cudaGetDevice(&current);
    if (current != device) cudaSetDevice(device);
    event = Waiter::TakeEvent(device, &e);
    if (e == cudaSuccess) e = cudaEventRecord(event, stream);
    if (current != device) cudaSetDevice(current);
  }
  if (e != cudaSuccess) {
    *error = CudaError("cudaEventRecord (completion)", e);
    return false;
  }
  WaiterFor(stream, device)->Push(event, p);
  return true;
}

}  // namespace

void OnStreamComplete(Napi::Env env, cudaStream_t stream, std::function<void(Napi::Env, std::string const&)> done) {
  auto* p = new Pending{Napi::ThreadSafeFunction(), std::move(done), std::string(), nullptr};
  std::string error;
  p->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "yqp-cuda-completion", 0, 1);
  if (!Enqueue(stream, p, &error)) {
    auto d = std::move(p->done);
    p->tsfn.Release();
    delete p;
    d(env, error);
  }
}

bool OnStreamCompleteNative(cudaStream_t stream, std::function<void(cudaError_t)> callback, std::string* error) {
  auto* p = new Pending{Napi::ThreadSafeFunction(), nullptr, std::string(), std::move(callback)};
  if (!Enqueue(stream, p, error)) {
    delete p;
    return false;
  }
  return true;
}

void ResolveOnComplete(Napi::Env env, cudaStream_t stream, Napi::Promise::Deferred deferred,
                       std::function<Napi::Value(Napi::Env)> value) {
  OnStreamComplete(env, stream, [deferred, value](Napi::Env env, std::string const& error) {
    Napi::HandleScope scope(env);
    if (!error.empty()) {
      deferred.Reject(CodedError(env, error).Value());
      return;
    }
    try {
      deferred.Resolve(value ? value(env) : env.Undefined());
    } catch (Napi::Error const& e) {
      deferred.Reject(e.Value());
    }
  });
}

Napi::Promise StreamDone(Napi::Env env, cudaStream_t stream) {
  auto deferred = Napi::Promise::Deferred::New(env);
  ResolveOnComplete(env, stream, deferred);
  return deferred.Promise();
}

}  // namespace yqp::core
