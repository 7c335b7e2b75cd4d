// exports.onnxruntime: open(library, model, options) and Session (run, close), over the libonnxruntime of
// onnxruntime-node; see ort_session.cc.
#pragma once

#include <napi.h>

namespace yqp::ort {

void InitOnnxruntime(Napi::Env env, Napi::Object exports);

}  // namespace yqp::ort
