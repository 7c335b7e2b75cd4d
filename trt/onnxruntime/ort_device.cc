#include "onnxruntime/ort_device.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <shared_mutex>
#include <utility>

#include "core/cuda_check.h"
#include "kernels/gpu_delay.h"
#include "onnxruntime/ort_selection.h"

namespace yqp::ort {
namespace {

constexpr int kDeviceAllocator = 0, kMemTypeDefault = 0;

std::string CudaReason(std::string const& what, cudaError_t e) {
  return what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

std::string DimsKey(std::vector<int64_t> const& dims) {
  std::string k;
  for (int64_t d : dims) k += std::to_string(d) + "x";
  return k;
}

}  // namespace

// Device buffers bound once per (variant, input shapes): a CUDA graph replays on these addresses.
struct DeviceRunner::Binding {
  OrtIoBinding* io = nullptr;
  int64_t batch = 0;  // the batch the session runs (>= the request's when a graph session is padded)
  std::vector<std::unique_ptr<core::Lease>> memory;
  std::vector<OrtValue*> values;
  std::vector<void*> inputPtr;
  std::vector<void*> outputPtr;  // null where the output's shape is only known after the run
  std::vector<size_t> outputBytes;
  std::vector<std::vector<int64_t>> outputDims;
  std::vector<int> outputTypes;
  RowSelection::Bound selection;  // with row selection: its kernel's launch and memory on these outputs
  // CUDA graph of the run on these addresses (graph mode, every output bound here).
  cudaGraphExec_t graph = nullptr;
  int eagerRuns = 0;
  bool graphRefused = false;
};

// Eager runs before a capture: the first sizes onnxruntime's arena and picks cuDNN's algorithms, the second runs
// with no allocation left to make (an allocation would not belong in a graph).
constexpr int kEagerRunsBeforeCapture = 2;

// A capture must not overlap another context's run: onnxruntime frees pinned host memory after a run
// (cudaFreeHost synchronizes the device), which is not permitted while any stream of the process is capturing and
// which onnxruntime does not survive. Runs hold this shared; a capture holds it alone.
std::shared_mutex& CaptureLock() {
  static std::shared_mutex lock;
  return lock;
}

DeviceRunner::DeviceRunner(Runtime const* rt, DeviceOptions options, std::vector<Variant> variants,
                           std::vector<std::string> inputs, std::vector<std::string> outputs)
    : rt_(rt),
      options_(std::move(options)),
      variants_(std::move(variants)),
      inputs_(std::move(inputs)),
      outputs_(std::move(outputs)) {
  Api const& api = rt_->api;
  pool_ = core::BufferPool::Device(options_.deviceId);
  pinned_ = core::BufferPool::Pinned();
  api.Take(api.CreateMemoryInfo("Cuda", kDeviceAllocator, options_.deviceId, kMemTypeDefault, &deviceMemory_));
  cudaEventCreateWithFlags(&producerDone_, cudaEventDisableTiming);
  // YQP_CUDA_TIMING=1: events around each run's copies and model; =gpu: the same after a delay kernel, so that they
  // time the GPU's work alone (the host has launched the run by the time the GPU reaches the first event).
  char const* timing = std::getenv("YQP_CUDA_TIMING");
  std::string mode = timing != nullptr ? timing : "";
  if (mode == "1" || mode == "gpu") {
    timed_ = true;
    gpuOnlyTiming_ = mode == "gpu";
    for (cudaEvent_t& e : timing_) timed_ = timed_ && cudaEventCreate(&e) == cudaSuccess;
    if (!timed_) cudaGetLastError();  // timing is a diagnostic: without its events the runs are simply not timed
  }
  selection_ = std::make_unique<RowSelection>();
  selectionError_ = selection_->Resolve(options_.selection, outputs_);
  api.Take(api.CreateRunOptions(&runOptions_));
  api.Take(api.CreateRunOptions(&captureRunOptions_));
  if (captureRunOptions_ != nullptr)
    api.Take(api.AddRunConfigEntry(captureRunOptions_, "disable_synchronize_execution_providers", "1"));
  // Output types and shapes per variant, from the model (symbolic dimensions read as -1).
  for (auto const& v : variants_) {
    std::vector<OutputInfo> infos(outputs_.size());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      OrtTypeInfo* type = nullptr;
      OrtTensorTypeAndShapeInfo const* tensor = nullptr;
      size_t rank = 0;
      std::string e = api.Take(api.SessionGetOutputTypeInfo(v.session, i, &type));
      if (e.empty()) e = api.Take(api.CastTypeInfoToTensorInfo(type, &tensor));
      if (e.empty() && tensor != nullptr) e = api.Take(api.GetTensorElementType(tensor, &infos[i].type));
      if (e.empty() && tensor != nullptr) e = api.Take(api.GetDimensionsCount(tensor, &rank));
      infos[i].dims.assign(rank, -1);
      if (e.empty() && tensor != nullptr && rank > 0) api.Take(api.GetDimensions(tensor, infos[i].dims.data(), rank));
      if (type != nullptr) api.ReleaseTypeInfo(type);
      if (!e.empty() || tensor == nullptr) infos[i] = {};  // unknown: bound to the device after the run
    }
    outputInfo_.push_back(std::move(infos));
  }
}

DeviceRunner::~DeviceRunner() {
  ReleaseSessions();
  if (deviceMemory_ != nullptr) rt_->api.ReleaseMemoryInfo(deviceMemory_);
  if (runOptions_ != nullptr) rt_->api.ReleaseRunOptions(runOptions_);
  if (captureRunOptions_ != nullptr) rt_->api.ReleaseRunOptions(captureRunOptions_);
  if (producerDone_ != nullptr) cudaEventDestroy(producerDone_);
  for (cudaEvent_t e : timing_)
    if (e != nullptr) cudaEventDestroy(e);
}

void DeviceRunner::RecordRefusal(std::string const& reason) {
  counters_.graphRefusals++;
  std::lock_guard<std::mutex> lock(refusedMutex_);
  graphRefused_ = reason;
}

std::string DeviceRunner::GraphRefused() const {
  std::lock_guard<std::mutex> lock(refusedMutex_);
  return graphRefused_;
}

void DeviceRunner::ReleaseSessions() {
  for (auto& [key, b] : bindings_) {
    if (b->graph != nullptr) cudaGraphExecDestroy(b->graph);
    rt_->api.ReleaseIoBinding(b->io);
    for (OrtValue* v : b->values) rt_->api.ReleaseValue(v);
  }
  bindings_.clear();  // the leases go back to the pool
  for (auto& v : variants_)
    if (v.session != nullptr) rt_->api.ReleaseSession(v.session);
  variants_.clear();
}

std::vector<int64_t> DeviceRunner::GraphBatchSizes() const {
  std::vector<int64_t> sizes;
  for (auto const& v : variants_)
    if (v.batch > 0) sizes.push_back(v.batch);
  return sizes;
}

std::string DeviceRunner::BindThread() const {
  cudaError_t e = cudaSetDevice(options_.deviceId);
  return e == cudaSuccess ? std::string() : CudaReason("cudaSetDevice", e);
}

std::string DeviceRunner::Prepare(size_t variant, int64_t batch, std::vector<Feed> const& feeds, Binding** out) {
  std::string key = std::to_string(variant) + ":";
  for (auto const& f : feeds) {
    std::vector<int64_t> dims = f.dims;
    if (!dims.empty()) dims[0] = batch;
    key += std::to_string(f.index) + "=" + DimsKey(dims) + ";";
  }
  if (auto found = bindings_.find(key); found != bindings_.end()) {
    *out = found->second.get();
    return {};
  }
  Api const& api = rt_->api;
  auto b = std::make_unique<Binding>();
  b->batch = batch;
  std::string e = api.Take(api.CreateIoBinding(variants_[variant].session, &b->io));
  auto bindNew = [&](int type, std::vector<int64_t> const& dims, void** ptr, OrtValue** value) -> std::string {
    size_t count = 1;
    for (int64_t d : dims) count *= static_cast<size_t>(d);
    size_t bytes = count * ElementSize(type);
    try {
      b->memory.push_back(pool_->Acquire(bytes > 0 ? bytes : 1));
    } catch (std::exception const& x) {
      return std::string("device memory for a bound tensor: ") + x.what();
    }
    *ptr = b->memory.back()->data();
    std::string r =
        api.Take(api.CreateTensorWithDataAsOrtValue(deviceMemory_, *ptr, bytes, dims.data(), dims.size(), type, value));
    if (r.empty()) b->values.push_back(*value);
    return r;
  };
  b->inputPtr.assign(inputs_.size(), nullptr);
  for (auto const& f : feeds) {
    if (!e.empty()) break;
    std::vector<int64_t> dims = f.dims;
    if (!dims.empty()) dims[0] = batch;
    OrtValue* value = nullptr;
    e = bindNew(f.type, dims, &b->inputPtr[f.index], &value);
    if (e.empty()) e = api.Take(api.BindInput(b->io, inputs_[f.index].c_str(), value));
  }
  auto const& infos = outputInfo_[variant];
  b->outputPtr.assign(outputs_.size(), nullptr);
  b->outputBytes.assign(outputs_.size(), 0);
  b->outputDims.resize(outputs_.size());
  b->outputTypes.assign(outputs_.size(), 0);
  for (size_t i = 0; e.empty() && i < outputs_.size(); ++i) {
    OutputInfo info = infos[i];
    bool known = info.type != 0 && ElementSize(info.type) > 0 && !info.dims.empty();
    if (known && info.dims[0] < 0) info.dims[0] = batch;
    for (size_t d = 1; known && d < info.dims.size(); ++d) known = info.dims[d] >= 0;
    if (known && info.dims[0] != batch) known = false;  // not batch-first: let onnxruntime size it
    if (!known) {
      e = api.Take(api.BindOutputToDevice(b->io, outputs_[i].c_str(), deviceMemory_));
      continue;
    }
    OrtValue* value = nullptr;
    e = bindNew(info.type, info.dims, &b->outputPtr[i], &value);
    if (e.empty()) e = api.Take(api.BindOutput(b->io, outputs_[i].c_str(), value));
    size_t count = 1;
    for (int64_t d : info.dims) count *= static_cast<size_t>(d);
    b->outputBytes[i] = count * ElementSize(info.type);
    b->outputDims[i] = info.dims;
    b->outputTypes[i] = info.type;
  }
  if (e.empty() && selection_->enabled())
    e = selection_->Bind(b->outputPtr, b->outputDims, b->outputTypes, outputs_, pool_.get(), &b->selection);
  if (!e.empty()) {
    if (b->io != nullptr) api.ReleaseIoBinding(b->io);
    for (OrtValue* v : b->values) api.ReleaseValue(v);
    return "binding device memory: " + e;
  }
  *out = b.get();
  bindings_.emplace(key, std::move(b));
  return {};
}

std::string DeviceRunner::RunBound(size_t variant, Binding* b, void* streamHandle) {
  Api const& api = rt_->api;
  OrtSession* session = variants_[variant].session;
  auto stream = static_cast<cudaStream_t>(streamHandle);
  if (b->graph != nullptr) {  // a replay launches kernels only: no lock needed
    cudaError_t c = cudaGraphLaunch(b->graph, stream);
    if (c != cudaSuccess) return CudaReason("replaying the CUDA graph", c);
    counters_.graphReplays++;
    return {};
  }
  if (options_.onnxruntimeGraphs && variants_[variant].batch > 0) return RunOnnxruntimeGraph(session, b);
  bool graphable = options_.cudaGraph && !b->graphRefused;
  for (void* p : b->outputPtr) graphable = graphable && p != nullptr;
  if (!graphable || b->eagerRuns < kEagerRunsBeforeCapture) {
    b->eagerRuns++;
    std::shared_lock<std::shared_mutex> shared(CaptureLock());
    return api.Take(api.RunWithBinding(session, runOptions_, b->io));
  }
  std::unique_lock<std::shared_mutex> alone(CaptureLock());
  cudaStreamSynchronize(stream);  // the inputs copied for this run are on the stream before the capture starts
  // Relaxed: onnxruntime's threads may query the device meanwhile; nothing is allocated (the arena is sized).
  cudaError_t c = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed);
  std::string e = c == cudaSuccess ? api.Take(api.RunWithBinding(session, captureRunOptions_, b->io))
                                   : CudaReason("cudaStreamBeginCapture", c);
  cudaGraph_t graph = nullptr;
  if (c == cudaSuccess) {
    cudaError_t end = cudaStreamEndCapture(stream, &graph);
    if (e.empty() && end != cudaSuccess) e = CudaReason("cudaStreamEndCapture", end);
  }
  if (e.empty()) {
    c = cudaGraphInstantiate(&b->graph, graph, 0);
    if (c != cudaSuccess) e = CudaReason("cudaGraphInstantiate", c);
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!e.empty()) {
    cudaGetLastError();  // a failed capture leaves no error behind for the next run
    b->graph = nullptr;
    b->graphRefused = true;
    RecordRefusal(e);
    return api.Take(api.RunWithBinding(session, runOptions_, b->io));  // this run, eagerly
  }
  counters_.graphCaptures++;
  c = cudaGraphLaunch(b->graph, stream);  // the capture recorded the run; this computes it
  return c == cudaSuccess ? std::string() : CudaReason("launching the captured CUDA graph", c);
}

// onnxruntime's own graph (enable_cuda_graph): its first run on these buffers is eager and sizes the arena, its
// second captures (and replays, to compute), every later one replays. A capture is made in the process-wide
// capture mode, which no other context's run may overlap (an allocation or cudaFreeHost elsewhere would end it):
// the runs that may capture hold the capture lock alone, the replays share it.
constexpr int kOnnxruntimeRunsToCapture = 2;

std::string DeviceRunner::RunOnnxruntimeGraph(OrtSession* session, Binding* b) {
  Api const& api = rt_->api;
  if (b->eagerRuns < kOnnxruntimeRunsToCapture) {
    std::unique_lock<std::shared_mutex> alone(CaptureLock());
    b->eagerRuns++;
    std::string e = api.Take(api.RunWithBinding(session, captureRunOptions_, b->io));
    if (!e.empty())
      RecordRefusal(e);
    else if (b->eagerRuns == kOnnxruntimeRunsToCapture)
      counters_.graphCaptures++;
    return e;
  }
  std::shared_lock<std::shared_mutex> shared(CaptureLock());
  std::string e = api.Take(api.RunWithBinding(session, captureRunOptions_, b->io));
  if (e.empty()) counters_.graphReplays++;
  return e;
}

void HostOutput::Reserve(core::BufferPool* pinnedPool) {
  if (pinnedPool != nullptr) {
    try {
      pinned = pinnedPool->Acquire(size);
      return;
    } catch (std::exception const&) {
      cudaGetLastError();  // none left: pageable memory
    }
  }
  bytes.resize(size);
}

// Output i of a finished run (enqueued on the stream, not yet waited for) into host memory, or into its target.
std::string DeviceRunner::CopyOutput(size_t i, Binding* b, int64_t batch, int64_t runBatch, OrtValue*** bound,
                                     size_t* boundCount, OutputTarget const* target, HostOutput* out) {
  Api const& api = rt_->api;
  auto stream = static_cast<cudaStream_t>(options_.stream);
  HostOutput& o = *out;
  std::string e;
  void const* src = b->outputPtr[i];
  size_t bytes = 0;
  if (src != nullptr) {
    o.type = b->outputTypes[i];
    o.dims = b->outputDims[i];
    o.dims[0] = batch;
    bytes = b->outputBytes[i] / static_cast<size_t>(runBatch) * static_cast<size_t>(batch);
  } else {
    // Sized by onnxruntime during the run: read its shape from the bound value.
    if (*bound == nullptr) {
      e = api.Take(api.GetBoundOutputValues(b->io, rt_->allocator, bound, boundCount));
      if (!e.empty()) return e;
    }
    if (i >= *boundCount) return "onnxruntime bound fewer outputs than the model has";
    OrtTensorTypeAndShapeInfo* info = nullptr;
    size_t rank = 0, count = 0;
    e = api.Take(api.GetTensorTypeAndShape((*bound)[i], &info));
    if (e.empty()) e = api.Take(api.GetTensorElementType(info, &o.type));
    if (e.empty()) e = api.Take(api.GetDimensionsCount(info, &rank));
    o.dims.assign(rank, 0);
    if (e.empty() && rank > 0) e = api.Take(api.GetDimensions(info, o.dims.data(), rank));
    if (e.empty()) e = api.Take(api.GetTensorShapeElementCount(info, &count));
    if (info != nullptr) api.ReleaseTensorTypeAndShapeInfo(info);
    void* data = nullptr;
    if (e.empty()) e = api.Take(api.GetTensorMutableData((*bound)[i], &data));
    if (!e.empty()) return e;
    src = data;
    bytes = count * ElementSize(o.type);
  }
  o.size = bytes;
  if (target != nullptr) {
    o.onDevice = true;
    if (bytes > target->bytes)
      return "output " + outputs_[i] + " needs " + std::to_string(bytes) + " bytes but its device memory holds " +
             std::to_string(target->bytes);
    if (bytes == 0) return {};
    cudaError_t c = cudaMemcpyAsync(target->ptr, src, bytes, cudaMemcpyDeviceToDevice, stream);
    if (c != cudaSuccess) return CudaReason("copying output " + outputs_[i] + " to its device memory", c);
    counters_.deviceToDevice += bytes;
    return {};
  }
  if (bytes == 0) return {};
  // Outputs of known size come back into pinned memory leased for this run: a true async DMA, no copy out on this
  // thread, and warm pages (a fresh pageable block of a large output faults every page in). Leasing may allocate
  // (cudaHostAlloc), which another context's capture must not overlap.
  {
    std::shared_lock<std::shared_mutex> shared(CaptureLock());
    o.Reserve(b->outputPtr[i] != nullptr ? pinned_.get() : nullptr);
  }
  cudaError_t c = cudaMemcpyAsync(o.data(), src, bytes, cudaMemcpyDeviceToHost, stream);
  if (c != cudaSuccess) return CudaReason("copying output " + outputs_[i] + " to the host", c);
  counters_.deviceToHost += bytes;
  return {};
}

std::string DeviceRunner::Run(std::vector<Feed> const& feeds, std::vector<OutputTarget> const& targets,
                              std::vector<HostOutput>* outputs) {
  Api const& api = rt_->api;
  auto stream = static_cast<cudaStream_t>(options_.stream);
  int64_t batch = !feeds.empty() && !feeds[0].dims.empty() ? feeds[0].dims[0] : 1;
  if (!selectionError_.empty()) return selectionError_;
  // The smallest graph session that holds the batch; the dynamic session otherwise.
  size_t variant = variants_.size(), dynamic = variants_.size();
  for (size_t v = 0; v < variants_.size(); ++v) {
    int64_t vb = variants_[v].batch;
    if (vb == 0)
      dynamic = v;
    else if (vb >= batch && (variant == variants_.size() || vb < variants_[variant].batch))
      variant = v;
  }
  if (variant == variants_.size()) variant = dynamic;
  if (variant == variants_.size()) {
    auto sizes = GraphBatchSizes();
    return "batch " + std::to_string(batch) + " is larger than the largest CUDA graph batch (" +
           std::to_string(sizes.empty() ? 0 : sizes.back()) + ")";
  }
  int64_t runBatch = variants_[variant].batch > 0 ? variants_[variant].batch : batch;
  Binding* b = nullptr;
  std::string e;
  {
    // Binding allocates (device memory, onnxruntime values): never while another context captures.
    std::shared_lock<std::shared_mutex> shared(CaptureLock());
    e = Prepare(variant, runBatch, feeds, &b);
  }
  if (!e.empty()) return e;
  for (auto const& f : feeds) {
    if (!f.onDevice || f.after == nullptr || f.after == options_.stream) continue;
    cudaError_t c = cudaEventRecord(producerDone_, static_cast<cudaStream_t>(f.after));
    if (c == cudaSuccess) c = cudaStreamWaitEvent(stream, producerDone_, 0);
    if (c != cudaSuccess) return CudaReason("waiting for the stream that writes input " + inputs_[f.index], c);
  }
  if (gpuOnlyTiming_) kernels::LaunchGpuDelay(stream, kTimingDelayMicroseconds);
  if (timed_) cudaEventRecord(timing_[kRunStart], stream);
  // Inputs into the bound buffers: one upload from the host, or a device-to-device copy. Rows past the request's
  // batch in a padded graph run are left as they are: batch rows are independent and their outputs are dropped.
  for (auto const& f : feeds) {
    if (f.bytes == 0) continue;
    cudaError_t c = cudaMemcpyAsync(b->inputPtr[f.index], f.data, f.bytes,
                                    f.onDevice ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, stream);
    if (c != cudaSuccess) return CudaReason("copying input " + inputs_[f.index] + " to the GPU", c);
    (f.onDevice ? counters_.deviceToDevice : counters_.hostToDevice) += f.bytes;
  }
  if (timed_) cudaEventRecord(timing_[kModelStart], stream);
  e = RunBound(variant, b, stream);
  if (!e.empty()) return e;
  if (timed_) cudaEventRecord(timing_[kModelEnd], stream);
  outputs->clear();
  outputs->resize(outputs_.size());
  OrtValue** bound = nullptr;
  size_t boundCount = 0;
  std::vector<OutputTarget const*> targetOf(outputs_.size(), nullptr);
  for (auto const& t : targets)
    if (t.index < targetOf.size()) targetOf[t.index] = &t;
  bool selecting = selection_->enabled() && targets.empty();
  for (size_t i = 0; e.empty() && i < outputs_.size(); ++i) {
    if (selecting && selection_->Selects(i))
      (*outputs)[i].omitted = true;  // only its selected rows come back
    else
      e = CopyOutput(i, b, batch, runBatch, &bound, &boundCount, targetOf[i], &(*outputs)[i]);
  }
  if (e.empty() && selecting) {
    std::shared_lock<std::shared_mutex> shared(CaptureLock());  // pinned leases may allocate
    uint64_t copied = 0;
    e = selection_->Enqueue(b->selection, batch, stream, pinned_.get(), outputs_, outputs, &copied);
    counters_.deviceToHost += copied;
  }
  if (e.empty() && timed_) cudaEventRecord(timing_[kRunEnd], stream);
  if (e.empty()) {
    cudaError_t c = cudaStreamSynchronize(stream);  // the runner thread waits, never the event loop
    if (c != cudaSuccess) e = CudaReason("the context's stream", c);
  }
  if (e.empty() && selecting) {
    if (selection_->Overflowed(outputs->data() + outputs_.size(), outputs->size() - outputs_.size())) {
      // An image passed more rows than were kept: its full outputs instead (the device still holds them).
      counters_.selectionOverflows++;
      outputs->resize(outputs_.size());
      for (size_t i = 0; e.empty() && i < outputs_.size(); ++i) {
        if (!(*outputs)[i].omitted) continue;
        (*outputs)[i].omitted = false;
        e = CopyOutput(i, b, batch, runBatch, &bound, &boundCount, nullptr, &(*outputs)[i]);
      }
      cudaError_t c = e.empty() ? cudaStreamSynchronize(stream) : cudaSuccess;
      if (c != cudaSuccess) e = CudaReason("the context's stream", c);
    } else {
      counters_.selectedRuns++;
    }
  }
  float modelMs = 0, runMs = 0;
  if (e.empty() && timed_ && cudaEventElapsedTime(&modelMs, timing_[kModelStart], timing_[kModelEnd]) == cudaSuccess &&
      cudaEventElapsedTime(&runMs, timing_[kRunStart], timing_[kRunEnd]) == cudaSuccess) {
    counters_.timedRuns++;
    counters_.gpuModelNanos += static_cast<uint64_t>(modelMs * 1e6);
    counters_.gpuRunNanos += static_cast<uint64_t>(runMs * 1e6);
  } else if (timed_) {
    cudaGetLastError();
  }
  if (!e.empty()) {
    // Copies enqueued before the failure may still be writing into this run's pinned blocks, which go back to the
    // pool with the job: they finish first.
    cudaStreamSynchronize(stream);
    cudaGetLastError();
  }
  if (bound != nullptr) {
    for (size_t i = 0; i < boundCount; ++i) api.ReleaseValue(bound[i]);
    api.Take(api.AllocatorFree(rt_->allocator, bound));
  }
  counters_.runs++;
  if (runBatch != batch) counters_.paddedRuns++;
  return e;
}

}  // namespace yqp::ort
