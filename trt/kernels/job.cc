#include "kernels/job.h"

#include <algorithm>

namespace yqp::kernels {

std::string CudaMessage(char const* what, cudaError_t err) {
  return std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

uint64_t ToPtr(Napi::Value v) {
#ifdef YQP_KERNELS_WITH_CORE
  yqp::core::JsBlock block;
  if (yqp::core::UnwrapBlock(v, &block)) return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(block.ptr));
#endif
  if (v.IsObject() && v.As<Napi::Object>().Get("ptr").IsBigInt()) return ToPtr(v.As<Napi::Object>().Get("ptr"));
  if (v.IsBigInt()) {
    bool lossless = false;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
  throw Napi::TypeError::New(v.Env(), "expected a device pointer (BigInt)");
}

int32_t Int(Napi::Object const& o, char const* key, int32_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

int64_t Int64(Napi::Object const& o, char const* key, int64_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

void Floats(Napi::Object const& o, char const* key, float* out, uint32_t n) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != n)
    throw Napi::TypeError::New(o.Env(), std::string("expected ") + std::to_string(n) + " numbers for " + key);
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < n; ++i) out[i] = a.Get(i).As<Napi::Number>().FloatValue();
}

HostView ViewOf(Napi::Value v) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), "expected a typed array");
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  return {static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), t.ByteLength()};
}

Job ParseJob(Napi::Object job, bool hostFrames, bool hostOut) {
  Napi::Env env = job.Env();
  Job j;
  Napi::Object s = job.Get("spec").As<Napi::Object>();
  j.spec.width = Int(s, "width");
  j.spec.height = Int(s, "height");
  j.spec.nchw = s.Get("nchw").ToBoolean() ? 1 : 0;
  j.spec.fp16 = s.Get("fp16").ToBoolean() ? 1 : 0;
  j.spec.bgr = s.Get("bgr").ToBoolean() ? 1 : 0;
  j.spec.filter = Int(s, "filter");
  j.spec.border = Int(s, "border");
  Floats(s, "a", j.spec.a, 3);
  Floats(s, "b", j.spec.b, 3);
  j.spec.padValue = s.Get("padValue").IsNumber() ? s.Get("padValue").As<Napi::Number>().FloatValue() : 0.f;
  if (j.spec.width <= 0 || j.spec.height <= 0)
    throw core::CodedError(env, "spec.width/height must be positive", "E_ARGUMENT");

  Napi::Array frames = job.Get("frames").As<Napi::Array>();
  for (uint32_t f = 0; f < frames.Length(); ++f) {
    if (hostFrames)
      j.hostFrames.push_back(ViewOf(frames.Get(f)));
    else
      j.deviceFrames.push_back(ToPtr(frames.Get(f)));
  }
  size_t nFrames = frames.Length();
  Napi::Array items = job.Get("items").As<Napi::Array>();
  for (uint32_t i = 0; i < items.Length(); ++i) {
    Napi::Object o = items.Get(i).As<Napi::Object>();
    SampleItem it{};
    int32_t frame = Int(o, "frame");
    it.width = Int(o, "width");
    it.height = Int(o, "height");
    it.format = Int(o, "format");
    it.pitch = Int(o, "pitch");
    it.uvPitch = Int(o, "uvPitch");
    it.outIndex = Int(o, "outIndex");
    Floats(o, "m", it.m, 6);
    float rect[4];
    Floats(o, "rect", rect, 4);
    it.x0 = static_cast<int32_t>(rect[0]);
    it.y0 = static_cast<int32_t>(rect[1]);
    it.x1 = static_cast<int32_t>(rect[2]);
    it.y1 = static_cast<int32_t>(rect[3]);
    int64_t uvOff = Int64(o, "uvOffset");
    if (frame < 0 || static_cast<size_t>(frame) >= nFrames)
      throw core::CodedError(env, "items[" + std::to_string(i) + "].frame out of range", "E_ARGUMENT");
    if (it.width <= 0 || it.height <= 0 || it.format < kRGB || it.format > kNV12 || it.outIndex < 0)
      throw core::CodedError(env, "items[" + std::to_string(i) + "] has a bad size, format or outIndex", "E_ARGUMENT");
    int bpp = it.format == kNV12 ? 1 : (it.format >= kRGBA ? 4 : 3);
    if (it.pitch < it.width * bpp || (it.format == kNV12 && it.uvPitch < ((it.width + 1) / 2) * 2))
      throw core::CodedError(env, "items[" + std::to_string(i) + "] pitch is smaller than a row", "E_ARGUMENT");
    if (hostFrames && Job::ItemExtent(it, uvOff) > j.hostFrames[frame].bytes)
      throw core::CodedError(env,
                             "frames[" + std::to_string(frame) + "] is smaller than items[" + std::to_string(i) +
                                 "] reads (" + std::to_string(Job::ItemExtent(it, uvOff)) + " bytes)",
                             "E_ARGUMENT");
    j.items.push_back(it);
    j.frameOf.push_back(frame);
    j.uvOffset.push_back(uvOff);
  }
  if (job.Has("stream")) {
    Napi::Value st = job.Get("stream");
    if (!st.IsUndefined() && !st.IsNull()) j.stream = ToPtr(st);
  }
  size_t needed = j.NeededOutBytes();
  if (hostOut) {
    j.hostOut = ViewOf(job.Get("out"));
    if (j.hostOut.bytes < needed)
      throw core::CodedError(
          env, "out holds " + std::to_string(j.hostOut.bytes) + " bytes, the items write " + std::to_string(needed),
          "E_ARGUMENT");
  } else {
    j.deviceOut = ToPtr(job.Get("out"));
    j.outBytes = static_cast<size_t>(Int64(job, "outBytes", 0));
    if (j.outBytes > 0 && j.outBytes < needed)
      throw core::CodedError(
          env, "out holds " + std::to_string(j.outBytes) + " bytes, the items write " + std::to_string(needed),
          "E_ARGUMENT");
  }
  return j;
}

void Check(Napi::Env env, char const* what, cudaError_t err) {
  if (err != cudaSuccess) throw core::CodedError(env, CudaMessage(what, err), "E_NATIVE");
}

}  // namespace yqp::kernels
