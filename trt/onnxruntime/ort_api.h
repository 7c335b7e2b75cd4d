// The few ONNX Runtime C API entries yqp-trt calls, reached through OrtGetApiBase() of the libonnxruntime that
// onnxruntime-node ships (so no onnxruntime header or SDK is needed to build). OrtApi is a table of function
// pointers that ONNX Runtime only ever appends to (its ABI promise since 1.0), so each entry is read by its fixed
// slot in that table; the slots were counted from the public API documentation and are exercised by the tests
// against the installed library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
struct OrtIoBinding;
struct OrtTypeInfo;
struct OrtCUDAProviderOptionsV2;
struct OrtTensorRTProviderOptionsV2;
struct OrtEpDevice;

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
  // The GPU path: execution providers, IOBinding over device memory, free dimensions, run options.
  OrtStatus* (*SessionGetOutputTypeInfo)(OrtSession const*, size_t index, OrtTypeInfo** out);
  OrtStatus* (*CastTypeInfoToTensorInfo)(OrtTypeInfo const*, OrtTensorTypeAndShapeInfo const** out);
  void (*ReleaseTypeInfo)(OrtTypeInfo*);
  OrtStatus* (*CreateRunOptions)(OrtRunOptions** out);
  void (*ReleaseRunOptions)(OrtRunOptions*);
  OrtStatus* (*AddRunConfigEntry)(OrtRunOptions*, char const* key, char const* value);
  OrtStatus* (*CreateMemoryInfo)(char const* name, int allocatorType, int deviceId, int memType, OrtMemoryInfo** out);
  void (*ReleaseMemoryInfo)(OrtMemoryInfo*);
  OrtStatus* (*AddFreeDimensionOverrideByName)(OrtSessionOptions*, char const* name, int64_t value);
  OrtStatus* (*GetAvailableProviders)(char*** providers, int* length);
  OrtStatus* (*ReleaseAvailableProviders)(char** providers, int length);
  OrtStatus* (*RunWithBinding)(OrtSession*, OrtRunOptions const*, OrtIoBinding const*);
  OrtStatus* (*CreateIoBinding)(OrtSession*, OrtIoBinding** out);
  void (*ReleaseIoBinding)(OrtIoBinding*);
  OrtStatus* (*BindInput)(OrtIoBinding*, char const* name, OrtValue const*);
  OrtStatus* (*BindOutput)(OrtIoBinding*, char const* name, OrtValue const*);
  OrtStatus* (*BindOutputToDevice)(OrtIoBinding*, char const* name, OrtMemoryInfo const*);
  OrtStatus* (*GetBoundOutputValues)(OrtIoBinding const*, OrtAllocator*, OrtValue*** values, size_t* count);
  OrtStatus* (*SessionOptionsAppendExecutionProvider_CUDA_V2)(OrtSessionOptions*, OrtCUDAProviderOptionsV2 const*);
  OrtStatus* (*CreateCUDAProviderOptions)(OrtCUDAProviderOptionsV2** out);
  OrtStatus* (*UpdateCUDAProviderOptions)(OrtCUDAProviderOptionsV2*, char const* const* keys, char const* const* values,
                                          size_t count);
  OrtStatus* (*UpdateCUDAProviderOptionsWithValue)(OrtCUDAProviderOptionsV2*, char const* key, void* value);
  void (*ReleaseCUDAProviderOptions)(OrtCUDAProviderOptionsV2*);
  OrtStatus* (*SessionOptionsAppendExecutionProvider_TensorRT_V2)(OrtSessionOptions*,
                                                                  OrtTensorRTProviderOptionsV2 const*);
  OrtStatus* (*CreateTensorRTProviderOptions)(OrtTensorRTProviderOptionsV2** out);
  OrtStatus* (*UpdateTensorRTProviderOptions)(OrtTensorRTProviderOptionsV2*, char const* const* keys,
                                              char const* const* values, size_t count);
  OrtStatus* (*UpdateTensorRTProviderOptionsWithValue)(OrtTensorRTProviderOptionsV2*, char const* key, void* value);
  void (*ReleaseTensorRTProviderOptions)(OrtTensorRTProviderOptionsV2*);
  // The first provider entries (their options as plain structs, see ort_device.cc): the ones a build whose core
  // only loads the providers as libraries (no CUDA compiled into the core) still serves.
  OrtStatus* (*SessionOptionsAppendExecutionProvider_CUDA)(OrtSessionOptions*, void const* cudaOptions);
  OrtStatus* (*SessionOptionsAppendExecutionProvider_TensorRT)(OrtSessionOptions*, void const* tensorrtOptions);
  // The EP-device entries (onnxruntime 1.22 and later; null before): a provider library registered with the
  // environment and appended by device with string options. A core without CUDA compiled in (the npm GPU build)
  // takes every CUDA option this way, enable_cuda_graph among them, which the first entries' struct lacks.
  OrtStatus* (*RegisterExecutionProviderLibrary)(OrtEnv*, char const* registrationName, char const* path) = nullptr;
  OrtStatus* (*GetEpDevices)(OrtEnv const*, OrtEpDevice const* const** devices, size_t* count) = nullptr;
  OrtStatus* (*SessionOptionsAppendExecutionProvider_V2)(OrtSessionOptions*, OrtEnv*, OrtEpDevice const* const* devices,
                                                         size_t deviceCount, char const* const* keys,
                                                         char const* const* values, size_t optionCount) = nullptr;
  char const* (*EpDevice_EpName)(OrtEpDevice const*) = nullptr;

  // The message of status (released here) or "" when it is null (success).
  std::string Take(OrtStatus* status) const;
};

// Loads libraryPath once per process and returns its API with an environment and CPU memory info, or nullptr with
// *error saying why. Two libraries may be loaded side by side (onnxruntime-node's CPU build and a GPU build from
// YQP_ORT_GPU_DIR); each keeps its own environment, and a session runs on the library that opened it.
struct Runtime {
  Api api;
  std::string directory;  // the core's folder, where its provider libraries are
  OrtEnv* env = nullptr;
  OrtMemoryInfo* cpu = nullptr;
  OrtAllocator* allocator = nullptr;
};
Runtime const* LoadRuntime(std::string const& libraryPath, std::string* error);

// The execution providers compiled into the library (onnxruntime's GetAvailableProviders), or *error.
std::vector<std::string> AvailableProviders(Runtime const* rt, std::string* error);

}  // namespace yqp::ort
