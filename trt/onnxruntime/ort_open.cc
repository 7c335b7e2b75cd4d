#include "onnxruntime/ort_open.h"

#include <dlfcn.h>

#include <cstdlib>

#include "core/coded_error.h"

namespace yqp::ort {
namespace {

using core::CodedError;

// How long an idle runner thread polls for the next request before it sleeps (when spinning is on). Measured
// on the 16-core VM: polling 5 ms (through the gaps of a 375/s stream) did not shorten the tail, and lengthened
// onnxruntime's own run time at p99 (BENCHMARKS.md, serving, third session).
constexpr int kRunnerSpinMicroseconds = 200;

// options.device: { kind: 'cuda', id, stream (bigint cudaStream_t), cudaGraph, graphBatchSizes, batchDimension,
// convAlgoSearch, providerDefaults, providerOptions, tensorrt: { fp16, int8, calibrationTable, engineCachePath,
// timingCachePath, minShapes, optShapes, maxShapes }, selection: { pairs: [[scores, rows], ...], minScore, maxRows } }.
DeviceOptions ParseDevice(Napi::Env env, Napi::Object js) {
  DeviceOptions d;
  auto str = [](Napi::Object o, char const* key, std::string fallback) {
    Napi::Value v = o.Get(key);
    return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
  };
  d.cuda = str(js, "kind", "cpu") == "cuda";
  if (!d.cuda) return d;
  Napi::Value id = js.Get("id");
  d.deviceId = id.IsNumber() ? id.As<Napi::Number>().Int32Value() : 0;
  Napi::Value stream = js.Get("stream");
  if (stream.IsBigInt()) {
    bool lossless = false;
    d.stream = reinterpret_cast<void*>(static_cast<uintptr_t>(stream.As<Napi::BigInt>().Uint64Value(&lossless)));
  }
  d.cudaGraph = js.Get("cudaGraph").ToBoolean();
  Napi::Value sizes = js.Get("graphBatchSizes");
  if (sizes.IsArray()) {
    Napi::Array a = sizes.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) d.graphBatchSizes.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  }
  d.dynamicFallback = js.Get("dynamicFallback").ToBoolean();
  d.batchDimension = str(js, "batchDimension", d.batchDimension);
  d.convAlgoSearch = str(js, "convAlgoSearch", d.convAlgoSearch);
  auto pairs = [&](char const* key, std::vector<std::pair<std::string, std::string>>* out) {
    Napi::Value v = js.Get(key);
    if (!v.IsObject()) return;
    Napi::Object o = v.As<Napi::Object>();
    Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).As<Napi::String>();
      out->emplace_back(k, o.Get(k).ToString().Utf8Value());
    }
  };
  pairs("providerDefaults", &d.providerDefaults);
  pairs("providerOptions", &d.providerOptions);
  Napi::Value trt = js.Get("tensorrt");
  if (trt.IsObject()) {
    Napi::Object t = trt.As<Napi::Object>();
    TensorrtOptions& o = d.tensorrt;
    o.enabled = true;
    o.fp16 = t.Get("fp16").ToBoolean();
    o.int8 = t.Get("int8").ToBoolean();
    o.calibrationTable = str(t, "calibrationTable", "");
    o.engineCachePath = str(t, "engineCachePath", "");
    o.timingCachePath = str(t, "timingCachePath", "");
    o.minShapes = str(t, "minShapes", "");
    o.optShapes = str(t, "optShapes", "");
    o.maxShapes = str(t, "maxShapes", "");
  }
  Napi::Value selection = js.Get("selection");
  if (selection.IsObject()) {
    Napi::Object o = selection.As<Napi::Object>();
    Napi::Value list = o.Get("pairs");
    if (list.IsArray()) {
      Napi::Array a = list.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Array pair = a.Get(i).As<Napi::Array>();
        d.selection.pairs.emplace_back(pair.Get(0u).ToString().Utf8Value(), pair.Get(1u).ToString().Utf8Value());
      }
    }
    d.selection.minScore = o.Get("minScore").ToNumber().FloatValue();
    d.selection.maxRows = o.Get("maxRows").ToNumber().Int32Value();
  }
  (void)env;
  return d;
}

// open(library, model, options) -> Promise<External>: loads the library and the model off the JS thread.
class OpenWorker final : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, SessionOptions options)
      : Napi::AsyncWorker(env, "yqp-trt:onnxruntime-open"),
        options_(std::move(options)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::string error;
    Runtime const* rt = LoadRuntime(options_.library, &error);
    if (rt == nullptr) return SetError(error);  // code E_BACKEND: the library, not the model
    Api const& api = rt->api;
    DeviceOptions const& device = options_.device;
    // A CUDA graph session per batch size (batch fixed, so every node can land on the CUDA provider); one
    // session otherwise.
    std::vector<int64_t> batches = device.cuda && device.cudaGraph ? device.graphBatchSizes : std::vector<int64_t>{0};
    if (batches.empty() || (device.cuda && device.cudaGraph && device.dynamicFallback)) batches.push_back(0);
    std::vector<DeviceRunner::Variant> variants;
    std::string e;
    for (int64_t batch : batches) {
      OrtSession* session = nullptr;
      e = CreateSession(rt, batch, &session);
      if (!e.empty()) break;
      variants.push_back({batch, session});
    }
    if (!e.empty()) {
      for (auto& v : variants) api.ReleaseSession(v.session);
      return SetError(e);
    }
    OrtSession* session = variants.front().session;
    opened_ = std::make_unique<Opened>();
    opened_->rt = rt;
    // The runner spins between requests when onnxruntime's pool threads do (a context that has the cores).
    opened_->spinMicroseconds = options_.spinning ? kRunnerSpinMicroseconds : 0;
    size_t inputs = 0, outputs = 0;
    e = api.Take(api.SessionGetInputCount(session, &inputs));
    if (e.empty()) e = api.Take(api.SessionGetOutputCount(session, &outputs));
    for (size_t i = 0; e.empty() && i < inputs + outputs; ++i) {
      char* name = nullptr;
      e = api.Take(i < inputs ? api.SessionGetInputName(session, i, rt->allocator, &name)
                              : api.SessionGetOutputName(session, i - inputs, rt->allocator, &name));
      if (!e.empty()) break;
      (i < inputs ? opened_->inputs : opened_->outputs).push_back(name);
      api.Take(api.AllocatorFree(rt->allocator, name));
    }
    if (!e.empty()) {
      for (auto& v : variants) api.ReleaseSession(v.session);
      opened_.reset();
      return SetError("onnxruntime cannot read the inputs and outputs of " + options_.model + ": " + e);
    }
    if (device.cuda) {
      DeviceOptions d = device;
      d.onnxruntimeGraphs = onnxruntimeGraphs_;
      d.route = route_;
      opened_->device = std::make_unique<DeviceRunner>(rt, d, std::move(variants), opened_->inputs, opened_->outputs);
    } else
      opened_->session = session;
  }

  std::string CreateSession(Runtime const* rt, int64_t batch, OrtSession** session) {
    Api const& api = rt->api;
    OrtSessionOptions* so = nullptr;
    std::string e = api.Take(api.CreateSessionOptions(&so));
    if (e.empty()) e = api.Take(api.SetIntraOpNumThreads(so, options_.intraOpThreads));
    if (e.empty()) e = api.Take(api.SetInterOpNumThreads(so, options_.interOpThreads));
    if (e.empty()) e = api.Take(api.SetSessionGraphOptimizationLevel(so, options_.graphOptimization));
    if (e.empty()) e = api.Take(api.SetSessionLogSeverityLevel(so, options_.logSeverity));
    if (e.empty())
      e = api.Take(api.AddSessionConfigEntry(so, "session.intra_op.allow_spinning", options_.spinning ? "1" : "0"));
    if (e.empty() && !options_.memoryPattern) e = api.Take(api.DisableMemPattern(so));
    if (e.empty() && batch > 0)
      e = api.Take(api.AddFreeDimensionOverrideByName(so, options_.device.batchDimension.c_str(), batch));
    // A graph session must have every node on the GPU: a node left on the CPU provider moves data through pinned
    // host memory, which onnxruntime frees at the end of the run (cudaFreeHost), an abort inside a capture. Such
    // a model is refused here (E_CUDA_GRAPH) and the context runs eagerly instead.
    if (e.empty() && options_.device.cuda && options_.device.cudaGraph && batch > 0)
      e = api.Take(api.AddSessionConfigEntry(so, "session.disable_cpu_ep_fallback", "1"));
    bool graphSession = options_.device.cuda && options_.device.cudaGraph && batch > 0;
    AppendResult appended;
    if (e.empty()) {
      e = AppendProviders(rt, so, options_.device, graphSession, &appended);
      if (!e.empty()) code_ = "E_DEVICE_UNAVAILABLE";
    }
    if (e.empty() && options_.device.cuda) route_ = appended.route;
    if (e.empty() && graphSession) {
      char const* experimental = std::getenv("YQP_EXPERIMENTAL_CUDA_GRAPH");
      if (appended.onnxruntimeGraph) {
        onnxruntimeGraphs_ = true;
      } else if (experimental == nullptr || std::string(experimental) != "1") {
        code_ = "E_CUDA_GRAPH";
        e = "CUDA graphs need onnxruntime's own capture (enable_cuda_graph), which the " + appended.route +
            " route to this onnxruntime's CUDA provider does not take; capturing around its run instead is "
            "experimental (cudaFreeHost inside a capture aborted the process): YQP_EXPERIMENTAL_CUDA_GRAPH=1";
      }
    }
    if (e.empty()) {
      e = api.Take(api.CreateSession(rt->env, options_.model.c_str(), so, session));
      if (!e.empty()) {
        // A graph session onnxruntime refuses (a node off the CUDA provider, no capture): the context runs eagerly.
        code_ = graphSession ? "E_CUDA_GRAPH" : "E_MODEL_FILE";
        e = "onnxruntime cannot load " + options_.model + (batch > 0 ? " at batch " + std::to_string(batch) : "") +
            ": " + e;
      }
    }
    if (so != nullptr) api.ReleaseSessionOptions(so);
    return e;
  }

  void OnOK() override {
    Napi::Env env = Env();
    // The External owns the Opened until a Session takes the session out of it.
    auto external = Napi::External<Opened>::New(env, opened_.release(), [](Napi::Env, Opened* o) {
      if (!o->taken && o->session != nullptr) o->rt->api.ReleaseSession(o->session);
      delete o;  // an untaken DeviceRunner releases its sessions
    });
    deferred_.Resolve(external);
  }
  void OnError(Napi::Error const& e) override { deferred_.Reject(CodedError(Env(), e.Message(), code_).Value()); }

 private:
  SessionOptions options_;
  char const* code_ = "E_BACKEND";
  std::string route_;
  bool onnxruntimeGraphs_ = false;
  std::unique_ptr<Opened> opened_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

Napi::Value Open(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString() || !info[2].IsObject())
    throw Napi::TypeError::New(env, "Expected open(libraryPath: string, modelPath: string, options: object)");
  SessionOptions o;
  o.library = info[0].As<Napi::String>();
  o.model = info[1].As<Napi::String>();
  Napi::Object js = info[2].As<Napi::Object>();
  auto integer = [&](char const* key, int fallback) {
    Napi::Value v = js.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
  };
  o.intraOpThreads = integer("intraOpThreads", 1);
  o.interOpThreads = integer("interOpThreads", 1);
  o.graphOptimization = integer("graphOptimization", 99);
  o.logSeverity = integer("logSeverity", 3);
  o.spinning = js.Get("spinning").ToBoolean();
  Napi::Value memoryPattern = js.Get("memoryPattern");
  o.memoryPattern = memoryPattern.IsBoolean() ? memoryPattern.As<Napi::Boolean>().Value() : true;
  if (js.Get("device").IsObject()) o.device = ParseDevice(env, js.Get("device").As<Napi::Object>());
  auto* worker = new OpenWorker(env, std::move(o));
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value Probe(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "Expected probe(path: string)");
  std::string path = info[0].As<Napi::String>();
  // RTLD_LAZY: every library it needs must be found, but no symbol is bound yet; RTLD_NOLOAD is not used so a
  // library onnxruntime would load later is checked the same way.
  void* lib = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) {
    char const* e = dlerror();
    return Napi::String::New(env, e != nullptr ? e : "dlopen failed");
  }
  dlclose(lib);
  return Napi::String::New(env, "");
}

namespace {
class ProvidersWorker final : public Napi::AsyncWorker {
 public:
  ProvidersWorker(Napi::Env env, std::string library)
      : Napi::AsyncWorker(env, "yqp-trt:onnxruntime-providers"),
        library_(std::move(library)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::string error;
    Runtime const* rt = LoadRuntime(library_, &error);
    if (rt == nullptr) return SetError(error);
    version_ = rt->api.version;
    providers_ = AvailableProviders(rt, &error);
    if (!error.empty()) SetError(error);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", version_);
    Napi::Array list = Napi::Array::New(env, providers_.size());
    for (size_t i = 0; i < providers_.size(); ++i) list.Set(static_cast<uint32_t>(i), providers_[i]);
    o.Set("providers", list);
    deferred_.Resolve(o);
  }
  void OnError(Napi::Error const& e) override { deferred_.Reject(CodedError(Env(), e.Message(), "E_BACKEND").Value()); }

 private:
  std::string library_, version_;
  std::vector<std::string> providers_;
  Napi::Promise::Deferred deferred_;
};
}  // namespace

Napi::Value Providers(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "Expected providers(library: string)");
  auto* worker = new ProvidersWorker(env, info[0].As<Napi::String>());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

}  // namespace yqp::ort
