// exports.kernels: the fused sampler (preprocessing and face-ROI crops) for JavaScript.
//
//   sample(job)                 device frames -> device output, enqueued on job.stream; returns at once
//   done(stream)                Promise resolved when the work enqueued so far on stream has finished
//   Session                     host frames (Uint8Array) -> host output through pinned staging, one stream;
//                               run(job) -> Promise, all copies and the wait happen off the event loop
//   sampleOnHost(job)           the kernel's own per-pixel code on the CPU (reference; no GPU needed)
//   timeSample(job, opts)       per-iteration GPU milliseconds from CUDA events (benchmarks)
//   benchChain(opts)            CUDA graph against eager launches for a preprocess -> model -> decode chain
//   malloc/free/upload/download/memset/streamCreate/streamDestroy/streamSynchronize/deviceInfo
//                               raw helpers for tests and benchmarks (the core's pools serve the library)
//
// A job is { spec, frames, items, out, outBytes?, stream? }: frames are device pointers (BigInt) for the
// device path or typed arrays for the host paths; each item names its frame by index. src/gpu/preprocess.ts
// builds jobs; it validates arguments first, so the checks here only guard memory safety.
#include "kernels_binding.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sampler.h"

// With the CUDA core (trt/core) present, device buffers may be its DeviceBuffer objects, completion is the
// core's (cudaLaunchHostFunc -> ThreadSafeFunction) and host staging comes from its pinned and device pools.
#if __has_include("core/runtime.h")
#include "core/runtime.h"
#define YQP_KERNELS_WITH_CORE 1
#endif

namespace yqp::kernels {
namespace {

Napi::Error Coded(Napi::Env env, std::string const& message, char const* code = "E_NATIVE") {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", code);
  return e;
}

std::string CudaMessage(char const* what, cudaError_t err) {
  return std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

uint64_t ToPtr(Napi::Value v) {
#ifdef YQP_KERNELS_WITH_CORE
  yqp::core::JsBlock block;
  if (yqp::core::UnwrapBlock(v, &block)) return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(block.ptr));
#endif
  if (v.IsObject() && v.As<Napi::Object>().Get("ptr").IsBigInt()) return ToPtr(v.As<Napi::Object>().Get("ptr"));
  if (v.IsBigInt()) {
    bool lossless = false;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
  throw Napi::TypeError::New(v.Env(), "expected a device pointer (BigInt)");
}

int32_t Int(Napi::Object const& o, char const* key, int32_t fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

int64_t Int64(Napi::Object const& o, char const* key, int64_t fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

void Floats(Napi::Object const& o, char const* key, float* out, uint32_t n) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != n)
    throw Napi::TypeError::New(o.Env(), std::string("expected ") + std::to_string(n) + " numbers for " + key);
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < n; ++i) out[i] = a.Get(i).As<Napi::Number>().FloatValue();
}

struct HostView {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};

HostView ViewOf(Napi::Value v) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), "expected a typed array");
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  return {static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), t.ByteLength()};
}

// A parsed job. Item src/uv hold byte offsets from their frame until Resolve() turns them into pointers.
struct Job {
  OutputSpec spec{};
  std::vector<SampleItem> items;
  std::vector<int32_t> frameOf;
  std::vector<int64_t> uvOffset;
  std::vector<uint64_t> deviceFrames;
  std::vector<HostView> hostFrames;
  uint64_t deviceOut = 0;
  HostView hostOut;
  uint64_t stream = 0;
  size_t outBytes = 0;

  size_t NeededOutBytes() const {
    int32_t images = 0;
    for (auto const& it : items) images = std::max(images, it.outIndex + 1);
    return static_cast<size_t>(images) * spec.width * spec.height * 3 * (spec.fp16 ? 2 : 4);
  }

  // Bytes of frame f that the items read (to check host frames and size staging).
  static size_t ItemExtent(SampleItem const& it, int64_t uvOff) {
    if (it.format == kNV12)
      return static_cast<size_t>(uvOff) + static_cast<size_t>(it.uvPitch) * ((it.height + 1) / 2 - 1) +
             static_cast<size_t>((it.width + 1) / 2) * 2;
    int bpp = it.format >= kRGBA ? 4 : 3;
    return static_cast<size_t>(it.pitch) * (it.height - 1) + static_cast<size_t>(it.width) * bpp;
  }

  void Resolve(std::vector<uint64_t> const& bases) {
    for (size_t i = 0; i < items.size(); ++i) {
      uint64_t base = bases[frameOf[i]];
      items[i].src = reinterpret_cast<uint8_t const*>(base);
      items[i].uv = reinterpret_cast<uint8_t const*>(base + uvOffset[i]);
    }
  }
};

Job ParseJob(Napi::Object job, bool hostFrames, bool hostOut) {
  Napi::Env env = job.Env();
  Job j;
  Napi::Object s = job.Get("spec").As<Napi::Object>();
  j.spec.width = Int(s, "width");
  j.spec.height = Int(s, "height");
  j.spec.nchw = s.Get("nchw").ToBoolean() ? 1 : 0;
  j.spec.fp16 = s.Get("fp16").ToBoolean() ? 1 : 0;
  j.spec.bgr = s.Get("bgr").ToBoolean() ? 1 : 0;
  j.spec.filter = Int(s, "filter");
  j.spec.border = Int(s, "border");
  Floats(s, "a", j.spec.a, 3);
  Floats(s, "b", j.spec.b, 3);
  j.spec.padValue = s.Get("padValue").IsNumber() ? s.Get("padValue").As<Napi::Number>().FloatValue() : 0.f;
  if (j.spec.width <= 0 || j.spec.height <= 0) throw Coded(env, "spec.width/height must be positive", "E_ARGUMENT");

  Napi::Array frames = job.Get("frames").As<Napi::Array>();
  for (uint32_t f = 0; f < frames.Length(); ++f) {
    if (hostFrames)
      j.hostFrames.push_back(ViewOf(frames.Get(f)));
    else
      j.deviceFrames.push_back(ToPtr(frames.Get(f)));
  }
  size_t nFrames = frames.Length();
  Napi::Array items = job.Get("items").As<Napi::Array>();
  for (uint32_t i = 0; i < items.Length(); ++i) {
    Napi::Object o = items.Get(i).As<Napi::Object>();
    SampleItem it{};
    int32_t frame = Int(o, "frame");
    it.width = Int(o, "width");
    it.height = Int(o, "height");
    it.format = Int(o, "format");
    it.pitch = Int(o, "pitch");
    it.uvPitch = Int(o, "uvPitch");
    it.outIndex = Int(o, "outIndex");
    Floats(o, "m", it.m, 6);
    float rect[4];
    Floats(o, "rect", rect, 4);
    it.x0 = static_cast<int32_t>(rect[0]);
    it.y0 = static_cast<int32_t>(rect[1]);
    it.x1 = static_cast<int32_t>(rect[2]);
    it.y1 = static_cast<int32_t>(rect[3]);
    int64_t uvOff = Int64(o, "uvOffset");
    if (frame < 0 || static_cast<size_t>(frame) >= nFrames)
      throw Coded(env, "items[" + std::to_string(i) + "].frame out of range", "E_ARGUMENT");
    if (it.width <= 0 || it.height <= 0 || it.format < kRGB || it.format > kNV12 || it.outIndex < 0)
      throw Coded(env, "items[" + std::to_string(i) + "] has a bad size, format or outIndex", "E_ARGUMENT");
    int bpp = it.format == kNV12 ? 1 : (it.format >= kRGBA ? 4 : 3);
    if (it.pitch < it.width * bpp || (it.format == kNV12 && it.uvPitch < ((it.width + 1) / 2) * 2))
      throw Coded(env, "items[" + std::to_string(i) + "] pitch is smaller than a row", "E_ARGUMENT");
    if (hostFrames && Job::ItemExtent(it, uvOff) > j.hostFrames[frame].bytes)
      throw Coded(env,
                  "frames[" + std::to_string(frame) + "] is smaller than items[" + std::to_string(i) + "] reads (" +
                      std::to_string(Job::ItemExtent(it, uvOff)) + " bytes)",
                  "E_ARGUMENT");
    j.items.push_back(it);
    j.frameOf.push_back(frame);
    j.uvOffset.push_back(uvOff);
  }
  if (job.Has("stream")) {
    Napi::Value st = job.Get("stream");
    if (!st.IsUndefined() && !st.IsNull()) j.stream = ToPtr(st);
  }
  size_t needed = j.NeededOutBytes();
  if (hostOut) {
    j.hostOut = ViewOf(job.Get("out"));
    if (j.hostOut.bytes < needed)
      throw Coded(env,
                  "out holds " + std::to_string(j.hostOut.bytes) + " bytes, the items write " + std::to_string(needed),
                  "E_ARGUMENT");
  } else {
    j.deviceOut = ToPtr(job.Get("out"));
    j.outBytes = static_cast<size_t>(Int64(job, "outBytes", 0));
    if (j.outBytes > 0 && j.outBytes < needed)
      throw Coded(env, "out holds " + std::to_string(j.outBytes) + " bytes, the items write " + std::to_string(needed),
                  "E_ARGUMENT");
  }
  return j;
}

// ---- raw helpers ---------------------------------------------------------------------------------------------

Napi::Value DeviceInfo(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    r.Set("available", false);
    r.Set("reason", err != cudaSuccess ? CudaMessage("cudaGetDeviceCount", err) : "no CUDA device");
    return r;
  }
  int dev = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  cudaDeviceProp p{};
  err = cudaGetDeviceProperties(&p, dev);
  if (err != cudaSuccess) {
    r.Set("available", false);
    r.Set("reason", CudaMessage("cudaGetDeviceProperties", err));
    return r;
  }
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  r.Set("available", true);
  r.Set("count", count);
  r.Set("name", p.name);
  r.Set("sm", std::to_string(p.major) + std::to_string(p.minor));
  r.Set("multiprocessors", p.multiProcessorCount);
  r.Set("totalMemory", static_cast<double>(p.totalGlobalMem));
  r.Set("runtimeVersion", runtime);
  r.Set("driverVersion", driver);
  return r;
}

void Check(Napi::Env env, char const* what, cudaError_t err) {
  if (err != cudaSuccess) throw Coded(env, CudaMessage(what, err));
}

Napi::Value Malloc(Napi::CallbackInfo const& info) {
  void* p = nullptr;
  Check(info.Env(), "cudaMalloc", cudaMalloc(&p, static_cast<size_t>(info[0].As<Napi::Number>().Int64Value())));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

Napi::Value Free(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaFree", cudaFree(reinterpret_cast<void*>(ToPtr(info[0]))));
  return info.Env().Undefined();
}

// upload(ptr, view) / download(ptr, view): synchronous copies, tests and benchmark setup only.
Napi::Value Upload(Napi::CallbackInfo const& info) {
  HostView v = ViewOf(info[1]);
  Check(info.Env(), "cudaMemcpy",
        cudaMemcpy(reinterpret_cast<void*>(ToPtr(info[0])), v.data, v.bytes, cudaMemcpyHostToDevice));
  return info.Env().Undefined();
}

Napi::Value Download(Napi::CallbackInfo const& info) {
  HostView v = ViewOf(info[1]);
  Check(info.Env(), "cudaMemcpy",
        cudaMemcpy(v.data, reinterpret_cast<void*>(ToPtr(info[0])), v.bytes, cudaMemcpyDeviceToHost));
  return info.Env().Undefined();
}

Napi::Value Memset(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaMemset",
        cudaMemset(reinterpret_cast<void*>(ToPtr(info[0])), info[1].As<Napi::Number>().Int32Value(),
                   static_cast<size_t>(info[2].As<Napi::Number>().Int64Value())));
  // cudaMemset may return before it ran, on the legacy stream that non-blocking streams do not wait for.
  Check(info.Env(), "cudaDeviceSynchronize", cudaDeviceSynchronize());
  return info.Env().Undefined();
}

Napi::Value StreamCreate(Napi::CallbackInfo const& info) {
  cudaStream_t s = nullptr;
  Check(info.Env(), "cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(s)));
}

Napi::Value StreamDestroy(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaStreamDestroy", cudaStreamDestroy(reinterpret_cast<cudaStream_t>(ToPtr(info[0]))));
  return info.Env().Undefined();
}

Napi::Value StreamSynchronize(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaStreamSynchronize", cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(ToPtr(info[0]))));
  return info.Env().Undefined();
}

// ---- sampling ------------------------------------------------------------------------------------------------

Napi::Value Sample(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  Job j = ParseJob(info[0].As<Napi::Object>(), false, false);
  j.Resolve(j.deviceFrames);
  Check(env, "sample kernel launch",
        LaunchSample(j.items.data(), static_cast<int>(j.items.size()), j.spec, reinterpret_cast<void*>(j.deviceOut),
                     reinterpret_cast<cudaStream_t>(j.stream)));
  return env.Undefined();
}

Napi::Value SampleHost(Napi::CallbackInfo const& info) {
  Job j = ParseJob(info[0].As<Napi::Object>(), true, true);
  std::vector<uint64_t> bases;
  for (auto const& f : j.hostFrames) bases.push_back(reinterpret_cast<uint64_t>(f.data));
  j.Resolve(bases);
  SampleOnHost(j.items.data(), static_cast<int>(j.items.size()), j.spec, j.hostOut.data);
  return info.Env().Undefined();
}

// Waits on an event off the event loop. BlockingSync: the pool thread sleeps instead of spinning a core.
class DoneWorker final : public Napi::AsyncWorker {
 public:
  DoneWorker(Napi::Env env, cudaStream_t stream)
      : Napi::AsyncWorker(env, "yqp-trt:kernels-done"), deferred_(Napi::Promise::Deferred::New(env)) {
    err_ = cudaEventCreateWithFlags(&event_, cudaEventBlockingSync | cudaEventDisableTiming);
    if (err_ == cudaSuccess) err_ = cudaEventRecord(event_, stream);
  }
  ~DoneWorker() override {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    if (err_ == cudaSuccess) err_ = cudaEventSynchronize(event_);
    if (err_ != cudaSuccess) SetError(CudaMessage("stream completion", err_));
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(Napi::Error const& e) override { deferred_.Reject(Coded(Env(), e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  cudaEvent_t event_ = nullptr;
  cudaError_t err_ = cudaSuccess;
};

Napi::Value Done(Napi::CallbackInfo const& info) {
  cudaStream_t s = info.Length() > 0 ? reinterpret_cast<cudaStream_t>(ToPtr(info[0])) : nullptr;
#ifdef YQP_KERNELS_WITH_CORE
  return yqp::core::StreamDone(info.Env(), s);
#endif
  auto* w = new DoneWorker(info.Env(), s);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Grows-only device or pinned buffer.
struct Staging {
  void* ptr = nullptr;
  size_t capacity = 0;
  bool pinned = false;
  cudaError_t Reserve(size_t bytes) {
    if (bytes <= capacity) return cudaSuccess;
    Release();
    size_t cap = std::max(bytes, capacity + capacity / 2);
    cudaError_t err = pinned ? cudaHostAlloc(&ptr, cap, cudaHostAllocDefault) : cudaMalloc(&ptr, cap);
    if (err == cudaSuccess)
      capacity = cap;
    else
      ptr = nullptr;
    return err;
  }
  void Release() {
    if (ptr != nullptr) pinned ? cudaFreeHost(ptr) : cudaFree(ptr);
    ptr = nullptr;
    capacity = 0;
  }
};

// Copies host frames into pinned staging. One thread copies a few GB/s on the GPU machine (87 ms for 64
// 1080p frames, measured), so large batches are split across up to 8 threads by byte range.
struct CopySegment {
  uint8_t* dst;
  uint8_t const* src;
  size_t bytes;
};

void ParallelCopy(std::vector<CopySegment> const& segments) {
  size_t total = 0;
  for (auto const& s : segments) total += s.bytes;
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  unsigned n = total < (size_t{16} << 20) ? 1u : std::min(8u, std::max(1u, hw / 2));
  auto copyRange = [&segments](size_t begin, size_t end) {
    size_t offset = 0;
    for (auto const& s : segments) {
      size_t lo = std::max(begin, offset), hi = std::min(end, offset + s.bytes);
      if (lo < hi) std::memcpy(s.dst + (lo - offset), s.src + (lo - offset), hi - lo);
      offset += s.bytes;
      if (offset >= end) break;
    }
  };
  if (n == 1) return copyRange(0, total);
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < n; ++t) threads.emplace_back(copyRange, total * t / n, total * (t + 1) / n);
  copyRange(0, total / n);
  for (auto& t : threads) t.join();
}

class Session;

class RunWorker final : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, Session* session, Job job, Napi::Object jobObject);
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override;
  void OnOK() override;
  void OnError(Napi::Error const& e) override;

 private:
  Napi::Promise::Deferred deferred_;
  Session* session_;
  Job job_;
  Napi::ObjectReference keep_;  // frames and out stay alive (and unmoved) while the worker reads and writes them
  double ms_[3] = {0, 0, 0};
};

// Host frames in, host tensor out: pinned staging, device buffers and a stream reused across runs. One run at a
// time (the TypeScript wrapper queues); every copy and the wait run on a libuv pool thread.
class Session final : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Session",
                       {InstanceMethod<&Session::Run>("run"), InstanceMethod<&Session::Close>("close"),
                        InstanceAccessor<&Session::StreamGetter>("stream")});
  }

  explicit Session(Napi::CallbackInfo const& info) : Napi::ObjectWrap<Session>(info) {
    device_ = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    Check(info.Env(), "cudaSetDevice", cudaSetDevice(device_));
    Check(info.Env(), "cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    for (auto* e : {&e0_, &e1_, &e2_, &e3_}) Check(info.Env(), "cudaEventCreate", cudaEventCreate(e));
    pinnedIn_.pinned = pinnedOut_.pinned = true;
  }
  ~Session() override { Free(); }

  // Executes on a pool thread.
  cudaError_t Execute(Job& job, double ms[3]) {
    cudaError_t err = cudaSetDevice(device_);
    if (err != cudaSuccess) return err;
    std::vector<size_t> offsets;
    size_t total = 0;
    for (auto const& f : job.hostFrames) {
      offsets.push_back(total);
      total += (f.bytes + 255) / 256 * 256;
    }
    size_t outBytes = job.NeededOutBytes();
    void *pinIn, *devIn, *devOut, *pinOut;
#ifdef YQP_KERNELS_WITH_CORE
    // The core's pools: steady-state runs reuse blocks; the leases go back when this run has completed.
    std::unique_ptr<core::Lease> leases[4];
    try {
      leases[0] = core::BufferPool::Pinned()->Acquire(total);
      leases[1] = core::BufferPool::Device(device_)->Acquire(total);
      leases[2] = core::BufferPool::Device(device_)->Acquire(outBytes);
      leases[3] = core::BufferPool::Pinned()->Acquire(outBytes);
    } catch (core::CudaException const& e) {
      return e.error;
    }
    pinIn = leases[0]->data();
    devIn = leases[1]->data();
    devOut = leases[2]->data();
    pinOut = leases[3]->data();
#else
    if ((err = pinnedIn_.Reserve(total)) != cudaSuccess || (err = deviceIn_.Reserve(total)) != cudaSuccess ||
        (err = deviceOut_.Reserve(outBytes)) != cudaSuccess || (err = pinnedOut_.Reserve(outBytes)) != cudaSuccess)
      return err;
    pinIn = pinnedIn_.ptr;
    devIn = deviceIn_.ptr;
    devOut = deviceOut_.ptr;
    pinOut = pinnedOut_.ptr;
#endif
    std::vector<CopySegment> segments;
    for (size_t f = 0; f < job.hostFrames.size(); ++f)
      segments.push_back({static_cast<uint8_t*>(pinIn) + offsets[f], job.hostFrames[f].data, job.hostFrames[f].bytes});
    auto c0 = std::chrono::steady_clock::now();
    ParallelCopy(segments);
    stagingMs_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
    std::vector<uint64_t> bases;
    for (size_t o : offsets) bases.push_back(reinterpret_cast<uint64_t>(devIn) + o);
    job.Resolve(bases);
    auto enqueue = [&]() -> cudaError_t {
      cudaError_t e = cudaEventRecord(e0_, stream_);
      if (e == cudaSuccess) e = cudaMemcpyAsync(devIn, pinIn, total, cudaMemcpyHostToDevice, stream_);
      if (e == cudaSuccess) e = cudaEventRecord(e1_, stream_);
      if (e == cudaSuccess)
        e = LaunchSample(job.items.data(), static_cast<int>(job.items.size()), job.spec, devOut, stream_);
      if (e == cudaSuccess) e = cudaEventRecord(e2_, stream_);
      if (e == cudaSuccess) e = cudaMemcpyAsync(pinOut, devOut, outBytes, cudaMemcpyDeviceToHost, stream_);
      if (e == cudaSuccess) e = cudaEventRecord(e3_, stream_);
      return e;
    };
    err = enqueue();
    // Always drained, also after an error: staging blocks must not go back to a pool while a copy still uses them.
    cudaError_t drained = cudaStreamSynchronize(stream_);
    if (err == cudaSuccess) err = drained;
    if (err != cudaSuccess) return err;
    float a = 0, b = 0, c = 0;
    cudaEventElapsedTime(&a, e0_, e1_);
    cudaEventElapsedTime(&b, e1_, e2_);
    cudaEventElapsedTime(&c, e2_, e3_);
    ms[0] = a;
    ms[1] = b;
    ms[2] = c;
    ParallelCopy({{job.hostOut.data, static_cast<uint8_t const*>(pinOut), outBytes}});
    return cudaSuccess;
  }

  bool busy = false;
  double stagingMs_ = 0;

 private:
  Napi::Value Run(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    if (stream_ == nullptr) throw Coded(env, "the kernels session is closed", "E_CLOSED");
    if (busy) throw Coded(env, "the kernels session is already running a job", "E_INTERNAL");
    Job job = ParseJob(info[0].As<Napi::Object>(), true, true);
    auto* w = new RunWorker(env, this, std::move(job), info[0].As<Napi::Object>());
    busy = true;
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(Napi::CallbackInfo const& info) {
    if (busy) throw Coded(info.Env(), "the kernels session is running a job: await it before close()", "E_INTERNAL");
    Free();
    return info.Env().Undefined();
  }

  Napi::Value StreamGetter(Napi::CallbackInfo const& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(stream_)));
  }

  void Free() {
    if (stream_ == nullptr) return;
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    pinnedIn_.Release();
    pinnedOut_.Release();
    deviceIn_.Release();
    deviceOut_.Release();
    for (auto* e : {&e0_, &e1_, &e2_, &e3_})
      if (*e != nullptr) cudaEventDestroy(*e), *e = nullptr;
    cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t e0_ = nullptr, e1_ = nullptr, e2_ = nullptr, e3_ = nullptr;
  Staging pinnedIn_, deviceIn_, deviceOut_, pinnedOut_;
};

RunWorker::RunWorker(Napi::Env env, Session* session, Job job, Napi::Object jobObject)
    : Napi::AsyncWorker(env, "yqp-trt:kernels-run"),
      deferred_(Napi::Promise::Deferred::New(env)),
      session_(session),
      job_(std::move(job)),
      keep_(Napi::Persistent(jobObject)) {
  session->Ref();
}

void RunWorker::Execute() {
  cudaError_t err = session_->Execute(job_, ms_);
  if (err != cudaSuccess) SetError(CudaMessage("kernels session run", err));
}

void RunWorker::OnOK() {
  session_->busy = false;
  session_->Unref();
  Napi::Object r = Napi::Object::New(Env());
  r.Set("stagingMs", session_->stagingMs_);
  r.Set("uploadMs", ms_[0]);
  r.Set("kernelMs", ms_[1]);
  r.Set("downloadMs", ms_[2]);
  deferred_.Resolve(r);
}

void RunWorker::OnError(Napi::Error const& e) {
  session_->busy = false;
  session_->Unref();
  deferred_.Reject(Coded(Env(), e.Message()).Value());
}

// ---- benchmarks ----------------------------------------------------------------------------------------------

class TimeWorker final : public Napi::AsyncWorker {
 public:
  TimeWorker(Napi::Env env, Job job, int iterations, int warmup, Napi::Object keep)
      : Napi::AsyncWorker(env, "yqp-trt:kernels-time"),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)),
        iterations_(iterations),
        warmup_(warmup),
        keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    cudaStream_t s = reinterpret_cast<cudaStream_t>(job_.stream);
    std::vector<cudaEvent_t> ev(iterations_ + 1);
    for (auto& e : ev) cudaEventCreate(&e);
    cudaError_t err = cudaSuccess;
    for (int i = 0; i < warmup_ && err == cudaSuccess; ++i)
      err = LaunchSample(job_.items.data(), static_cast<int>(job_.items.size()), job_.spec,
                         reinterpret_cast<void*>(job_.deviceOut), s);
    for (int i = 0; i < iterations_ && err == cudaSuccess; ++i) {
      cudaEventRecord(ev[i], s);
      err = LaunchSample(job_.items.data(), static_cast<int>(job_.items.size()), job_.spec,
                         reinterpret_cast<void*>(job_.deviceOut), s);
    }
    cudaEventRecord(ev[iterations_], s);
    if (err == cudaSuccess) err = cudaEventSynchronize(ev[iterations_]);
    for (int i = 0; i < iterations_ && err == cudaSuccess; ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, ev[i], ev[i + 1]);
      ms_.push_back(ms);
    }
    for (auto& e : ev) cudaEventDestroy(e);
    if (err != cudaSuccess) SetError(CudaMessage("timeSample", err));
  }
  void OnOK() override {
    Napi::Array a = Napi::Array::New(Env(), ms_.size());
    for (size_t i = 0; i < ms_.size(); ++i) a.Set(static_cast<uint32_t>(i), ms_[i]);
    deferred_.Resolve(a);
  }
  void OnError(Napi::Error const& e) override { deferred_.Reject(Coded(Env(), e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  int iterations_, warmup_;
  Napi::ObjectReference keep_;
  std::vector<double> ms_;
};

Napi::Value TimeSample(Napi::CallbackInfo const& info) {
  Napi::Object jobObj = info[0].As<Napi::Object>();
  Job j = ParseJob(jobObj, false, false);
  j.Resolve(j.deviceFrames);
  Napi::Object opts =
      info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
  auto* w = new TimeWorker(info.Env(), std::move(j), std::max(1, Int(opts, "iterations", 50)),
                           std::max(0, Int(opts, "warmup", 5)), jobObj);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The preprocess -> model stand-in -> decode chain, eager against one CUDA graph replay. CPU launch time is the
// host time spent enqueuing one iteration (the stream is drained between iterations so a full launch queue
// never stalls the enqueue); total is enqueue plus wait.
class ChainWorker final : public Napi::AsyncWorker {
 public:
  ChainWorker(Napi::Env env, Job job, int stages, int iterations, Napi::Object keep)
      : Napi::AsyncWorker(env, "yqp-trt:kernels-chain"),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)),
        stages_(stages),
        iterations_(iterations),
        keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  cudaError_t Enqueue(cudaStream_t s) {
    cudaError_t err = cudaMemsetAsync(count_, 0, sizeof(int32_t), s);
    if (err == cudaSuccess)
      err = LaunchSample(job_.items.data(), static_cast<int>(job_.items.size()), job_.spec,
                         reinterpret_cast<void*>(job_.deviceOut), s);
    float* data = reinterpret_cast<float*>(job_.deviceOut);
    int64_t n = static_cast<int64_t>(job_.NeededOutBytes() / 4);
    for (int i = 0; i < stages_ && err == cudaSuccess; ++i) err = LaunchChainStage(data, n, 0.9f + 0.01f * i, 0.01f, s);
    if (err == cudaSuccess) err = LaunchChainDecode(data, n / 16, 16, 0.75f, count_, s);
    if (err == cudaSuccess) err = cudaMemcpyAsync(hostCount_, count_, sizeof(int32_t), cudaMemcpyDeviceToHost, s);
    return err;
  }

  void Execute() override {
    using Clock = std::chrono::steady_clock;
    cudaStream_t s = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (err == cudaSuccess) err = cudaMalloc(&count_, sizeof(int32_t));
    if (err == cudaSuccess) err = cudaHostAlloc(&hostCount_, sizeof(int32_t), cudaHostAllocDefault);
    std::vector<double> eagerLaunch, eagerTotal, graphLaunch, graphTotal;
    int32_t eagerCount = -1, graphCount = -2;
    for (int i = 0; i < iterations_ + 10 && err == cudaSuccess; ++i) {
      auto t0 = Clock::now();
      err = Enqueue(s);
      auto t1 = Clock::now();
      if (err == cudaSuccess) err = cudaStreamSynchronize(s);
      auto t2 = Clock::now();
      if (i >= 10) {
        eagerLaunch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        eagerTotal.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
      }
    }
    eagerCount = *hostCount_;
    if (err == cudaSuccess) err = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (err == cudaSuccess) {
      cudaError_t e = Enqueue(s);
      err = cudaStreamEndCapture(s, &graph);
      if (e != cudaSuccess) err = e;
    }
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
    if (err == cudaSuccess) {
      size_t n = 0;
      cudaGraphGetNodes(graph, nullptr, &n);
      nodes_ = static_cast<int>(n);
    }
    for (int i = 0; i < iterations_ + 10 && err == cudaSuccess; ++i) {
      auto t0 = Clock::now();
      err = cudaGraphLaunch(exec, s);
      auto t1 = Clock::now();
      if (err == cudaSuccess) err = cudaStreamSynchronize(s);
      auto t2 = Clock::now();
      if (i >= 10) {
        graphLaunch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        graphTotal.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
      }
    }
    if (hostCount_ != nullptr) graphCount = *hostCount_;
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (count_ != nullptr) cudaFree(count_);
    if (hostCount_ != nullptr) cudaFreeHost(hostCount_);
    if (s != nullptr) cudaStreamDestroy(s);
    if (err != cudaSuccess) return SetError(CudaMessage("benchChain", err));
    eagerLaunchUs_ = Median(eagerLaunch);
    eagerTotalUs_ = Median(eagerTotal);
    graphLaunchUs_ = Median(graphLaunch);
    graphTotalUs_ = Median(graphTotal);
    sameResult_ = eagerCount == graphCount;
    decodeCount_ = graphCount;
  }
  void OnOK() override {
    Napi::Object r = Napi::Object::New(Env());
    r.Set("eagerLaunchUs", eagerLaunchUs_);
    r.Set("eagerTotalUs", eagerTotalUs_);
    r.Set("graphLaunchUs", graphLaunchUs_);
    r.Set("graphTotalUs", graphTotalUs_);
    r.Set("graphNodes", nodes_);
    r.Set("sameResult", sameResult_);
    r.Set("decodeCount", decodeCount_);
    deferred_.Resolve(r);
  }
  void OnError(Napi::Error const& e) override { deferred_.Reject(Coded(Env(), e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  int stages_, iterations_;
  Napi::ObjectReference keep_;
  int32_t* count_ = nullptr;
  int32_t* hostCount_ = nullptr;
  double eagerLaunchUs_ = 0, eagerTotalUs_ = 0, graphLaunchUs_ = 0, graphTotalUs_ = 0;
  int nodes_ = 0;
  bool sameResult_ = false;
  int32_t decodeCount_ = 0;
};

// benchChain(job, { stages, iterations }): job is a device job (its out is the chain's tensor, fp32).
Napi::Value BenchChain(Napi::CallbackInfo const& info) {
  Napi::Object jobObj = info[0].As<Napi::Object>();
  Job j = ParseJob(jobObj, false, false);
  j.Resolve(j.deviceFrames);
  if (j.spec.fp16) throw Coded(info.Env(), "benchChain needs a float32 output", "E_ARGUMENT");
  Napi::Object opts =
      info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
  auto* w = new ChainWorker(info.Env(), std::move(j), std::max(0, Int(opts, "stages", 6)),
                            std::max(1, Int(opts, "iterations", 200)), jobObj);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace
}  // namespace yqp::kernels

void InitKernels(Napi::Env env, Napi::Object exports) {
  using namespace yqp::kernels;
  Napi::Object k = Napi::Object::New(env);
  k.Set("maxItemsPerLaunch", kMaxItemsPerLaunch);
  k.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  k.Set("malloc", Napi::Function::New(env, Malloc, "malloc"));
  k.Set("free", Napi::Function::New(env, Free, "free"));
  k.Set("upload", Napi::Function::New(env, Upload, "upload"));
  k.Set("download", Napi::Function::New(env, Download, "download"));
  k.Set("memset", Napi::Function::New(env, Memset, "memset"));
  k.Set("streamCreate", Napi::Function::New(env, StreamCreate, "streamCreate"));
  k.Set("streamDestroy", Napi::Function::New(env, StreamDestroy, "streamDestroy"));
  k.Set("streamSynchronize", Napi::Function::New(env, StreamSynchronize, "streamSynchronize"));
  k.Set("sample", Napi::Function::New(env, Sample, "sample"));
  k.Set("sampleOnHost", Napi::Function::New(env, SampleHost, "sampleOnHost"));
  k.Set("done", Napi::Function::New(env, Done, "done"));
  k.Set("timeSample", Napi::Function::New(env, TimeSample, "timeSample"));
  k.Set("benchChain", Napi::Function::New(env, BenchChain, "benchChain"));
  k.Set("Session", Session::Define(env));
  exports.Set("kernels", k);
}
