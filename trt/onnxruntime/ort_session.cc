// onnxruntime sessions that never block the event loop and copy nothing on the way in or out.
//
// onnxruntime-node's run() holds the JS thread for the whole inference (microsoft/onnxruntime#19611). Here each
// session owns one runner thread (which onnxruntime's intra-op pool joins, as the caller's thread would) fed from
// a queue; results come back through a ThreadSafeFunction. Inputs are read in place from the caller's
// TypedArrays, held by reference until the run settles; outputs are copied once into ArrayBuffers.
#include "onnxruntime/ort_session.h"

#include <node_api.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/coded_error.h"
#include "onnxruntime/ort_api.h"
#include "onnxruntime/ort_device.h"
#include "onnxruntime/ort_open.h"

namespace yqp::ort {
namespace {

using core::CodedError;

using Clock = std::chrono::steady_clock;

// This thread's CPU time, context switches and page faults so far.
struct ThreadUsage {
  double cpuMs = 0;
  long involuntarySwitches = 0, minorFaults = 0;
  static ThreadUsage Now() {
    ThreadUsage u;
    timespec ts{};
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) u.cpuMs = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
#ifdef RUSAGE_THREAD  // Linux; elsewhere the counts stay 0
    rusage r{};
    if (getrusage(RUSAGE_THREAD, &r) == 0) {
      u.involuntarySwitches = r.ru_nivcsw;
      u.minorFaults = r.ru_minflt;
    }
#endif
    return u;
  }
  ThreadUsage operator-(ThreadUsage const& before) const {
    return {cpuMs - before.cpuMs, involuntarySwitches - before.involuntarySwitches, minorFaults - before.minorFaults};
  }
};

struct Job {
  std::vector<char const*> inputNames;
  std::vector<OrtValue*> inputs;
  std::vector<Feed> feeds;                          // a CUDA session's inputs (host or device memory)
  std::vector<OutputTarget> targets;                // outputs written to device memory instead (CUDA sessions)
  std::vector<HostOutput> hostOutputs;              // and its outputs, copied back
  std::vector<Napi::Reference<Napi::Object>> keep;  // the caller's arrays, alive until the run settles
  std::vector<OrtValue*> outputs;
  Napi::Promise::Deferred deferred;
  std::string error;
  // Where a run's time goes: queued until the runner takes it, onnxruntime's Run, and the hop back to JS.
  Clock::time_point queued, started, finished;
  // The runner thread's own account of the Run: CPU time, involuntary context switches (preempted: by another
  // thread, or by the hypervisor's steal showing as a long wall time against a short CPU time) and minor page
  // faults. They tell a Run that was slow because it computed longer from one that was off its core.
  ThreadUsage usage;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

class Session;
struct Core;
void Deliver(Napi::Env env, Napi::Function, Core* core, Job* job);
void TsfnFinalized(Napi::Env, void*, Core* core);
using Tsfn = Napi::TypedThreadSafeFunction<Core, Job, Deliver>;

// The state the runner thread and the ThreadSafeFunction share; it outlives the JS object when the
// ThreadSafeFunction is still being torn down (then its finalizer deletes it).
struct Core {
  Runtime const* rt = nullptr;
  OrtSession* session = nullptr;
  std::unique_ptr<DeviceRunner> device;  // a CUDA session: runs through IOBinding on its stream
  std::vector<std::string> inputs, outputs;
  std::vector<char const*> outputNames;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Job*> queue;
  std::atomic<size_t> queued{0};
  int spinMicroseconds = 0;
  bool stop = false;
  bool closed = false;
  std::thread runner;
  Tsfn tsfn;
  bool tsfnAlive = false, orphaned = false;
  size_t pending = 0;  // runs not yet settled (JS thread only)
  Session* wrap = nullptr;
  std::vector<Napi::Promise::Deferred> closers;

  void Loop() {
    std::string bound = device ? device->BindThread() : std::string();
    for (;;) {
      Job* job = nullptr;
      // A request that follows the last one closely (a caller awaiting each result, a pipelined stream) is
      // taken without sleeping: a wake-up from the condition variable costs tens of microseconds on a VM.
      if (spinMicroseconds > 0) {
        auto until = Clock::now() + std::chrono::microseconds(spinMicroseconds);
        while (queued.load(std::memory_order_acquire) == 0 && Clock::now() < until) std::this_thread::yield();
      }
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [this] { return stop || !queue.empty(); });
        if (queue.empty()) return;  // stopping, and nothing left to run
        job = queue.front();
        queue.pop_front();
        queued.fetch_sub(1, std::memory_order_relaxed);
      }
      if (!device) job->outputs.assign(outputs.size(), nullptr);  // a CUDA session fills hostOutputs instead
      ThreadUsage before = ThreadUsage::Now();
      job->started = Clock::now();
      if (!bound.empty())
        job->error = bound;
      else if (device)
        job->error = device->Run(job->feeds, job->targets, &job->hostOutputs);
      else
        job->error =
            rt->api.Take(rt->api.Run(session, nullptr, job->inputNames.data(), job->inputs.data(), job->inputs.size(),
                                     outputNames.data(), outputNames.size(), job->outputs.data()));
      job->finished = Clock::now();
      job->usage = ThreadUsage::Now() - before;
      // Fails only while the environment is shutting down: the job is dropped then (nobody is left to tell).
      if (tsfn.NonBlockingCall(job) != napi_ok) Drop(job);
    }
  }

  void Drop(Job* job) {
    for (OrtValue* v : job->inputs) rt->api.ReleaseValue(v);
    for (OrtValue* v : job->outputs)
      if (v != nullptr) rt->api.ReleaseValue(v);
    for (auto& r : job->keep) r.SuppressDestruct();
    delete job;
  }

  // Stops the runner once its queue is empty and releases the session; JS thread.
  void Shutdown() {
    if (runner.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
      }
      wake.notify_one();
      runner.join();
    }
    if (session != nullptr) rt->api.ReleaseSession(session);
    session = nullptr;
    if (device) device->ReleaseSessions();
    closed = true;
  }
};

// [elementType, dims, ArrayBuffer] for one output: one copy of bytes into memory V8 owns. Handing onnxruntime's own
// memory over as external ArrayBuffers (no copy) measured 3-6% fewer calls/s at batch 16 (outputs held until a GC
// runs their finalizers, fresh pages meanwhile); the copy costs ~1%.
Napi::Value TensorToJs(Napi::Env env, int type, std::vector<int64_t> const& dims, void const* data, size_t bytes,
                       std::string const& name) {
  if (ElementSize(type) == 0)
    throw CodedError(
        env,
        "onnxruntime: output " + name + " has ONNX element type " + std::to_string(type) + ", which is not supported",
        "E_BACKEND");
  void* copy = nullptr;
  napi_value buffer = nullptr;
  if (napi_create_arraybuffer(env, bytes, &copy, &buffer) != napi_ok)
    throw Napi::Error::New(env, "out of memory for output " + name);
  if (bytes > 0) std::memcpy(copy, data, bytes);
  Napi::Array dimsJs = Napi::Array::New(env, dims.size());
  for (size_t i = 0; i < dims.size(); ++i) dimsJs.Set(static_cast<uint32_t>(i), static_cast<double>(dims[i]));
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, type);
  out.Set(1u, dimsJs);
  out.Set(2u, Napi::Value(env, buffer));
  return out;
}

// An output onnxruntime allocated (CPU sessions); takes ownership of value, which goes back to onnxruntime at once
// (its arena then reuses warm memory).
Napi::Value OutputToJs(Napi::Env env, Runtime const* rt, OrtValue* value, std::string const& name) {
  Api const& api = rt->api;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  int type = 0;
  size_t rank = 0, count = 0;
  std::string e = api.Take(api.GetTensorTypeAndShape(value, &info));
  if (e.empty()) e = api.Take(api.GetTensorElementType(info, &type));
  if (e.empty()) e = api.Take(api.GetDimensionsCount(info, &rank));
  std::vector<int64_t> dims(rank);
  if (e.empty() && rank > 0) e = api.Take(api.GetDimensions(info, dims.data(), rank));
  if (e.empty()) e = api.Take(api.GetTensorShapeElementCount(info, &count));
  if (info != nullptr) api.ReleaseTensorTypeAndShapeInfo(info);
  void* data = nullptr;
  if (e.empty()) e = api.Take(api.GetTensorMutableData(value, &data));
  if (!e.empty()) {
    api.ReleaseValue(value);
    throw CodedError(env, "onnxruntime: " + e, "E_BACKEND");
  }
  try {
    Napi::Value out = TensorToJs(env, type, dims, data, count * ElementSize(type), name);
    api.ReleaseValue(value);
    return out;
  } catch (...) {
    api.ReleaseValue(value);
    throw;
  }
}

class Session final : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "OnnxruntimeSession",
        {InstanceMethod<&Session::Run>("run"), InstanceMethod<&Session::Close>("close"),
         InstanceAccessor<&Session::InputNames>("inputNames"), InstanceAccessor<&Session::OutputNames>("outputNames"),
         InstanceAccessor<&Session::Version>("version"), InstanceAccessor<&Session::Device>("device"),
         InstanceAccessor<&Session::GraphBatchSizes>("graphBatchSizes"),
         InstanceMethod<&Session::CopyStats>("copyStats")});
  }

  explicit Session(Napi::CallbackInfo const& info) : Napi::ObjectWrap<Session>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsExternal())
      throw Napi::TypeError::New(env, "OnnxruntimeSession is made by onnxruntime.open(), not directly");
    Opened* opened = info[0].As<Napi::External<Opened>>().Data();
    if (opened->taken) throw Napi::TypeError::New(env, "this onnxruntime session was already taken");
    opened->taken = true;
    core_ = new Core();
    core_->rt = opened->rt;
    core_->session = opened->session;
    core_->device = std::move(opened->device);
    core_->inputs = opened->inputs;
    core_->outputs = opened->outputs;
    core_->spinMicroseconds = opened->spinMicroseconds;
    for (auto const& n : core_->outputs) core_->outputNames.push_back(n.c_str());
    core_->wrap = this;
    core_->tsfn = Tsfn::New(env, "yqp-trt:onnxruntime", 0, 1, core_, TsfnFinalized, static_cast<void*>(nullptr));
    core_->tsfnAlive = true;
    core_->tsfn.Unref(env);  // an idle session keeps nothing alive; Run refs it while runs are pending
    Core* core = core_;
    core_->runner = std::thread([core] {
#ifdef __linux__
      pthread_setname_np(pthread_self(), "yqp-ort-runner");  // `top -H`, perf and /proc name it
#endif
      core->Loop();
    });
  }

  ~Session() override {
    if (core_ == nullptr) return;
    core_->wrap = nullptr;
    core_->Shutdown();
    ReleaseTsfn();
  }

  void Settled(Napi::Env env) {
    if (--core_->pending > 0) return;
    if (core_->tsfnAlive) core_->tsfn.Unref(env);
    Unref();
    if (!core_->closers.empty()) FinishClose(env);
  }

 private:
  Napi::Value Run(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    if (core_->closed || !core_->closers.empty())
      throw CodedError(env, "the onnxruntime session is closed", "E_CLOSED");
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "Expected an array of feeds for run");
    Napi::Array feeds = info[0].As<Napi::Array>();
    auto job = std::make_unique<Job>(env);
    Api const& api = core_->rt->api;
    auto fail = [&](std::string const& message) {
      for (OrtValue* v : job->inputs) api.ReleaseValue(v);
      return Napi::TypeError::New(env, message);
    };
    for (uint32_t i = 0; i < feeds.Length(); ++i) {
      // Each feed: [input index, ONNX element type, dims, TypedArray].
      Napi::Array feed = feeds.Get(i).As<Napi::Array>();
      uint32_t index = feed.Get(0u).As<Napi::Number>().Uint32Value();
      int type = feed.Get(1u).As<Napi::Number>().Int32Value();
      Napi::Array dimsJs = feed.Get(2u).As<Napi::Array>();
      Napi::Value dataJs = feed.Get(3u);
      if (index >= core_->inputs.size())
        throw fail("Expected an input index below " + std::to_string(core_->inputs.size()));
      std::string const& name = core_->inputs[index];
      if (core_->device && dataJs.IsObject() && !dataJs.IsTypedArray()) {
        job->feeds.push_back(DeviceFeed(env, index, type, name, dimsJs, dataJs.As<Napi::Object>()));
        job->keep.push_back(Napi::Persistent(dataJs.As<Napi::Object>()));
        continue;
      }
      if (!dataJs.IsTypedArray()) throw fail("Expected a TypedArray for input " + name);
      std::vector<int64_t> dims(dimsJs.Length());
      size_t count = 1;
      for (uint32_t d = 0; d < dims.size(); ++d) {
        dims[d] = dimsJs.Get(d).As<Napi::Number>().Int64Value();
        if (dims[d] < 0) throw fail("Expected non-negative dims for input " + name);
        count *= static_cast<size_t>(dims[d]);
      }
      napi_typedarray_type arrayType;
      size_t length = 0;
      void* data = nullptr;
      napi_value arrayBuffer;
      size_t byteOffset = 0;
      napi_get_typedarray_info(env, dataJs, &arrayType, &length, &data, &arrayBuffer, &byteOffset);
      size_t bytes = Napi::TypedArray(env, dataJs).ByteLength();
      size_t elementSize = ElementSize(type);
      if (elementSize == 0) throw fail("Expected a supported ONNX element type for input " + name);
      if (bytes != count * elementSize)
        throw fail("Expected " + std::to_string(count * elementSize) + " bytes for input " + name + " but received " +
                   std::to_string(bytes));
      static char empty;  // onnxruntime wants a pointer even for an empty tensor
      if (data == nullptr) {
        if (bytes > 0) throw fail("the array of input " + name + " is detached");
        data = &empty;
      }
      if (core_->device) {  // uploaded by the runner into the context's bound input
        job->feeds.push_back(Feed{index, type, dims, data, bytes, false});
        job->keep.push_back(Napi::Persistent(dataJs.As<Napi::Object>()));
        continue;
      }
      OrtValue* value = nullptr;
      std::string e = api.Take(
          api.CreateTensorWithDataAsOrtValue(core_->rt->cpu, data, bytes, dims.data(), dims.size(), type, &value));
      if (!e.empty()) throw fail("onnxruntime refused input " + name + ": " + e);
      job->inputs.push_back(value);
      job->inputNames.push_back(name.c_str());
      job->keep.push_back(Napi::Persistent(dataJs.As<Napi::Object>()));
    }
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      // Device outputs: [output index, { ptr: bigint, size: number }] each, written there on the GPU.
      if (!core_->device) throw fail("Expected no device outputs for a CPU session");
      if (!info[1].IsArray()) throw fail("Expected an array of device outputs for run");
      Napi::Array targets = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < targets.Length(); ++i) {
        Napi::Array t = targets.Get(i).As<Napi::Array>();
        uint32_t index = t.Get(0u).As<Napi::Number>().Uint32Value();
        if (index >= core_->outputs.size())
          throw fail("Expected an output index below " + std::to_string(core_->outputs.size()));
        Napi::Object memory = t.Get(1u).As<Napi::Object>();
        Napi::Value ptr = memory.Get("ptr");
        Napi::Value size = memory.Get("size");
        if (!ptr.IsBigInt() || !size.IsNumber() || size.As<Napi::Number>().DoubleValue() < 0)
          throw fail("Expected { ptr: bigint, size: number >= 0 } for the device memory of output " +
                     core_->outputs[index]);
        bool lossless = false;
        OutputTarget target;
        target.index = index;
        target.ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(ptr.As<Napi::BigInt>().Uint64Value(&lossless)));
        target.bytes = static_cast<size_t>(size.As<Napi::Number>().Int64Value());
        job->targets.push_back(target);
        job->keep.push_back(Napi::Persistent(memory));
      }
    }
    Napi::Promise promise = job->deferred.Promise();
    if (core_->pending++ == 0) {
      core_->tsfn.Ref(env);
      Ref();  // not collected while runs are pending
    }
    job->queued = Clock::now();
    {
      std::lock_guard<std::mutex> lock(core_->mutex);
      core_->queue.push_back(job.release());
      core_->queued.fetch_add(1, std::memory_order_release);
    }
    core_->wake.notify_one();
    return promise;
  }

  Napi::Value Close(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (core_->closed) {
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    core_->closers.push_back(deferred);
    if (core_->pending == 0) FinishClose(env);
    return deferred.Promise();
  }

  // Every run has settled: stop the runner, release the session, settle close().
  void FinishClose(Napi::Env env) {
    core_->Shutdown();
    ReleaseTsfn();
    auto closers = std::move(core_->closers);
    core_->closers.clear();
    for (auto& d : closers) d.Resolve(env.Undefined());
  }

  void ReleaseTsfn() {
    if (!core_->tsfnAlive) {
      if (core_->wrap == nullptr) delete core_;  // destructor: nothing else holds it
      return;
    }
    if (core_->wrap == nullptr) core_->orphaned = true;  // the finalizer deletes it
    core_->tsfnAlive = false;
    core_->tsfn.Release();
  }

  Napi::Value Names(Napi::Env env, std::vector<std::string> const& names) {
    Napi::Array a = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) a.Set(static_cast<uint32_t>(i), names[i]);
    return a;
  }
  Napi::Value InputNames(Napi::CallbackInfo const& info) { return Names(info.Env(), core_->inputs); }
  Napi::Value OutputNames(Napi::CallbackInfo const& info) { return Names(info.Env(), core_->outputs); }
  Napi::Value Version(Napi::CallbackInfo const& info) { return Napi::String::New(info.Env(), core_->rt->api.version); }
  Napi::Value Device(Napi::CallbackInfo const& info) {
    return Napi::String::New(info.Env(), core_->device ? "cuda:" + std::to_string(core_->device->device()) : "cpu");
  }
  Napi::Value GraphBatchSizes(Napi::CallbackInfo const& info) {
    std::vector<int64_t> sizes = core_->device ? core_->device->GraphBatchSizes() : std::vector<int64_t>{};
    Napi::Array a = Napi::Array::New(info.Env(), sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) a.Set(static_cast<uint32_t>(i), static_cast<double>(sizes[i]));
    return a;
  }
  // Bytes the runner copied (host to device, device to host, device to device) and its runs: a CUDA session's
  // PCIe traffic, counted at the copies this code issues.
  Napi::Value CopyStats(Napi::CallbackInfo const& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    if (!core_->device) return o;
    CopyCounters const& c = core_->device->counters();
    o.Set("runs", static_cast<double>(c.runs.load()));
    o.Set("paddedRuns", static_cast<double>(c.paddedRuns.load()));
    o.Set("hostToDeviceBytes", static_cast<double>(c.hostToDevice.load()));
    o.Set("deviceToHostBytes", static_cast<double>(c.deviceToHost.load()));
    o.Set("deviceToDeviceBytes", static_cast<double>(c.deviceToDevice.load()));
    o.Set("graphCaptures", static_cast<double>(c.graphCaptures.load()));
    o.Set("graphReplays", static_cast<double>(c.graphReplays.load()));
    o.Set("graphRefusals", static_cast<double>(c.graphRefusals.load()));
    o.Set("selectedRuns", static_cast<double>(c.selectedRuns.load()));
    o.Set("selectionOverflows", static_cast<double>(c.selectionOverflows.load()));
    if (c.timedRuns.load() > 0) {  // totals: a caller takes the difference over its own window
      o.Set("timedRuns", static_cast<double>(c.timedRuns.load()));
      o.Set("gpuModelMs", static_cast<double>(c.gpuModelNanos.load()) / 1e6);
      o.Set("gpuRunMs", static_cast<double>(c.gpuRunNanos.load()) / 1e6);
    }
    o.Set("graphRefused", core_->device->GraphRefused());
    o.Set("route", core_->device->route());
    o.Set("graphMode", core_->device->graphMode());
    return o;
  }

  // A feed in device memory: { ptr: bigint, size: number, after?: bigint } (a DeviceBuffer, a ring slot, a CUDA IPC
  // region; after: the cudaStream_t that writes it).
  static Feed DeviceFeed(Napi::Env env, uint32_t index, int type, std::string const& name, Napi::Array dimsJs,
                         Napi::Object data) {
    Feed f;
    f.index = index;
    f.type = type;
    f.onDevice = true;
    size_t count = 1;
    for (uint32_t d = 0; d < dimsJs.Length(); ++d) {
      int64_t v = dimsJs.Get(d).As<Napi::Number>().Int64Value();
      if (v < 0) throw Napi::TypeError::New(env, "Expected non-negative dims for input " + name);
      f.dims.push_back(v);
      count *= static_cast<size_t>(v);
    }
    Napi::Value ptr = data.Get("ptr");
    if (!ptr.IsBigInt()) throw Napi::TypeError::New(env, "Expected a TypedArray or { ptr: bigint } for input " + name);
    bool lossless = false;
    f.data = reinterpret_cast<void const*>(static_cast<uintptr_t>(ptr.As<Napi::BigInt>().Uint64Value(&lossless)));
    f.bytes = count * ElementSize(type);
    // The stream that writes this memory (the preprocessing kernel's): the run waits for it on the device, so the
    // producer needs no host round trip before handing the memory over.
    Napi::Value after = data.Get("after");
    if (after.IsBigInt())
      f.after = reinterpret_cast<void*>(static_cast<uintptr_t>(after.As<Napi::BigInt>().Uint64Value(&lossless)));
    Napi::Value size = data.Get("size");
    if (size.IsNumber() && static_cast<size_t>(size.As<Napi::Number>().Int64Value()) < f.bytes)
      throw Napi::RangeError::New(env, "Expected at least " + std::to_string(f.bytes) +
                                           " bytes of device memory for input " + name + " but the buffer holds " +
                                           std::to_string(size.As<Napi::Number>().Int64Value()));
    return f;
  }

  Core* core_ = nullptr;
};

void TsfnFinalized(Napi::Env, void*, Core* core) {
  core->tsfnAlive = false;
  if (core->orphaned) delete core;
}

// On the JS thread: settles one run.
void Deliver(Napi::Env env, Napi::Function, Core* core, Job* job) {
  if (env == nullptr) {
    core->Drop(job);
    return;
  }
  Api const& api = core->rt->api;
  for (OrtValue* v : job->inputs) api.ReleaseValue(v);
  job->inputs.clear();
  job->keep.clear();
  Napi::HandleScope scope(env);
  if (!job->error.empty()) {
    for (OrtValue* v : job->outputs)
      if (v != nullptr) api.ReleaseValue(v);
    job->deferred.Reject(CodedError(env, "onnxruntime: " + job->error, "E_BACKEND").Value());
  } else {
    Napi::Array out = Napi::Array::New(env, job->outputs.size());
    size_t i = 0;
    try {
      if (core->device) {
        out = Napi::Array::New(env);  // [type, dims, buffer, name] each: a selection changes which come back
        for (size_t k = 0; k < job->hostOutputs.size(); ++k) {
          HostOutput const& o = job->hostOutputs[k];
          if (o.omitted) continue;
          std::string const& name = !o.name.empty()            ? o.name
                                    : k < core->outputs.size() ? core->outputs[k]
                                                               : std::to_string(k);
          // An output written to its device memory: its type and dims, no buffer.
          Napi::Value tensor = TensorToJs(env, o.type, o.dims, o.data(), o.onDevice ? 0 : o.size, name);
          if (o.onDevice) tensor.As<Napi::Array>().Set(2u, env.Undefined());
          tensor.As<Napi::Array>().Set(3u, Napi::String::New(env, name));
          out.Set(out.Length(), tensor);
        }
      }
      for (; i < job->outputs.size(); ++i)
        out.Set(static_cast<uint32_t>(i), OutputToJs(env, core->rt, job->outputs[i], core->outputs[i]));
      // timing: [ms queued for the runner, ms in onnxruntime's Run, ms from Run's end to this callback, the runner
      // thread's CPU ms in Run, its involuntary context switches in Run, its minor page faults in Run].
      auto ms = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
      };
      Napi::Array timing = Napi::Array::New(env, 6);
      timing.Set(0u, ms(job->queued, job->started));
      timing.Set(1u, ms(job->started, job->finished));
      timing.Set(2u, ms(job->finished, Clock::now()));
      timing.Set(3u, job->usage.cpuMs);
      timing.Set(4u, static_cast<double>(job->usage.involuntarySwitches));
      timing.Set(5u, static_cast<double>(job->usage.minorFaults));
      out.Set("timing", timing);
      job->deferred.Resolve(out);
    } catch (Napi::Error const& e) {
      for (++i; i < job->outputs.size(); ++i) api.ReleaseValue(job->outputs[i]);
      job->deferred.Reject(e.Value());
    }
  }
  delete job;
  if (core->wrap != nullptr) core->wrap->Settled(env);
}

}  // namespace

void InitOnnxruntime(Napi::Env env, Napi::Object exports) {
  Napi::Object ort = Napi::Object::New(env);
  ort.Set("open", Napi::Function::New(env, Open, "open"));
  ort.Set("probe", Napi::Function::New(env, Probe, "probe"));
  ort.Set("providers", Napi::Function::New(env, Providers, "providers"));
  ort.Set("Session", Session::Define(env));
  exports.Set("onnxruntime", ort);
}

}  // namespace yqp::ort
