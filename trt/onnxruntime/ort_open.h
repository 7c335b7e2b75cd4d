// onnxruntime.open(library, model, options): loads the library and the model (one session, or one per CUDA graph
// batch size) off the JS thread; and the library probes `doctor` reports from.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "onnxruntime/ort_api.h"
#include "onnxruntime/ort_device.h"

namespace yqp::ort {

struct SessionOptions {
  std::string library, model;
  int intraOpThreads = 1, interOpThreads = 1, graphOptimization = 99, logSeverity = 3;
  bool spinning = true;
  bool memoryPattern = true;
  DeviceOptions device;
};

// What open() hands to the Session constructor (via an External).
struct Opened {
  Runtime const* rt = nullptr;
  OrtSession* session = nullptr;         // a CPU session
  std::unique_ptr<DeviceRunner> device;  // or a CUDA one
  std::vector<std::string> inputs, outputs;
  int spinMicroseconds = 0;
  bool taken = false;
};

Napi::Value Open(Napi::CallbackInfo const& info);
// probe(path) -> "" when dlopen can load the library with everything it links, or dlerror's reason.
Napi::Value Probe(Napi::CallbackInfo const& info);
// providers(library) -> Promise<{ version, providers[] }>: the library's version and compiled-in providers.
Napi::Value Providers(Napi::CallbackInfo const& info);

}  // namespace yqp::ort
