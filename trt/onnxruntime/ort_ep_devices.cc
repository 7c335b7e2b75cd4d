#include "onnxruntime/ort_ep_devices.h"

#include <cstring>
#include <map>
#include <mutex>

namespace yqp::ort {
namespace {

constexpr char const* kCudaProviderName = "CUDAExecutionProvider";
constexpr char const* kRegistrationName = "yqp-trt-cuda";

struct Listed {
  std::vector<OrtEpDevice const*> devices;
  std::string error;
};

}  // namespace

std::vector<OrtEpDevice const*> CudaEpDevices(Runtime const* rt, std::string* error) {
  static std::mutex mutex;
  static std::map<Runtime const*, Listed> listed;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto found = listed.find(rt); found != listed.end()) {
    *error = found->second.error;
    return found->second.devices;
  }
  Listed& l = listed[rt];
  Api const& api = rt->api;
  if (api.RegisterExecutionProviderLibrary == nullptr || api.GetEpDevices == nullptr ||
      api.SessionOptionsAppendExecutionProvider_V2 == nullptr || api.EpDevice_EpName == nullptr) {
    l.error = std::string("onnxruntime ") + api.version + " has no EP-device API (1.22 and later have it)";
  } else {
    std::string path = rt->directory + "/libonnxruntime_providers_cuda.so";
    l.error = api.Take(api.RegisterExecutionProviderLibrary(rt->env, kRegistrationName, path.c_str()));
    if (!l.error.empty()) l.error = "registering " + path + ": " + l.error;
  }
  OrtEpDevice const* const* all = nullptr;
  size_t count = 0;
  if (l.error.empty()) l.error = api.Take(api.GetEpDevices(rt->env, &all, &count));
  for (size_t i = 0; l.error.empty() && i < count; ++i) {
    char const* name = api.EpDevice_EpName(all[i]);
    if (name != nullptr && std::strcmp(name, kCudaProviderName) == 0) l.devices.push_back(all[i]);
  }
  if (l.error.empty() && l.devices.empty()) l.error = "the CUDA provider library lists no CUDA device";
  *error = l.error;
  return l.devices;
}

std::string AppendCudaByDevice(Runtime const* rt, OrtSessionOptions* so, int ordinal,
                               std::vector<std::string> const& keys, std::vector<std::string> const& values) {
  std::string e;
  auto devices = CudaEpDevices(rt, &e);
  if (!e.empty()) return e;
  if (ordinal < 0 || static_cast<size_t>(ordinal) >= devices.size())
    return "the CUDA provider lists " + std::to_string(devices.size()) +
           " device(s), not cuda:" + std::to_string(ordinal);
  std::vector<char const*> k, v;
  for (auto const& x : keys) k.push_back(x.c_str());
  for (auto const& x : values) v.push_back(x.c_str());
  OrtEpDevice const* device = devices[static_cast<size_t>(ordinal)];
  return rt->api.Take(
      rt->api.SessionOptionsAppendExecutionProvider_V2(so, rt->env, &device, 1, k.data(), v.data(), k.size()));
}

}  // namespace yqp::ort
