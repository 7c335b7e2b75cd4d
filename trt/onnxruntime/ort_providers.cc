// onnxruntime's CUDA and TensorRT execution providers appended to a session's options: by the EP-device API
// where onnxruntime has it (options by name, enable_cuda_graph included), else by the V2 or V1 option structs.
#include "onnxruntime/ort_providers.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "onnxruntime/ort_ep_devices.h"

namespace yqp::ort {
namespace {

// keys/values for onnxruntime's Update*ProviderOptions.
struct KeyValues {
  std::vector<std::string> keys, values;
  // A key given twice keeps its last value (the user's options come after ours).
  void Add(std::string k, std::string v) {
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == k) {
        values[i] = std::move(v);
        return;
      }
    keys.push_back(std::move(k));
    values.push_back(std::move(v));
  }
  std::vector<char const*> Keys() const { return Pointers(keys); }
  std::vector<char const*> Values() const { return Pointers(values); }
  static std::vector<char const*> Pointers(std::vector<std::string> const& s) {
    std::vector<char const*> p;
    for (auto const& x : s) p.push_back(x.c_str());
    return p;
  }
};

// OrtCUDAProviderOptions and OrtTensorRTProviderOptions, the plain structs of the first provider entries, field by
// field as onnxruntime's C API documents them (their layout is part of its ABI).
struct CudaProviderOptionsV1 {
  int device_id = 0;
  int cudnn_conv_algo_search = 0;  // 0 exhaustive, 1 heuristic, 2 default
  size_t gpu_mem_limit = SIZE_MAX;
  int arena_extend_strategy = 0;
  int do_copy_in_default_stream = 1;
  int has_user_compute_stream = 0;
  void* user_compute_stream = nullptr;
  void* default_memory_arena_cfg = nullptr;
  int tunable_op_enable = 0;
  int tunable_op_tuning_enable = 0;
  int tunable_op_max_tuning_duration_ms = 0;
};
struct TensorrtProviderOptionsV1 {
  int device_id = 0;
  int has_user_compute_stream = 0;
  void* user_compute_stream = nullptr;
  int trt_max_partition_iterations = 1000;
  int trt_min_subgraph_size = 1;
  size_t trt_max_workspace_size = size_t{1} << 30;
  int trt_fp16_enable = 0;
  int trt_int8_enable = 0;
  char const* trt_int8_calibration_table_name = "";
  int trt_int8_use_native_calibration_table = 0;
  int trt_dla_enable = 0;
  int trt_dla_core = 0;
  int trt_dump_subgraphs = 0;
  int trt_engine_cache_enable = 0;
  char const* trt_engine_cache_path = "";
  int trt_engine_decryption_enable = 0;
  char const* trt_engine_decryption_lib_path = "";
  int trt_force_sequential_engine_build = 0;
};

// The V2 options need a core with the provider compiled in or its interface ("not enabled in this build"
// otherwise); the npm GPU build loads the providers as libraries, which the first entries still reach.
bool NotInThisBuild(std::string const& e) { return e.find("not enabled in this build") != std::string::npos; }

std::string AppendTensorrtV1(Api const& api, OrtSessionOptions* so, DeviceOptions const& d) {
  TensorrtProviderOptionsV1 o;
  o.device_id = d.deviceId;
  o.has_user_compute_stream = d.stream != nullptr;
  o.user_compute_stream = d.stream;
  o.trt_fp16_enable = d.tensorrt.fp16;
  o.trt_int8_enable = d.tensorrt.int8;
  o.trt_int8_calibration_table_name = d.tensorrt.calibrationTable.c_str();
  o.trt_engine_cache_enable = !d.tensorrt.engineCachePath.empty();
  o.trt_engine_cache_path = d.tensorrt.engineCachePath.c_str();
  std::string e = api.Take(api.SessionOptionsAppendExecutionProvider_TensorRT(so, &o));
  return e.empty() ? e : "the TensorRT execution provider cannot be used: " + e;
}

std::string AppendCudaV1(Api const& api, OrtSessionOptions* so, DeviceOptions const& d) {
  if (!d.providerOptions.empty())
    return "CUDA provider options by name (" + d.providerOptions.front().first +
           " ...) need onnxruntime's EP-device route or a core with CUDA compiled in; this one takes the first "
           "option struct only";
  CudaProviderOptionsV1 o;
  o.device_id = d.deviceId;
  o.cudnn_conv_algo_search = d.convAlgoSearch == "EXHAUSTIVE" ? 0 : d.convAlgoSearch == "DEFAULT" ? 2 : 1;
  o.has_user_compute_stream = d.stream != nullptr;
  o.user_compute_stream = d.stream;
  std::string e = api.Take(api.SessionOptionsAppendExecutionProvider_CUDA(so, &o));
  return e.empty() ? e : "the CUDA execution provider cannot be used: " + e;
}

std::string AppendTensorrt(Api const& api, OrtSessionOptions* so, DeviceOptions const& d) {
  TensorrtOptions const& t = d.tensorrt;
  OrtTensorRTProviderOptionsV2* o = nullptr;
  std::string e = api.Take(api.CreateTensorRTProviderOptions(&o));
  if (NotInThisBuild(e)) return AppendTensorrtV1(api, so, d);
  if (!e.empty()) return "the TensorRT provider options cannot be made: " + e;
  KeyValues kv;
  kv.Add("device_id", std::to_string(d.deviceId));
  kv.Add("trt_fp16_enable", t.fp16 ? "1" : "0");
  kv.Add("trt_int8_enable", t.int8 ? "1" : "0");
  if (!t.calibrationTable.empty()) kv.Add("trt_int8_calibration_table_name", t.calibrationTable);
  if (!t.engineCachePath.empty()) {
    kv.Add("trt_engine_cache_enable", "1");
    kv.Add("trt_engine_cache_path", t.engineCachePath);
  }
  if (!t.timingCachePath.empty()) {
    kv.Add("trt_timing_cache_enable", "1");
    kv.Add("trt_timing_cache_path", t.timingCachePath);
  }
  if (!t.minShapes.empty()) {
    kv.Add("trt_profile_min_shapes", t.minShapes);
    kv.Add("trt_profile_opt_shapes", t.optShapes);
    kv.Add("trt_profile_max_shapes", t.maxShapes);
  }
  auto keys = kv.Keys(), values = kv.Values();
  e = api.Take(api.UpdateTensorRTProviderOptions(o, keys.data(), values.data(), keys.size()));
  if (e.empty() && d.stream != nullptr)
    e = api.Take(api.UpdateTensorRTProviderOptionsWithValue(o, "user_compute_stream", d.stream));
  if (e.empty()) e = api.Take(api.SessionOptionsAppendExecutionProvider_TensorRT_V2(so, o));
  api.ReleaseTensorRTProviderOptions(o);
  return e.empty() ? e : "the TensorRT execution provider cannot be used: " + e;
}

// The CUDA options both named routes give (the V2 option struct, the EP-device route), the user's after ours.
KeyValues CudaOptionsByName(DeviceOptions const& d, bool graphSession) {
  KeyValues kv;
  kv.Add("device_id", std::to_string(d.deviceId));
  kv.Add("cudnn_conv_algo_search", d.convAlgoSearch);
  // Copies on the compute stream: inputs are ordered with the run that reads them.
  kv.Add("do_copy_in_default_stream", "1");
  if (graphSession) kv.Add("enable_cuda_graph", "1");
  for (auto const& [k, v] : d.providerDefaults) kv.Add(k, v);
  for (auto const& [k, v] : d.providerOptions) kv.Add(k, v);
  return kv;
}

std::string AppendCudaOptions(Api const& api, OrtSessionOptions* so, DeviceOptions const& d, bool graphSession,
                              AppendResult* result) {
  OrtCUDAProviderOptionsV2* o = nullptr;
  std::string e = api.Take(api.CreateCUDAProviderOptions(&o));
  if (NotInThisBuild(e)) {
    result->route = "options-v1";
    return AppendCudaV1(api, so, d);
  }
  if (!e.empty()) return "the CUDA provider options cannot be made: " + e;
  result->route = "options-v2";
  KeyValues kv = CudaOptionsByName(d, graphSession);
  auto keys = kv.Keys(), values = kv.Values();
  e = api.Take(api.UpdateCUDAProviderOptions(o, keys.data(), values.data(), keys.size()));
  if (e.empty() && d.stream != nullptr)
    e = api.Take(api.UpdateCUDAProviderOptionsWithValue(o, "user_compute_stream", d.stream));
  if (e.empty()) e = api.Take(api.SessionOptionsAppendExecutionProvider_CUDA_V2(so, o));
  api.ReleaseCUDAProviderOptions(o);
  result->onnxruntimeGraph = e.empty() && graphSession;
  return e.empty() ? e : "the CUDA execution provider cannot be used: " + e;
}

// YQP_ORT_CUDA_ROUTE: "ep-device" (that route or an error), "options" (the option structs only), else the EP-device
// route where this onnxruntime has it and the option structs otherwise.
std::string CudaRoute() {
  char const* v = std::getenv("YQP_ORT_CUDA_ROUTE");
  return v != nullptr ? v : "";
}

std::string AppendCuda(Runtime const* rt, OrtSessionOptions* so, DeviceOptions const& d, bool graphSession,
                       AppendResult* result) {
  std::string route = CudaRoute();
  if (route != "options") {
    std::string closed;
    CudaEpDevices(rt, &closed);
    if (closed.empty()) {
      KeyValues kv = CudaOptionsByName(d, graphSession);
      if (d.stream != nullptr) {  // as a string here: this route takes no pointer values
        kv.Add("has_user_compute_stream", "1");
        kv.Add("user_compute_stream", std::to_string(reinterpret_cast<uintptr_t>(d.stream)));
      }
      std::string e = AppendCudaByDevice(rt, so, d.deviceId, kv.keys, kv.values);
      if (!e.empty()) return "the CUDA execution provider cannot be used (EP-device route): " + e;
      result->route = "ep-device";
      result->onnxruntimeGraph = graphSession;
      return {};
    }
    if (route == "ep-device") return "the EP-device route to the CUDA provider is closed: " + closed;
  }
  return AppendCudaOptions(rt->api, so, d, graphSession, result);
}

}  // namespace

std::string AppendProviders(Runtime const* rt, OrtSessionOptions* so, DeviceOptions const& device, bool graphSession,
                            AppendResult* result) {
  if (!device.cuda) return {};
  if (device.tensorrt.enabled) {
    std::string e = AppendTensorrt(rt->api, so, device);
    if (!e.empty()) return e;
  }
  return AppendCuda(rt, so, device, graphSession, result);
}

}  // namespace yqp::ort
