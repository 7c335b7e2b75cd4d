#include "core/nvml.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

namespace yqp {
namespace {

// The few NVML declarations used, from NVML's documented ABI (so no nvml.h is needed to build).
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu, memory;
};
struct nvmlMemory_t {
  unsigned long long total, free, used;
};
constexpr int kNvmlSuccess = 0;
constexpr int kTemperatureGpu = 0;
constexpr int kPcieTx = 0, kPcieRx = 1;

struct Nvml {
  void* lib = nullptr;
  std::string reason;
  nvmlReturn_t (*init)() = nullptr;
  char const* (*errorString)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*deviceCount)(unsigned int*) = nullptr;
  nvmlReturn_t (*handleByIndex)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*power)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*pcieThroughput)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*linkGen)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*linkWidth)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*driverVersion)(char*, unsigned int) = nullptr;
};

Nvml& Load() {
  static Nvml n;
  static std::once_flag once;
  std::call_once(once, [] {
    n.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n.lib) {
      char const* e = dlerror();
      n.reason = std::string("libnvidia-ml.so.1 could not be loaded (no NVIDIA driver?): ") + (e ? e : "");
      return;
    }
    auto sym = [](char const* s) { return dlsym(n.lib, s); };
    n.init = reinterpret_cast<decltype(n.init)>(sym("nvmlInit_v2"));
    n.errorString = reinterpret_cast<decltype(n.errorString)>(sym("nvmlErrorString"));
    n.deviceCount = reinterpret_cast<decltype(n.deviceCount)>(sym("nvmlDeviceGetCount_v2"));
    n.handleByIndex = reinterpret_cast<decltype(n.handleByIndex)>(sym("nvmlDeviceGetHandleByIndex_v2"));
    n.name = reinterpret_cast<decltype(n.name)>(sym("nvmlDeviceGetName"));
    n.utilization = reinterpret_cast<decltype(n.utilization)>(sym("nvmlDeviceGetUtilizationRates"));
    n.memory = reinterpret_cast<decltype(n.memory)>(sym("nvmlDeviceGetMemoryInfo"));
    n.temperature = reinterpret_cast<decltype(n.temperature)>(sym("nvmlDeviceGetTemperature"));
    n.power = reinterpret_cast<decltype(n.power)>(sym("nvmlDeviceGetPowerUsage"));
    n.pcieThroughput = reinterpret_cast<decltype(n.pcieThroughput)>(sym("nvmlDeviceGetPcieThroughput"));
    n.linkGen = reinterpret_cast<decltype(n.linkGen)>(sym("nvmlDeviceGetCurrPcieLinkGeneration"));
    n.linkWidth = reinterpret_cast<decltype(n.linkWidth)>(sym("nvmlDeviceGetCurrPcieLinkWidth"));
    n.driverVersion = reinterpret_cast<decltype(n.driverVersion)>(sym("nvmlSystemGetDriverVersion"));
    if (!n.init || !n.deviceCount || !n.handleByIndex) {
      n.reason = "libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGetCount_v2 (driver too old)";
      return;
    }
    nvmlReturn_t r = n.init();
    if (r != kNvmlSuccess)
      n.reason = std::string("nvmlInit_v2 failed: ") + (n.errorString ? n.errorString(r) : std::to_string(r));
  });
  return n;
}

Napi::Value Sample(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  Nvml& n = Load();
  Napi::Object out = Napi::Object::New(env);
  if (!n.reason.empty()) {
    out.Set("available", false);
    out.Set("reason", n.reason);
    return out;
  }
  // PCIe throughput is sampled by NVML over ~20 ms per counter: callers opt in.
  bool pcie = !(info.Length() > 0 && info[0].IsObject() && info[0].As<Napi::Object>().Get("pcie").IsBoolean() &&
                !info[0].As<Napi::Object>().Get("pcie").As<Napi::Boolean>().Value());
  unsigned int count = 0;
  nvmlReturn_t r = n.deviceCount(&count);
  if (r != kNvmlSuccess) {
    out.Set("available", false);
    out.Set("reason", std::string("nvmlDeviceGetCount_v2 failed: ") + (n.errorString ? n.errorString(r) : ""));
    return out;
  }
  out.Set("available", true);
  char text[96] = {0};
  if (n.driverVersion && n.driverVersion(text, sizeof text) == kNvmlSuccess) out.Set("driverVersion", text);
  Napi::Array gpus = Napi::Array::New(env, count);
  for (unsigned int i = 0; i < count; ++i) {
    Napi::Object g = Napi::Object::New(env);
    g.Set("index", i);
    nvmlDevice_t d = nullptr;
    if (n.handleByIndex(i, &d) != kNvmlSuccess) {
      g.Set("error", "nvmlDeviceGetHandleByIndex_v2 failed");
      gpus.Set(i, g);
      continue;
    }
    if (n.name && n.name(d, text, sizeof text) == kNvmlSuccess) g.Set("name", text);
    nvmlUtilization_t u;
    if (n.utilization && n.utilization(d, &u) == kNvmlSuccess) {
      g.Set("utilizationGpu", u.gpu);
      g.Set("utilizationMemory", u.memory);
    }
    nvmlMemory_t m;
    if (n.memory && n.memory(d, &m) == kNvmlSuccess) {
      g.Set("memoryUsed", static_cast<double>(m.used));
      g.Set("memoryTotal", static_cast<double>(m.total));
    }
    unsigned int v = 0;
    if (n.temperature && n.temperature(d, kTemperatureGpu, &v) == kNvmlSuccess) g.Set("temperatureC", v);
    if (n.power && n.power(d, &v) == kNvmlSuccess) g.Set("powerW", v / 1000.0);
    if (pcie && n.pcieThroughput && n.pcieThroughput(d, kPcieTx, &v) == kNvmlSuccess)
      g.Set("pcieTxBytesPerSec", v * 1024.0);
    if (pcie && n.pcieThroughput && n.pcieThroughput(d, kPcieRx, &v) == kNvmlSuccess)
      g.Set("pcieRxBytesPerSec", v * 1024.0);
    if (n.linkGen && n.linkGen(d, &v) == kNvmlSuccess) g.Set("pcieLinkGeneration", v);
    if (n.linkWidth && n.linkWidth(d, &v) == kNvmlSuccess) g.Set("pcieLinkWidth", v);
    gpus.Set(i, g);
  }
  out.Set("gpus", gpus);
  return out;
}

}  // namespace

void InitNvml(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sample", Napi::Function::New(env, Sample, "sample"));
  exports.Set("nvml", o);
}

}  // namespace yqp
