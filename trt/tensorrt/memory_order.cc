// Bridge to the CUDA core. Until trt/core's headers are in the tree this file carries a direct CUDA runtime
// implementation of each service (one stream per handle, cudaMalloc/cudaHostAlloc, cudaLaunchHostFunc ->
// ThreadSafeFunction, stream capture); it is the only place to change when the core's pools, completion and
// graph cache take over.
#include "core_bridge.h"

#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace yqp::trt::bridge {

std::string CudaError(char const* what, cudaError_t e) {
  return std::string(what) + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

namespace {

class OwnedStream final : public Stream {
 public:
  explicit OwnedStream(cudaStream_t s) : s_(s) {}
  ~OwnedStream() override { cudaStreamDestroy(s_); }
  cudaStream_t get() const override { return s_; }

 private:
  cudaStream_t s_;
};

class DeviceBuffer final : public Buffer {
 public:
  DeviceBuffer(void* p, size_t n) : p_(p), n_(n) {}
  ~DeviceBuffer() override { cudaFree(p_); }
  void* data() const override { return p_; }
  size_t size() const override { return n_; }

 private:
  void* p_;
  size_t n_;
};

class PinnedBuffer final : public Buffer {
 public:
  PinnedBuffer(void* p, size_t n) : p_(p), n_(n) {}
  ~PinnedBuffer() override { cudaFreeHost(p_); }
  void* data() const override { return p_; }
  size_t size() const override { return n_; }

 private:
  void* p_;
  size_t n_;
};

struct Completion {
  Napi::ThreadSafeFunction tsfn;
  std::function<void(Napi::Env, std::string const&)> done;
  cudaStream_t stream;
};

// Runs on a CUDA driver thread: no CUDA calls allowed here, only the hand-off to JavaScript.
void CUDART_CB HostDone(void* data) {
  auto* c = static_cast<Completion*>(data);
  napi_status s = c->tsfn.NonBlockingCall([c](Napi::Env env, Napi::Function) {
    cudaError_t e = cudaStreamQuery(c->stream);
    std::string error = e == cudaSuccess ? std::string() : CudaError("the CUDA stream", e);
    c->done(env, error);
    c->tsfn.Release();
    delete c;
  });
  if (s != napi_ok) {
    c->tsfn.Release();
    delete c;
  }
}

class StreamGraphCache final : public GraphCache {
 public:
  ~StreamGraphCache() override { Clear(); }

  bool Run(uint64_t key, cudaStream_t stream, std::function<bool(cudaStream_t, std::string*)> const& enqueue,
           std::string* error) override {
    if (disabled_) return enqueue(stream, error);
    auto it = graphs_.find(key);
    if (it != graphs_.end()) {
      cudaError_t e = cudaGraphLaunch(it->second, stream);
      if (e != cudaSuccess) {
        *error = CudaError("cudaGraphLaunch", e);
        return false;
      }
      return true;
    }
    // The first run of a shape goes uncaptured: TensorRT does shape-dependent setup on it.
    if (seen_.insert(key).second) return enqueue(stream, error);
    cudaGraph_t graph = nullptr;
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      cudaGetLastError();
      disabled_ = true;
      return enqueue(stream, error);
    }
    std::string captureError;
    bool ok = enqueue(stream, &captureError);
    cudaError_t end = cudaStreamEndCapture(stream, &graph);
    cudaGraphExec_t exec = nullptr;
    if (ok && end == cudaSuccess && graph != nullptr && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess) {
      cudaGraphDestroy(graph);
      graphs_[key] = exec;
      cudaError_t e = cudaGraphLaunch(exec, stream);
      if (e != cudaSuccess) {
        *error = CudaError("cudaGraphLaunch", e);
        return false;
      }
      return true;
    }
    // Capture refused (a layer that cannot be captured, a legacy-stream call): fall back for good.
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    disabled_ = true;
    return enqueue(stream, error);
  }

  void Clear() override {
    for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
    graphs_.clear();
    seen_.clear();
  }
  size_t size() const override { return graphs_.size(); }
  bool captureDisabled() const override { return disabled_; }

 private:
  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  std::unordered_set<uint64_t> seen_;
  bool disabled_ = false;
};

class EventSerializer final : public Serializer {
 public:
  explicit EventSerializer(cudaEvent_t e) : event_(e) {}
  ~EventSerializer() override { cudaEventDestroy(event_); }
  bool Before(cudaStream_t stream, std::string* error) override {
    std::lock_guard<std::mutex> lock(mutex_);
    cudaError_t e = cudaStreamWaitEvent(stream, event_, 0);
    if (e != cudaSuccess) *error = CudaError("cudaStreamWaitEvent", e);
    return e == cudaSuccess;
  }
  bool After(cudaStream_t stream, std::string* error) override {
    std::lock_guard<std::mutex> lock(mutex_);
    cudaError_t e = cudaEventRecord(event_, stream);
    if (e != cudaSuccess) *error = CudaError("cudaEventRecord", e);
    return e == cudaSuccess;
  }

 private:
  std::mutex mutex_;
  cudaEvent_t event_;
};

}  // namespace

std::unique_ptr<Stream> AcquireStream(int device, std::string* error) {
  cudaError_t e = cudaSetDevice(device);
  cudaStream_t s = nullptr;
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    *error = CudaError("cudaStreamCreateWithFlags", e);
    return nullptr;
  }
  return std::make_unique<OwnedStream>(s);
}

std::unique_ptr<Buffer> AllocDevice(int device, size_t bytes, std::string* error) {
  void* p = nullptr;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  if (e != cudaSuccess) {
    *error = CudaError(("cudaMalloc(" + std::to_string(bytes) + ")").c_str(), e);
    return nullptr;
  }
  return std::make_unique<DeviceBuffer>(p, bytes);
}

std::unique_ptr<Buffer> AllocPinned(size_t bytes, std::string* error) {
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, bytes == 0 ? 1 : bytes, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    *error = CudaError(("cudaHostAlloc(" + std::to_string(bytes) + ")").c_str(), e);
    return nullptr;
  }
  return std::make_unique<PinnedBuffer>(p, bytes);
}

void OnStreamComplete(Napi::Env env, cudaStream_t stream, std::function<void(Napi::Env, std::string const&)> done) {
  auto* c = new Completion{
      Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](Napi::CallbackInfo const&) {}),
                                    "yqp-trt:complete", 0, 1),
      std::move(done), stream};
  cudaError_t e = cudaLaunchHostFunc(stream, HostDone, c);
  if (e != cudaSuccess) {
    c->done(env, CudaError("cudaLaunchHostFunc", e));
    c->tsfn.Release();
    delete c;
  }
}

std::unique_ptr<GraphCache> MakeGraphCache() { return std::make_unique<StreamGraphCache>(); }

std::unique_ptr<Serializer> MakeSerializer(std::string* error) {
  cudaEvent_t e = nullptr;
  cudaError_t r = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  if (r != cudaSuccess) {
    *error = CudaError("cudaEventCreateWithFlags", r);
    return nullptr;
  }
  return std::make_unique<EventSerializer>(e);
}

}  // namespace yqp::trt::bridge
