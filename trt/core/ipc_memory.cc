#include "core/ipc_memory.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "core/completion.h"
#include "core/cuda_check.h"

namespace yqp {
namespace {

using core::CodedError;
using core::CudaError;

// A mapped region: either an allocation this process made and exports, or another process's opened here.
class IpcMemory : public Napi::ObjectWrap<IpcMemory> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "IpcMemory",
        {InstanceMethod("read", &IpcMemory::Read), InstanceMethod("write", &IpcMemory::Write),
         InstanceMethod("close", &IpcMemory::Close), InstanceAccessor("byteSize", &IpcMemory::ByteSize, nullptr),
         InstanceAccessor("ptr", &IpcMemory::Ptr, nullptr)});
  }

  explicit IpcMemory(Napi::CallbackInfo const& info) : Napi::ObjectWrap<IpcMemory>(info) {}
  ~IpcMemory() override { Release(); }

  // Set up by the factory functions below (the constructor is not callable from JS with useful arguments).
  void Init(void* ptr, size_t size, int device, bool owned) {
    ptr_ = ptr;
    size_ = size;
    device_ = device;
    owned_ = owned;
  }

 private:
  void Release() {
    if (!ptr_) return;
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device_);
    if (owned_)
      cudaFree(ptr_);
    else
      cudaIpcCloseMemHandle(ptr_);
    cudaSetDevice(previous);
    ptr_ = nullptr;
  }

  // Checks [offset, offset + length) lies inside the region; throws a coded error naming what was wrong.
  void CheckRange(Napi::Env env, double offset, double length, char const* what) const {
    if (!ptr_) throw CodedError(env, std::string(what) + ": the region is closed", "E_DISPOSED");
    if (!(offset >= 0) || !(length >= 0) || offset + length > static_cast<double>(size_))
      throw CodedError(env,
                       std::string(what) + ": range [" + std::to_string(offset) + ", " +
                           std::to_string(offset + length) + ") is outside the region of " + std::to_string(size_) +
                           " bytes",
                       "E_INVALID_PARAMETER");
  }

  Napi::Value Read(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    double offset = info[0].ToNumber().DoubleValue();
    double length = info[1].ToNumber().DoubleValue();
    CheckRange(env, offset, length, "read");
    Napi::Uint8Array out = Napi::Uint8Array::New(env, static_cast<size_t>(length));
    cudaSetDevice(device_);
    cudaError_t e = cudaMemcpy(out.Data(), static_cast<char*>(ptr_) + static_cast<size_t>(offset),
                               static_cast<size_t>(length), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) throw CodedError(env, CudaError("cudaMemcpy (ipc read)", e), "E_CUDA");
    return out;
  }

  Napi::Value Write(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    double offset = info[0].ToNumber().DoubleValue();
    if (!info[1].IsTypedArray()) throw CodedError(env, "write: expected a Uint8Array of bytes", "E_INVALID_PARAMETER");
    Napi::TypedArray bytes = info[1].As<Napi::TypedArray>();
    CheckRange(env, offset, static_cast<double>(bytes.ByteLength()), "write");
    auto const* src = static_cast<uint8_t const*>(bytes.ArrayBuffer().Data()) + bytes.ByteOffset();
    cudaSetDevice(device_);
    cudaError_t e = cudaMemcpy(static_cast<char*>(ptr_) + static_cast<size_t>(offset), src, bytes.ByteLength(),
                               cudaMemcpyHostToDevice);
    if (e != cudaSuccess) throw CodedError(env, CudaError("cudaMemcpy (ipc write)", e), "E_CUDA");
    return env.Undefined();
  }

  Napi::Value Close(Napi::CallbackInfo const& info) {
    Release();
    return info.Env().Undefined();
  }

  Napi::Value ByteSize(Napi::CallbackInfo const& info) { return Napi::Number::New(info.Env(), size_); }
  // The device pointer (a closed region has none): a CUDA session on this GPU reads the region in place.
  Napi::Value Ptr(Napi::CallbackInfo const& info) {
    if (!ptr_) return info.Env().Undefined();
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr_)));
  }

  void* ptr_ = nullptr;
  size_t size_ = 0;
  int device_ = 0;
  bool owned_ = false;
};

Napi::FunctionReference* constructor = nullptr;

Napi::Object NewRegion(void* ptr, size_t size, int device, bool owned) {
  Napi::Object obj = constructor->New({});
  IpcMemory::Unwrap(obj)->Init(ptr, size, device, owned);
  return obj;
}

int DeviceArg(Napi::Env env, Napi::Value v) {
  if (v.IsUndefined()) return 0;
  if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0)
    throw CodedError(env, "expected a device ordinal >= 0", "E_INVALID_PARAMETER");
  return v.As<Napi::Number>().Int32Value();
}

size_t SizeArg(Napi::Env env, Napi::Value v, char const* what) {
  if (!v.IsNumber() || !(v.As<Napi::Number>().DoubleValue() >= 1))
    throw CodedError(env, std::string("expected a positive byte size for ") + what, "E_INVALID_PARAMETER");
  return static_cast<size_t>(v.As<Napi::Number>().DoubleValue());
}

// exportIpcMemory(byteSize, device): a whole cudaMalloc allocation (IPC handles are only valid for those).
Napi::Value ExportIpcMemory(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  size_t size = SizeArg(env, info[0], "exportIpcMemory");
  int device = DeviceArg(env, info[1]);
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) throw CodedError(env, CudaError("cudaSetDevice", e), "E_CUDA");
  void* ptr = nullptr;
  e = cudaMalloc(&ptr, size);
  if (e != cudaSuccess) throw CodedError(env, CudaError("cudaMalloc (exportIpcMemory)", e), "E_CUDA");
  cudaIpcMemHandle_t handle{};
  e = cudaIpcGetMemHandle(&handle, ptr);
  if (e != cudaSuccess) {
    cudaFree(ptr);
    throw CodedError(env, CudaError("cudaIpcGetMemHandle", e), "E_CUDA");
  }
  Napi::Object region = NewRegion(ptr, size, device, true);
  Napi::Uint8Array bytes = Napi::Uint8Array::New(env, sizeof(handle));
  std::memcpy(bytes.Data(), &handle, sizeof(handle));
  region.Set("handle", bytes);
  return region;
}

// openIpcMemHandle(handle, device, byteSize): maps another process's allocation into this one.
Napi::Value OpenIpcMemHandle(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().ByteLength() != sizeof(cudaIpcMemHandle_t))
    throw CodedError(env, "openIpcMemHandle: expected the 64 bytes of a cudaIpcMemHandle_t", "E_INVALID_PARAMETER");
  Napi::TypedArray raw = info[0].As<Napi::TypedArray>();
  int device = DeviceArg(env, info[1]);
  size_t size = SizeArg(env, info[2], "openIpcMemHandle");
  cudaIpcMemHandle_t handle{};
  std::memcpy(&handle, static_cast<uint8_t const*>(raw.ArrayBuffer().Data()) + raw.ByteOffset(), sizeof(handle));
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) throw CodedError(env, CudaError("cudaSetDevice", e), "E_CUDA");
  void* ptr = nullptr;
  e = cudaIpcOpenMemHandle(&ptr, handle, cudaIpcMemLazyEnablePeerAccess);
  if (e != cudaSuccess) throw CodedError(env, CudaError("cudaIpcOpenMemHandle", e), "E_CUDA");
  return NewRegion(ptr, size, device, false);
}

}  // namespace

void InitIpcMemory(Napi::Env env, Napi::Object exports) {
  constructor = new Napi::FunctionReference(Napi::Persistent(IpcMemory::Define(env)));
  Napi::Object rt = exports.Has("runtime") ? exports.Get("runtime").As<Napi::Object>() : Napi::Object::New(env);
  rt.Set("exportIpcMemory", Napi::Function::New(env, ExportIpcMemory, "exportIpcMemory"));
  rt.Set("openIpcMemHandle", Napi::Function::New(env, OpenIpcMemHandle, "openIpcMemHandle"));
  exports.Set("runtime", rt);
}

}  // namespace yqp
