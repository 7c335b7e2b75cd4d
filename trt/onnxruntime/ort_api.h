// The few ONNX Runtime C API entries yqp-trt calls, reached through OrtGetApiBase() of the libonnxruntime that
// onnxruntime-node ships (so no onnxruntime header or SDK is needed to build). OrtApi is a table of function
// pointers that ONNX Runtime only ever appends to (its ABI promise since 1.0), so each entry is read by its fixed
// slot in that table; the slots were counted from the public API documentation and are exercised by the tests
// against the installed library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace yqp::ort {

struct OrtStatus;
struct OrtEnv;
struct OrtSession;
struct OrtSessionOptions;
struct OrtRunOptions;
struct OrtValue;
struct OrtMemoryInfo;
struct OrtTensorTypeAndShapeInfo;
struct OrtAllocator;

// ONNXTensorElementDataType values (ONNX's TensorProto.DataType).
enum ElementType : int {
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
};

// Bytes per element of the types above; 0 for the others (strings and the rest are not supported).
size_t ElementSize(int type);

struct Api {
  char const* version = nullptr;
  char const* (*GetErrorMessage)(OrtStatus const*);
  OrtStatus* (*CreateEnv)(int loggingLevel, char const* logId, OrtEnv** out);
  OrtStatus* (*CreateSession)(OrtEnv const*, char const* modelPath, OrtSessionOptions const*, OrtSession** out);
  OrtStatus* (*Run)(OrtSession*, OrtRunOptions const*, char const* const* inputNames, OrtValue const* const* inputs,
                    size_t inputCount, char const* const* outputNames, size_t outputCount, OrtValue** outputs);
  OrtStatus* (*CreateSessionOptions)(OrtSessionOptions** out);
  OrtStatus* (*SetSessionLogSeverityLevel)(OrtSessionOptions*, int level);
  OrtStatus* (*SetSessionGraphOptimizationLevel)(OrtSessionOptions*, int level);
  OrtStatus* (*DisableMemPattern)(OrtSessionOptions*);
  OrtStatus* (*SetIntraOpNumThreads)(OrtSessionOptions*, int threads);
  OrtStatus* (*SetInterOpNumThreads)(OrtSessionOptions*, int threads);
  OrtStatus* (*SessionGetInputCount)(OrtSession const*, size_t* out);
  OrtStatus* (*SessionGetOutputCount)(OrtSession const*, size_t* out);
  OrtStatus* (*SessionGetInputName)(OrtSession const*, size_t index, OrtAllocator*, char** out);
  OrtStatus* (*SessionGetOutputName)(OrtSession const*, size_t index, OrtAllocator*, char** out);
  OrtStatus* (*CreateTensorWithDataAsOrtValue)(OrtMemoryInfo const*, void* data, size_t bytes, int64_t const* shape,
                                               size_t rank, int type, OrtValue** out);
  OrtStatus* (*GetTensorMutableData)(OrtValue*, void** out);
  OrtStatus* (*GetTensorElementType)(OrtTensorTypeAndShapeInfo const*, int* out);
  OrtStatus* (*GetDimensionsCount)(OrtTensorTypeAndShapeInfo const*, size_t* out);
  OrtStatus* (*GetDimensions)(OrtTensorTypeAndShapeInfo const*, int64_t* dims, size_t rank);
  OrtStatus* (*GetTensorShapeElementCount)(OrtTensorTypeAndShapeInfo const*, size_t* out);
  OrtStatus* (*GetTensorTypeAndShape)(OrtValue const*, OrtTensorTypeAndShapeInfo** out);
  OrtStatus* (*CreateCpuMemoryInfo)(int allocatorType, int memType, OrtMemoryInfo** out);
  OrtStatus* (*AllocatorFree)(OrtAllocator*, void* p);
  OrtStatus* (*GetAllocatorWithDefaultOptions)(OrtAllocator** out);
  void (*ReleaseStatus)(OrtStatus*);
  void (*ReleaseSession)(OrtSession*);
  void (*ReleaseValue)(OrtValue*);
  void (*ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo*);
  void (*ReleaseSessionOptions)(OrtSessionOptions*);
  OrtStatus* (*AddSessionConfigEntry)(OrtSessionOptions*, char const* key, char const* value);

  // The message of status (released here) or "" when it is null (success).
  std::string Take(OrtStatus* status) const;
};

// Loads libraryPath once per process (later calls must name the same file) and returns its API with a shared
// environment and CPU memory info, or nullptr with *error saying why.
struct Runtime {
  Api api;
  OrtEnv* env = nullptr;
  OrtMemoryInfo* cpu = nullptr;
  OrtAllocator* allocator = nullptr;
};
Runtime const* LoadRuntime(std::string const& libraryPath, std::string* error);

}  // namespace yqp::ort
