#include "tensorrt_binding.h"

#include <cuda_runtime_api.h>

#include "library.h"
#include "napi_util.h"

namespace {

Napi::Value Load(Napi::CallbackInfo const& info) {
  yqp::trt::LibraryStatus const& s = yqp::trt::LoadLibraries();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("loaded", s.loaded);
  out.Set("nvinfer", s.nvinferPath);
  out.Set("parser", s.parserPath);
  if (s.libVersion != 0) out.Set("version", yqp::trt::VersionString(s.libVersion));
  if (!s.loaded) out.Set("error", s.error);
  return out;
}

// Name and SM of a GPU: the engine cache key and plan metadata need them before anything is built.
Napi::Value DeviceInfo(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  cudaDeviceProp prop{};
  cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess)
    throw yqp::trt::CodedError(
        env, "cudaGetDeviceProperties(" + std::to_string(device) + ") failed: " + cudaGetErrorString(e), "E_NATIVE");
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", std::string(prop.name));
  out.Set("sm", std::to_string(prop.major) + "." + std::to_string(prop.minor));
  out.Set("totalMemory", Napi::Number::New(env, static_cast<double>(prop.totalGlobalMem)));
  return out;
}

}  // namespace

void InitTensorRT(Napi::Env env, Napi::Object exports) {
  Napi::Object trt = Napi::Object::New(env);
  trt.Set("compiledVersion", yqp::trt::CompiledVersion());
  trt.Set("load", Napi::Function::New(env, Load, "load"));
  trt.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  yqp::trt::InitBuild(env, trt);
  yqp::trt::InitEngine(env, trt);
  exports.Set("tensorrt", trt);
}
