#include "onnxruntime/ort_api.h"

#include <dlfcn.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace yqp::ort {
namespace {

struct ApiBase {
  void const* (*GetApi)(uint32_t version);
  char const* (*GetVersionString)();
};

// The API version asked for: every slot used exists from here on, and later libraries still serve it.
constexpr uint32_t kApiVersion = 16;  // 1.16: UpdateCUDAProviderOptionsWithValue
constexpr int kLoggingLevelError = 3;
constexpr int kArenaAllocator = 1, kMemTypeDefault = 0;

// Slots of OrtApi (see the header's note).
enum Slot : size_t {
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSession = 7,
  kRun = 9,
  kCreateSessionOptions = 10,
  kDisableMemPattern = 17,
  kSetSessionLogSeverityLevel = 22,
  kSetSessionGraphOptimizationLevel = 23,
  kSetIntraOpNumThreads = 24,
  kSetInterOpNumThreads = 25,
  kSessionGetInputCount = 30,
  kSessionGetOutputCount = 31,
  kSessionGetInputName = 36,
  kSessionGetOutputName = 37,
  kCreateTensorWithDataAsOrtValue = 49,
  kGetTensorMutableData = 51,
  kGetTensorElementType = 60,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorShapeElementCount = 64,
  kGetTensorTypeAndShape = 65,
  kCreateCpuMemoryInfo = 69,
  kAllocatorFree = 76,
  kGetAllocatorWithDefaultOptions = 78,
  kReleaseStatus = 93,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseTensorTypeAndShapeInfo = 99,
  kReleaseSessionOptions = 100,
  kAddSessionConfigEntry = 130,
  kSessionGetOutputTypeInfo = 34,
  kCastTypeInfoToTensorInfo = 55,
  kReleaseTypeInfo = 98,
  kCreateRunOptions = 39,
  kReleaseRunOptions = 97,
  kAddRunConfigEntry = 165,
  kCreateMemoryInfo = 68,
  kReleaseMemoryInfo = 94,
  kAddFreeDimensionOverrideByName = 124,
  kGetAvailableProviders = 125,
  kReleaseAvailableProviders = 126,
  kRunWithBinding = 133,
  kCreateIoBinding = 134,
  kReleaseIoBinding = 135,
  kBindInput = 136,
  kBindOutput = 137,
  kBindOutputToDevice = 138,
  kGetBoundOutputValues = 140,
  kSessionOptionsAppendExecutionProvider_TensorRT_V2 = 170,
  kCreateTensorRTProviderOptions = 171,
  kUpdateTensorRTProviderOptions = 172,
  kReleaseTensorRTProviderOptions = 174,
  kSessionOptionsAppendExecutionProvider_CUDA_V2 = 204,
  kCreateCUDAProviderOptions = 205,
  kUpdateCUDAProviderOptions = 206,
  kReleaseCUDAProviderOptions = 208,
  kUpdateTensorRTProviderOptionsWithValue = 261,
  kUpdateCUDAProviderOptionsWithValue = 263,
  kSessionOptionsAppendExecutionProvider_CUDA = 152,
  kSessionOptionsAppendExecutionProvider_TensorRT = 159,
  // From 1.22 on.
  kRegisterExecutionProviderLibrary = 301,
  kGetEpDevices = 303,
  kSessionOptionsAppendExecutionProvider_V2 = 304,
  kEpDevice_EpName = 312,
};

// "1.29.0" -> 29 (the minor version, what decides which slots exist), 0 when unreadable.
int MinorVersion(char const* version) {
  int major = 0, minor = 0;
  return version != nullptr && std::sscanf(version, "%d.%d", &major, &minor) == 2 && major == 1 ? minor : 0;
}

template <typename F>
void Bind(void* const* table, Slot slot, F*& fn) {
  fn = reinterpret_cast<F*>(table[slot]);
}

}  // namespace

size_t ElementSize(int type) {
  switch (type) {
    case kUint8:
    case kInt8:
    case kBool:
      return 1;
    case kUint16:
    case kInt16:
    case kFloat16:
      return 2;
    case kFloat:
    case kInt32:
    case kUint32:
      return 4;
    case kInt64:
    case kDouble:
    case kUint64:
      return 8;
    default:
      return 0;
  }
}

std::string Api::Take(OrtStatus* status) const {
  if (status == nullptr) return {};
  char const* m = GetErrorMessage(status);
  std::string message = m != nullptr && *m != '\0' ? m : "unknown onnxruntime error";
  ReleaseStatus(status);
  return message;
}

Runtime const* LoadRuntime(std::string const& libraryPath, std::string* error) {
  // One runtime per library file: onnxruntime-node's binding shares the CPU library's; a GPU build loads beside it
  // (RTLD_LOCAL keeps their symbols apart).
  static std::mutex mutex;
  static std::map<std::string, Runtime*> runtimes;  // leaked on purpose: sessions may outlive any owner at exit
  std::lock_guard<std::mutex> lock(mutex);
  char* resolved = realpath(libraryPath.c_str(), nullptr);
  std::string path = resolved != nullptr ? resolved : libraryPath;
  free(resolved);
  if (auto found = runtimes.find(path); found != runtimes.end()) return found->second;
  void* lib = dlopen(libraryPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    char const* e = dlerror();
    *error = "cannot load " + libraryPath + ": " + (e != nullptr ? e : "dlopen failed");
    return nullptr;
  }
  auto getBase = reinterpret_cast<ApiBase const* (*)()>(dlsym(lib, "OrtGetApiBase"));
  if (getBase == nullptr) {
    *error = libraryPath + " has no OrtGetApiBase (not an onnxruntime library)";
    return nullptr;
  }
  ApiBase const* base = getBase();
  auto table = static_cast<void* const*>(base->GetApi(kApiVersion));
  if (table == nullptr) {
    *error = libraryPath + " (onnxruntime " + base->GetVersionString() + ") does not serve C API version " +
             std::to_string(kApiVersion);
    return nullptr;
  }
  auto* r = new Runtime();
  Api& a = r->api;
  a.version = base->GetVersionString();
  Bind(table, kGetErrorMessage, a.GetErrorMessage);
  Bind(table, kCreateEnv, a.CreateEnv);
  Bind(table, kCreateSession, a.CreateSession);
  Bind(table, kRun, a.Run);
  Bind(table, kCreateSessionOptions, a.CreateSessionOptions);
  Bind(table, kSetSessionLogSeverityLevel, a.SetSessionLogSeverityLevel);
  Bind(table, kSetSessionGraphOptimizationLevel, a.SetSessionGraphOptimizationLevel);
  Bind(table, kDisableMemPattern, a.DisableMemPattern);
  Bind(table, kSetIntraOpNumThreads, a.SetIntraOpNumThreads);
  Bind(table, kSetInterOpNumThreads, a.SetInterOpNumThreads);
  Bind(table, kSessionGetInputCount, a.SessionGetInputCount);
  Bind(table, kSessionGetOutputCount, a.SessionGetOutputCount);
  Bind(table, kSessionGetInputName, a.SessionGetInputName);
  Bind(table, kSessionGetOutputName, a.SessionGetOutputName);
  Bind(table, kCreateTensorWithDataAsOrtValue, a.CreateTensorWithDataAsOrtValue);
  Bind(table, kGetTensorMutableData, a.GetTensorMutableData);
  Bind(table, kGetTensorElementType, a.GetTensorElementType);
  Bind(table, kGetDimensionsCount, a.GetDimensionsCount);
  Bind(table, kGetDimensions, a.GetDimensions);
  Bind(table, kGetTensorShapeElementCount, a.GetTensorShapeElementCount);
  Bind(table, kGetTensorTypeAndShape, a.GetTensorTypeAndShape);
  Bind(table, kCreateCpuMemoryInfo, a.CreateCpuMemoryInfo);
  Bind(table, kAllocatorFree, a.AllocatorFree);
  Bind(table, kGetAllocatorWithDefaultOptions, a.GetAllocatorWithDefaultOptions);
  Bind(table, kReleaseStatus, a.ReleaseStatus);
  Bind(table, kReleaseSession, a.ReleaseSession);
  Bind(table, kReleaseValue, a.ReleaseValue);
  Bind(table, kReleaseTensorTypeAndShapeInfo, a.ReleaseTensorTypeAndShapeInfo);
  Bind(table, kReleaseSessionOptions, a.ReleaseSessionOptions);
  Bind(table, kAddSessionConfigEntry, a.AddSessionConfigEntry);
  Bind(table, kSessionGetOutputTypeInfo, a.SessionGetOutputTypeInfo);
  Bind(table, kCastTypeInfoToTensorInfo, a.CastTypeInfoToTensorInfo);
  Bind(table, kReleaseTypeInfo, a.ReleaseTypeInfo);
  Bind(table, kCreateRunOptions, a.CreateRunOptions);
  Bind(table, kReleaseRunOptions, a.ReleaseRunOptions);
  Bind(table, kAddRunConfigEntry, a.AddRunConfigEntry);
  Bind(table, kCreateMemoryInfo, a.CreateMemoryInfo);
  Bind(table, kReleaseMemoryInfo, a.ReleaseMemoryInfo);
  Bind(table, kAddFreeDimensionOverrideByName, a.AddFreeDimensionOverrideByName);
  Bind(table, kGetAvailableProviders, a.GetAvailableProviders);
  Bind(table, kReleaseAvailableProviders, a.ReleaseAvailableProviders);
  Bind(table, kRunWithBinding, a.RunWithBinding);
  Bind(table, kCreateIoBinding, a.CreateIoBinding);
  Bind(table, kReleaseIoBinding, a.ReleaseIoBinding);
  Bind(table, kBindInput, a.BindInput);
  Bind(table, kBindOutput, a.BindOutput);
  Bind(table, kBindOutputToDevice, a.BindOutputToDevice);
  Bind(table, kGetBoundOutputValues, a.GetBoundOutputValues);
  Bind(table, kSessionOptionsAppendExecutionProvider_CUDA_V2, a.SessionOptionsAppendExecutionProvider_CUDA_V2);
  Bind(table, kCreateCUDAProviderOptions, a.CreateCUDAProviderOptions);
  Bind(table, kUpdateCUDAProviderOptions, a.UpdateCUDAProviderOptions);
  Bind(table, kUpdateCUDAProviderOptionsWithValue, a.UpdateCUDAProviderOptionsWithValue);
  Bind(table, kReleaseCUDAProviderOptions, a.ReleaseCUDAProviderOptions);
  Bind(table, kSessionOptionsAppendExecutionProvider_TensorRT_V2, a.SessionOptionsAppendExecutionProvider_TensorRT_V2);
  Bind(table, kCreateTensorRTProviderOptions, a.CreateTensorRTProviderOptions);
  Bind(table, kUpdateTensorRTProviderOptions, a.UpdateTensorRTProviderOptions);
  Bind(table, kUpdateTensorRTProviderOptionsWithValue, a.UpdateTensorRTProviderOptionsWithValue);
  Bind(table, kReleaseTensorRTProviderOptions, a.ReleaseTensorRTProviderOptions);
  Bind(table, kSessionOptionsAppendExecutionProvider_CUDA, a.SessionOptionsAppendExecutionProvider_CUDA);
  Bind(table, kSessionOptionsAppendExecutionProvider_TensorRT, a.SessionOptionsAppendExecutionProvider_TensorRT);
  if (MinorVersion(a.version) >= 22) {
    Bind(table, kRegisterExecutionProviderLibrary, a.RegisterExecutionProviderLibrary);
    Bind(table, kGetEpDevices, a.GetEpDevices);
    Bind(table, kSessionOptionsAppendExecutionProvider_V2, a.SessionOptionsAppendExecutionProvider_V2);
    Bind(table, kEpDevice_EpName, a.EpDevice_EpName);
  }
  // As the caller named it (onnxruntime looks for its providers beside the path it was loaded from).
  size_t slash = libraryPath.rfind('/');
  r->directory = slash == std::string::npos ? "." : libraryPath.substr(0, slash);
  // The environment is shared with any other user of the library in this process (onnxruntime keeps one).
  std::string e = a.Take(a.CreateEnv(kLoggingLevelError, "yqp-trt", &r->env));
  if (e.empty()) e = a.Take(a.CreateCpuMemoryInfo(kArenaAllocator, kMemTypeDefault, &r->cpu));
  if (e.empty()) e = a.Take(a.GetAllocatorWithDefaultOptions(&r->allocator));
  if (!e.empty()) {
    *error = "onnxruntime " + std::string(a.version) + " failed to start: " + e;
    delete r;
    return nullptr;
  }
  runtimes[path] = r;
  return r;
}

std::vector<std::string> AvailableProviders(Runtime const* rt, std::string* error) {
  char** names = nullptr;
  int count = 0;
  std::vector<std::string> out;
  *error = rt->api.Take(rt->api.GetAvailableProviders(&names, &count));
  if (!error->empty()) return out;
  for (int i = 0; i < count; ++i) out.emplace_back(names[i]);
  rt->api.Take(rt->api.ReleaseAvailableProviders(names, count));
  return out;
}

}  // namespace yqp::ort
