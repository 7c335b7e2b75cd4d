#include "kernels/raw_helpers.h"

#include <string>

#include "kernels/job.h"

namespace yqp::kernels {
namespace {

Napi::Value DeviceInfo(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    r.Set("available", false);
    r.Set("reason", err != cudaSuccess ? CudaMessage("cudaGetDeviceCount", err) : "no CUDA device");
    return r;
  }
  int dev = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  cudaDeviceProp p{};
  err = cudaGetDeviceProperties(&p, dev);
  if (err != cudaSuccess) {
    r.Set("available", false);
    r.Set("reason", CudaMessage("cudaGetDeviceProperties", err));
    return r;
  }
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  r.Set("available", true);
  r.Set("count", count);
  r.Set("name", p.name);
  r.Set("sm", std::to_string(p.major) + std::to_string(p.minor));
  r.Set("multiprocessors", p.multiProcessorCount);
  r.Set("totalMemory", static_cast<double>(p.totalGlobalMem));
  r.Set("runtimeVersion", runtime);
  r.Set("driverVersion", driver);
  return r;
}

Napi::Value Malloc(Napi::CallbackInfo const& info) {
  void* p = nullptr;
  Check(info.Env(), "cudaMalloc", cudaMalloc(&p, static_cast<size_t>(info[0].As<Napi::Number>().Int64Value())));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

Napi::Value Free(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaFree", cudaFree(reinterpret_cast<void*>(ToPtr(info[0]))));
  return info.Env().Undefined();
}

// upload(ptr, view) / download(ptr, view): synchronous copies, tests and benchmark setup only.
Napi::Value Upload(Napi::CallbackInfo const& info) {
  HostView v = ViewOf(info[1]);
  Check(info.Env(), "cudaMemcpy",
        cudaMemcpy(reinterpret_cast<void*>(ToPtr(info[0])), v.data, v.bytes, cudaMemcpyHostToDevice));
  return info.Env().Undefined();
}

Napi::Value Download(Napi::CallbackInfo const& info) {
  HostView v = ViewOf(info[1]);
  Check(info.Env(), "cudaMemcpy",
        cudaMemcpy(v.data, reinterpret_cast<void*>(ToPtr(info[0])), v.bytes, cudaMemcpyDeviceToHost));
  return info.Env().Undefined();
}

Napi::Value Memset(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaMemset",
        cudaMemset(reinterpret_cast<void*>(ToPtr(info[0])), info[1].As<Napi::Number>().Int32Value(),
                   static_cast<size_t>(info[2].As<Napi::Number>().Int64Value())));
  // cudaMemset may return before it ran, on the legacy stream that non-blocking streams do not wait for.
  Check(info.Env(), "cudaDeviceSynchronize", cudaDeviceSynchronize());
  return info.Env().Undefined();
}

Napi::Value StreamCreate(Napi::CallbackInfo const& info) {
  cudaStream_t s = nullptr;
  Check(info.Env(), "cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(s)));
}

Napi::Value StreamDestroy(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaStreamDestroy", cudaStreamDestroy(reinterpret_cast<cudaStream_t>(ToPtr(info[0]))));
  return info.Env().Undefined();
}

Napi::Value StreamSynchronize(Napi::CallbackInfo const& info) {
  Check(info.Env(), "cudaStreamSynchronize", cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(ToPtr(info[0]))));
  return info.Env().Undefined();
}

}  // namespace

void AddRawHelpers(Napi::Env env, Napi::Object kernels) {
  kernels.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  kernels.Set("malloc", Napi::Function::New(env, Malloc, "malloc"));
  kernels.Set("free", Napi::Function::New(env, Free, "free"));
  kernels.Set("upload", Napi::Function::New(env, Upload, "upload"));
  kernels.Set("download", Napi::Function::New(env, Download, "download"));
  kernels.Set("memset", Napi::Function::New(env, Memset, "memset"));
  kernels.Set("streamCreate", Napi::Function::New(env, StreamCreate, "streamCreate"));
  kernels.Set("streamDestroy", Napi::Function::New(env, StreamDestroy, "streamDestroy"));
  kernels.Set("streamSynchronize", Napi::Function::New(env, StreamSynchronize, "streamSynchronize"));
}

}  // namespace yqp::kernels
