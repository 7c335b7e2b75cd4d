// ONNX -> serialized plan. Plain C++ with no N-API, so the binding can run it in an AsyncWorker's Execute on
// options copied out of JavaScript beforehand.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "batch_source.h"
#include "logger.h"
#include "progress_monitor.h"

namespace yqp::trt {

struct InputShapeRange {
  std::string input;
  std::vector<int64_t> min, opt, max;
};
using Profile = std::vector<InputShapeRange>;

struct BuildOptions {
  std::string onnxPath;
  std::vector<Profile> profiles;
  // fp32 | fp16 | bf16 | int8. On TensorRT 11 the network is always strongly typed: fp16/bf16/int8 must already be in
  // the ONNX (cast or Q/DQ), and precision only selects nothing beyond that.
  std::string precision = "fp32";
  // 10.x only: build a strongly typed network (the Q/DQ or cast ONNX decides every precision).
  bool stronglyTyped = false;
  // 10.x only: implicit INT8 through IInt8EntropyCalibrator2 fed by a BatchSource.
  bool int8Calibrator = false;
  int calibrationProfile = 0;             // index into profiles; its opt shapes are the calibration batch shapes
  std::vector<uint8_t> calibrationCache;  // read by the calibrator; empty: calibrate
  std::vector<uint8_t> timingCache;       // empty: start a new one
  bool ignoreTimingCacheMismatch = false;
  int optimizationLevel = -1;  // 0..5, -1: TensorRT's default (3)
  int64_t workspaceBytes = -1;
  int64_t tacticSharedMemoryBytes = -1;
  bool versionCompatible = false;
  bool excludeLeanRuntime = false;
  std::string hardwareCompatibility = "none";  // none | ampere-plus | same-compute-capability
  int maxAuxStreams = -1;
  bool tf32 = true;
  bool sparseWeights = false;
  int maxThreads = -1;
  int device = 0;
};

struct TensorInfo {
  std::string name;
  std::string dtype;          // our names: float32, float16, int8, ...
  std::vector<int64_t> dims;  // -1 for dynamic
  bool input = true;
};

struct BuildResult {
  std::vector<uint8_t> plan;
  std::vector<uint8_t> timingCache;
  std::vector<uint8_t> calibrationCache;
  std::vector<TensorInfo> io;
  std::vector<std::string> log;  // TensorRT's warnings and errors during the build
  std::string libVersion;
  std::string gpuName;
  std::string sm;  // "9.0"
  int64_t calibrationBatches = 0;
  bool cancelled = false;
};

// Returns false with *error set (naming node, operator and TensorRT's message on a parse failure).
bool BuildEngine(BuildOptions const& options, Logger& logger, ProgressMonitor* monitor, BatchSource* batches,
                 std::shared_ptr<std::atomic<bool>> const& cancelled, BuildResult* result, std::string* error);

std::string DataTypeName(int32_t dataType);
size_t DataTypeBytes(int32_t dataType);

}  // namespace yqp::trt
