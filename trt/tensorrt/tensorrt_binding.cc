#include "tensorrt_binding.h"

#include "library.h"

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

}  // namespace

void InitTensorRT(Napi::Env env, Napi::Object exports) {
  Napi::Object trt = Napi::Object::New(env);
  trt.Set("compiledVersion", yqp::trt::CompiledVersion());
  trt.Set("load", Napi::Function::New(env, Load, "load"));
  yqp::trt::InitBuild(env, trt);
  yqp::trt::InitEngine(env, trt);
  exports.Set("tensorrt", trt);
}
