// The options of a session on a GPU (device, stream, CUDA graphs, the CUDA and TensorRT providers' settings) and
// how they reach onnxruntime: AppendProviders (ort_providers.cc).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "onnxruntime/ort_api.h"

namespace yqp::ort {

// Row selection after each run (kernels/row_select.h): for each (scores, rows) output pair, by output name, only the
// rows whose raw score reaches minScore come back, at most maxRows an image (more: the full outputs instead).
struct RowSelectionOptions {
  std::vector<std::pair<std::string, std::string>> pairs;
  float minScore = 0;
  int maxRows = 0;
};

struct TensorrtOptions {
  bool enabled = false, fp16 = false, int8 = false;
  std::string calibrationTable, engineCachePath, timingCachePath;
  std::string minShapes, optShapes, maxShapes;  // "input:1x128x128x3,..." as the provider reads them
};

struct DeviceOptions {
  bool cuda = false;
  int deviceId = 0;
  void* stream = nullptr;  // the context's cudaStream_t, from the core's stream pool
  bool cudaGraph = false;
  // Set at open: onnxruntime captures and replays the graph sessions itself (enable_cuda_graph through the
  // EP-device route); otherwise they are captured here around its run (experimental, see ort_device.cc).
  bool onnxruntimeGraphs = false;
  std::string route;                     // how the CUDA provider was appended (AppendResult::route), for copyStats
  std::vector<int64_t> graphBatchSizes;  // with cudaGraph: one session per size
  bool dynamicFallback = false;          // and a dynamic eager session for larger batches
  std::string batchDimension = "batch";  // the symbolic dimension those sizes fix
  // cuDNN's algorithm search. HEURISTIC: EXHAUSTIVE on the graph sessions was no faster at batch 1 (GPU 0.362 ms
  // against 0.357) nor, within the noise, at 64, and the face pipeline's warm-up took 3 s more (BENCHMARKS.md).
  std::string convAlgoSearch = "HEURISTIC";
  // CUDA provider options by onnxruntime's names that yqp-trt chooses for the model (prefer_nhwc for FP16): before
  // the user's, and left out on the route that takes the first option struct only (they are defaults, not asks).
  std::vector<std::pair<std::string, std::string>> providerDefaults;
  // More CUDA provider options by onnxruntime's names, applied after ours (routes that take names only).
  std::vector<std::pair<std::string, std::string>> providerOptions;
  TensorrtOptions tensorrt;
  RowSelectionOptions selection;
};

// How a session's CUDA provider was appended and what its graph session gets.
struct AppendResult {
  std::string route;              // "ep-device", "options-v2" or "options-v1"
  bool onnxruntimeGraph = false;  // enable_cuda_graph was set (a graph session on a route that takes it)
};

// Appends the providers `device` asks for to `so` (TensorRT first, CUDA after it for what TensorRT leaves); "" or
// onnxruntime's reason. graphSession: a session of fixed batch that CUDA graphs run.
std::string AppendProviders(Runtime const* rt, OrtSessionOptions* so, DeviceOptions const& device, bool graphSession,
                            AppendResult* result);

}  // namespace yqp::ort
