#include "core/cuda_info.h"

#include <cuda_runtime_api.h>

#include <string>

#ifdef YQP_WITH_TENSORRT
#include <NvInferVersion.h>
#endif

namespace yqp {
namespace {

std::string VersionString(int v) {
  // CUDA encodes 13.0 as 13000.
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

Napi::Value CudaInfo(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  out.Set("runtimeVersion", VersionString(runtime));
  int driver = 0;
  cudaError_t driverStatus = cudaDriverGetVersion(&driver);
  Napi::Array devices = Napi::Array::New(env);
  if (driverStatus != cudaSuccess || driver == 0) {
    out.Set("driverError", driverStatus != cudaSuccess ? cudaGetErrorString(driverStatus)
                                                       : "no NVIDIA driver is installed (libcuda.so not found)");
  } else {
    out.Set("driverVersion", VersionString(driver));
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      out.Set("deviceError", std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
      count = 0;
    }
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", i);
      d.Set("name", p.name);
      d.Set("sm", std::to_string(p.major) + "." + std::to_string(p.minor));
      d.Set("totalMemory", static_cast<double>(p.totalGlobalMem));
      size_t freeBytes = 0, totalBytes = 0;
      int previous = 0;
      cudaGetDevice(&previous);
      if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess)
        d.Set("freeMemory", static_cast<double>(freeBytes));
      cudaSetDevice(previous);
      char bus[32] = {0};
      if (cudaDeviceGetPCIBusId(bus, sizeof(bus), i) == cudaSuccess) d.Set("pciBusId", bus);
      d.Set("multiProcessors", p.multiProcessorCount);
      devices.Set(static_cast<uint32_t>(devices.Length()), d);
    }
  }
  out.Set("devices", devices);
  Napi::Object trt = Napi::Object::New(env);
#ifdef YQP_WITH_TENSORRT
  trt.Set("compiled", true);
  trt.Set("version", std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
                         std::to_string(NV_TENSORRT_PATCH));
#else
  trt.Set("compiled", false);
#endif
  out.Set("tensorrt", trt);
  return out;
}

}  // namespace

void InitCudaInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
}

}  // namespace yqp
