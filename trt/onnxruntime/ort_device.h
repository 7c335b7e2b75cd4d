// onnxruntime on a GPU, the run path of a CUDA session (its providers are appended by ort_providers.cc): IOBinding over
// device memory from the core's pool, one CUDA stream per context, inputs taken from the host (one upload) or from
// device memory (ring slots, CUDA shared memory, the preprocessing kernel's output: no host round trip), and only the
// outputs copied back (with a row selection, only the rows that pass: ort_selection.h). With CUDA graphs a context
// holds one onnxruntime session per graph batch size (the batch fixed by a free-dimension override, so the shape
// subgraph folds away and every node lands on the CUDA provider) and a batch runs on the smallest one that holds it.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer_pool.h"
#include "onnxruntime/ort_api.h"
#include "onnxruntime/ort_providers.h"

namespace yqp::ort {

class RowSelection;

// One input of a run: host memory (a TypedArray, read in place) or device memory on the session's GPU.
struct Feed {
  size_t index = 0;
  int type = 0;
  std::vector<int64_t> dims;
  void const* data = nullptr;
  size_t bytes = 0;
  bool onDevice = false;
  void* after = nullptr;  // device memory: the stream that writes it, waited for on the device before the copy
};

// Device memory an output is written to on the GPU (a CUDA shared-memory region a client reads, the next stage's
// input) instead of coming back to the host: a device-to-device copy on the context's stream, within `bytes`.
struct OutputTarget {
  size_t index = 0;
  void* ptr = nullptr;
  size_t bytes = 0;
};

// One output, copied to host memory: a pinned block leased from the core's pool for this run (handed to JS with the
// job and returned once JS has its copy), or pageable memory where no pinned block could be had or the size was only
// known after the run.
struct HostOutput {
  int type = 0;
  std::vector<int64_t> dims;
  size_t size = 0;
  std::unique_ptr<core::Lease> pinned;
  std::vector<char> bytes;
  std::string name;       // set where it is not the model's output of its index (a row selection's)
  bool omitted = false;   // the model's output left on the device (its rows selected instead)
  bool onDevice = false;  // written to its OutputTarget on the GPU: dims and type only come back
  void const* data() const { return pinned ? pinned->data() : bytes.data(); }
  void* data() { return pinned ? pinned->data() : bytes.data(); }
  // Host memory for `size` bytes: a block of `pinnedPool` where one can be had, else pageable (also with no pool).
  // Leasing may allocate (cudaHostAlloc): the caller holds the capture lock shared.
  void Reserve(core::BufferPool* pinnedPool);
};

// Bytes each run moved, counted from the copies this code issues (what crosses PCIe is h2d + d2h).
struct CopyCounters {
  std::atomic<uint64_t> runs{0}, hostToDevice{0}, deviceToHost{0}, deviceToDevice{0}, paddedRuns{0};
  std::atomic<uint64_t> graphCaptures{0}, graphReplays{0}, graphRefusals{0};
  std::atomic<uint64_t> selectedRuns{0}, selectionOverflows{0};  // row selection: runs it answered, runs copied in full
  // GPU time of the runs timed with CUDA events (YQP_CUDA_TIMING=1 at load): the model alone, and the whole run
  // from the input copies to the end of the output copies. Where a run's wall time goes that is not the GPU's.
  std::atomic<uint64_t> timedRuns{0}, gpuModelNanos{0}, gpuRunNanos{0};
};

class DeviceRunner {
 public:
  struct Variant {
    int64_t batch = 0;  // 0: any batch (one dynamic session)
    OrtSession* session = nullptr;
  };
  DeviceRunner(Runtime const* rt, DeviceOptions options, std::vector<Variant> variants, std::vector<std::string> inputs,
               std::vector<std::string> outputs);
  ~DeviceRunner();
  DeviceRunner(DeviceRunner const&) = delete;
  DeviceRunner& operator=(DeviceRunner const&) = delete;

  // On the runner thread: one run; "" or the reason it failed. Outputs with a target are copied there on the GPU
  // (a run with targets copies its other outputs in full: no row selection).
  std::string Run(std::vector<Feed> const& feeds, std::vector<OutputTarget> const& targets,
                  std::vector<HostOutput>* outputs);
  // Binds the runner thread to the session's GPU (once, before its first run).
  std::string BindThread() const;
  CopyCounters const& counters() const { return counters_; }
  // Why the last CUDA graph capture was refused ("" when none was); any thread.
  std::string GraphRefused() const;
  std::vector<int64_t> GraphBatchSizes() const;
  int device() const { return options_.deviceId; }
  std::string const& route() const { return options_.route; }
  // "onnxruntime" (its own capture), "captured" (ours, experimental) or "none".
  char const* graphMode() const {
    return !options_.cudaGraph ? "none" : options_.onnxruntimeGraphs ? "onnxruntime" : "captured";
  }
  void ReleaseSessions();

 private:
  struct OutputInfo {
    int type = 0;
    std::vector<int64_t> dims;  // -1 where symbolic
  };
  struct Binding;
  std::string Prepare(size_t variant, int64_t batch, std::vector<Feed> const& feeds, Binding** out);
  // onnxruntime's run on the bound buffers: eager, captured into a CUDA graph, or that graph replayed.
  std::string RunBound(size_t variant, Binding* b, void* stream);
  std::string RunOnnxruntimeGraph(OrtSession* session, Binding* b);
  // Output i of the finished run into host memory, or into `target` on the GPU where one is given.
  std::string CopyOutput(size_t i, Binding* b, int64_t batch, int64_t runBatch, OrtValue*** bound, size_t* boundCount,
                         OutputTarget const* target, HostOutput* out);
  // A capture refused or failed: counted, and its reason kept for GraphRefused().
  void RecordRefusal(std::string const& reason);

  Runtime const* rt_;
  DeviceOptions options_;
  std::vector<Variant> variants_;
  std::vector<std::string> inputs_, outputs_;
  std::vector<std::vector<OutputInfo>> outputInfo_;  // per variant
  OrtMemoryInfo* deviceMemory_ = nullptr;
  OrtRunOptions* runOptions_ = nullptr;
  std::shared_ptr<core::BufferPool> pool_;
  std::shared_ptr<core::BufferPool> pinned_;  // outputs come back through pinned staging (a true async copy)
  std::map<std::string, std::unique_ptr<Binding>> bindings_;
  std::unique_ptr<RowSelection> selection_;  // DeviceOptions::selection, resolved to output indices
  std::string selectionError_;               // why it could not be: every run fails with it
  CopyCounters counters_;
  cudaEvent_t producerDone_ = nullptr;  // recorded on a feed's producer stream, waited for on the context's
  // YQP_CUDA_TIMING=1: events at the run's start, the model's start and end, the end of the output copies.
  enum TimingEvent { kRunStart, kModelStart, kModelEnd, kRunEnd, kTimingEvents };
  cudaEvent_t timing_[kTimingEvents] = {};
  bool timed_ = false;
  bool gpuOnlyTiming_ = false;
  static constexpr unsigned kTimingDelayMicroseconds = 2000;  // far above a run's host work before its launches
  OrtRunOptions* captureRunOptions_ = nullptr;                // no stream synchronization inside a captured run
  mutable std::mutex refusedMutex_;
  std::string graphRefused_;
};

}  // namespace yqp::ort
