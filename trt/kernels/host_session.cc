#include "kernels/host_session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/job.h"

namespace yqp::kernels {
namespace {

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
    if (stream_ == nullptr) throw core::CodedError(env, "the kernels session is closed", "E_CLOSED");
    if (busy) throw core::CodedError(env, "the kernels session is already running a job", "E_INTERNAL");
    Job job = ParseJob(info[0].As<Napi::Object>(), true, true);
    auto* w = new RunWorker(env, this, std::move(job), info[0].As<Napi::Object>());
    busy = true;
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(Napi::CallbackInfo const& info) {
    if (busy)
      throw core::CodedError(info.Env(), "the kernels session is running a job: await it before close()", "E_INTERNAL");
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
  deferred_.Reject(core::CodedError(Env(), e.Message(), "E_NATIVE").Value());
}

}  // namespace

void AddHostSession(Napi::Env env, Napi::Object kernels) { kernels.Set("Session", Session::Define(env)); }

}  // namespace yqp::kernels
