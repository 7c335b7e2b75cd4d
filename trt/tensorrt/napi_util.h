// Small readers for option objects coming from TypeScript (which validated them already; these only convert).
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/coded_error.h"

namespace yqp::trt {

inline bool Has(Napi::Object const& o, char const* key) {
  return o.Has(key) && !o.Get(key).IsUndefined() && !o.Get(key).IsNull();
}
inline std::string GetString(Napi::Object const& o, char const* key, std::string const& fallback) {
  return Has(o, key) ? o.Get(key).As<Napi::String>().Utf8Value() : fallback;
}
inline int64_t GetInt(Napi::Object const& o, char const* key, int64_t fallback) {
  return Has(o, key) ? o.Get(key).As<Napi::Number>().Int64Value() : fallback;
}
inline bool GetBool(Napi::Object const& o, char const* key, bool fallback) {
  return Has(o, key) ? o.Get(key).ToBoolean().Value() : fallback;
}
// Copies the bytes of any ArrayBufferView (Buffer, Uint8Array, Float32Array ...).
inline std::vector<uint8_t> BytesOf(Napi::Value v) {
  if (!v.IsTypedArray() && !v.IsDataView() && !v.IsBuffer()) return {};
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer ab = t.ArrayBuffer();
  auto const* base = static_cast<uint8_t const*>(ab.Data()) + t.ByteOffset();
  return std::vector<uint8_t>(base, base + t.ByteLength());
}
inline std::vector<uint8_t> GetBytes(Napi::Object const& o, char const* key) {
  return Has(o, key) ? BytesOf(o.Get(key)) : std::vector<uint8_t>();
}
inline std::vector<int64_t> GetDims(Napi::Value v) {
  std::vector<int64_t> out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  return out;
}
inline Napi::Array DimsToJs(Napi::Env env, std::vector<int64_t> const& dims) {
  Napi::Array a = Napi::Array::New(env, dims.size());
  for (size_t i = 0; i < dims.size(); ++i)
    a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(dims[i])));
  return a;
}
inline Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, std::vector<uint8_t> const& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
}
// An Error with a code our TypeScript side maps onto YqpError: the addon's one helper.
using core::CodedError;

}  // namespace yqp::trt
