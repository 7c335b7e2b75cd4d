// The TensorRT-only part of the runtime: a plan deserialized once, N execution contexts, and per request the
// fixed sequence setOptimizationProfileAsync -> setInputShape -> setTensorAddress -> enqueueV3 on a stream the
// caller owns. Streams, buffers, pinned staging, completion and CUDA graph capture belong to the CUDA core
// (trt/core); engine_binding.cc joins the two.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "builder.h"
#include "logger.h"

namespace yqp::trt {

enum class MemoryStrategy { kStatic, kOnProfileChange, kUserManaged };

struct EngineTensor {
  std::string name;
  int32_t dataType = 0;  // nvinfer1::DataType
  size_t elementBytes = 4;
  bool input = true;
  std::vector<int64_t> dims;  // as built, -1 dynamic
  // Per profile, min/opt/max (inputs only).
  std::vector<std::vector<int64_t>> min, opt, max;
  // Largest byte size over every profile at its max input shapes: buffers are sized from this, never from dims
  // with -1 read as 1.
  size_t maxBytes = 0;
};

class Engine {
 public:
  // Deserializes; on failure returns nullptr with *error carrying TensorRT's last error.
  // allowHostCode: version-compatible plans embed TensorRT's lean runtime (host code), which the runtime refuses
  // unless allowed; only set it for plans we built (metadata says versionCompatible).
  static std::unique_ptr<Engine> Deserialize(void const* plan, size_t size, int device, bool allowHostCode,
                                             std::string* error);
  ~Engine();

  std::vector<EngineTensor> const& tensors() const { return tensors_; }
  int32_t profiles() const { return profiles_; }
  int64_t deviceMemoryBytes() const;
  Logger& logger() { return logger_; }

  // First profile whose [min, max] holds every input shape, or -1 (then *why names the input and dimension).
  int32_t PickProfile(std::vector<std::vector<int64_t>> const& inputShapes, std::string* why) const;

  nvinfer1::ICudaEngine* raw() { return engine_; }

 private:
  Engine() = default;
  Logger logger_;
  nvinfer1::IRuntime* runtime_ = nullptr;
  nvinfer1::ICudaEngine* engine_ = nullptr;
  std::vector<EngineTensor> tensors_;
  int32_t profiles_ = 0;
};

// One IExecutionContext. Not thread-safe: the scheduler gives a context one request at a time.
class Context {
 public:
  // user-managed memory: `sharedMemory` (at least engine.deviceMemoryBytes()) is shared by contexts that never run
  // at once; the caller orders them.
  static std::unique_ptr<Context> Create(Engine& engine, MemoryStrategy strategy, void* sharedMemory,
                                         std::string* error);
  ~Context();

  // Selects the profile (only when it changed) and sets every input shape, in that order, on `stream`.
  bool SetShapes(int32_t profile, std::vector<std::vector<int64_t>> const& inputShapes, cudaStream_t stream,
                 std::string* error);
  // Output shape after SetShapes.
  bool OutputShape(size_t tensorIndex, std::vector<int64_t>* dims, std::string* error);
  bool SetAddress(size_t tensorIndex, void* address, std::string* error);
  bool Enqueue(cudaStream_t stream, std::string* error);
  // Largest output bytes for each tensor over all profiles at max input shapes (sync on `stream`).
  bool MeasureMaxBytes(cudaStream_t stream, std::vector<size_t>* bytes, std::string* error);

  int32_t profile() const { return profile_; }
  // Changes when shapes or profile changed since the last call, so a captured CUDA graph knows it is stale.
  uint64_t shapeGeneration() const { return generation_; }

 private:
  Context(Engine& engine) : engine_(engine) {}
  Engine& engine_;
  nvinfer1::IExecutionContext* context_ = nullptr;
  int32_t profile_ = -1;
  std::vector<std::vector<int64_t>> shapes_;
  uint64_t generation_ = 0;
};

std::string ShapeString(std::vector<int64_t> const& dims);

}  // namespace yqp::trt
