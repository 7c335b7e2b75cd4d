// tensorrt.build(options, { onProgress, pullBatch }) -> { promise, cancel }.
// The build runs in an AsyncWorker whose Execute touches no N-API: options are copied into a BuildOptions struct
// first, progress goes out through one ThreadSafeFunction and calibration batches come in through another.
#include "builder.h"
#include "js_batch_source.h"
#include "library.h"
#include "napi_util.h"
#include "progress_js.h"
#include "tensorrt_binding.h"

namespace yqp::trt {
namespace {

class BuildWorker final : public Napi::AsyncWorker {
 public:
  BuildWorker(Napi::Env env, BuildOptions options, Napi::Value onProgress, Napi::Value pullBatch, size_t prefetch,
              std::shared_ptr<std::atomic<bool>> cancelled)
      : Napi::AsyncWorker(env, "yqp-trt:build"),
        deferred_(Napi::Promise::Deferred::New(env)),
        options_(std::move(options)),
        cancelled_(std::move(cancelled)),
        batchState_(std::make_shared<BatchState>()),
        drain_(std::make_shared<AfterDrain>()),
        prefetch_(prefetch) {
    batchState_->cancelled = cancelled_;  // Ctrl-C also ends the calibration wait
    if (onProgress.IsFunction()) {
      progress_ = MakeProgressTsfn(env, onProgress.As<Napi::Function>(), "yqp-trt:build-progress", drain_);
      hasProgress_ = true;
    }
    if (pullBatch.IsFunction()) {
      batches_ = Napi::ThreadSafeFunction::New(env, pullBatch.As<Napi::Function>(), "yqp-trt:calibration", 0, 1);
      hasBatches_ = true;
    }
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    ProgressMonitor::Callback callback;
    if (hasProgress_) callback = ProgressToJs(progress_);
    ProgressMonitor monitor(callback, cancelled_);
    std::unique_ptr<JsBatchSource> source;
    if (hasBatches_) source = std::make_unique<JsBatchSource>(batches_, batchState_, prefetch_);
    std::string error;
    if (!BuildEngine(options_, logger_, &monitor, source.get(), cancelled_, &result_, &error)) {
      failure_ = result_.cancelled ? "E_CANCELLED" : "E_NATIVE";
      SetError(error);
    }
  }

  void OnOK() override {
    Release();
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("plan", ToBuffer(env, result_.plan));
    out.Set("timingCache", ToBuffer(env, result_.timingCache));
    if (!result_.calibrationCache.empty()) out.Set("calibrationCache", ToBuffer(env, result_.calibrationCache));
    out.Set("calibrationBatches", Napi::Number::New(env, static_cast<double>(result_.calibrationBatches)));
    Napi::Array io = Napi::Array::New(env, result_.io.size());
    for (size_t i = 0; i < result_.io.size(); ++i) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("name", result_.io[i].name);
      t.Set("dtype", result_.io[i].dtype);
      t.Set("dims", DimsToJs(env, result_.io[i].dims));
      t.Set("input", result_.io[i].input);
      io.Set(static_cast<uint32_t>(i), t);
    }
    out.Set("io", io);
    Napi::Array log = Napi::Array::New(env, result_.log.size());
    for (size_t i = 0; i < result_.log.size(); ++i) log.Set(static_cast<uint32_t>(i), result_.log[i]);
    out.Set("log", log);
    out.Set("version", result_.libVersion);
    out.Set("gpu", result_.gpuName);
    out.Set("sm", result_.sm);
    Settle(std::make_shared<Napi::ObjectReference>(Napi::Persistent(out)), true);
  }

  void OnError(Napi::Error const& e) override {
    Release();
    Settle(std::make_shared<Napi::ObjectReference>(
               Napi::Persistent(CodedError(Env(), e.Message(), failure_.c_str()).Value().As<Napi::Object>())),
           false);
  }

 private:
  void Release() {
    if (hasBatches_) batches_.Release();
    hasBatches_ = false;
  }

  // Settles after the progress ThreadSafeFunction delivered its last event (its final "finish").
  void Settle(std::shared_ptr<Napi::ObjectReference> value, bool ok) {
    Napi::Promise::Deferred deferred = deferred_;
    auto settle = [deferred, value, ok](Napi::Env) {
      if (ok)
        deferred.Resolve(value->Value());
      else
        deferred.Reject(value->Value());
    };
    if (!hasProgress_) return settle(Env());
    hasProgress_ = false;
    progress_.Release();
    drain_->Then(Env(), settle);
  }

  Napi::Promise::Deferred deferred_;
  BuildOptions options_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::shared_ptr<BatchState> batchState_;
  std::shared_ptr<AfterDrain> drain_;
  size_t prefetch_;
  Napi::ThreadSafeFunction progress_;
  Napi::ThreadSafeFunction batches_;
  bool hasProgress_ = false;
  bool hasBatches_ = false;
  Logger logger_;
  BuildResult result_;
  std::string failure_ = "E_NATIVE";
};

BuildOptions ReadOptions(Napi::Object o) {
  BuildOptions b;
  b.onnxPath = GetString(o, "onnxPath", "");
  if (Has(o, "profiles")) {
    Napi::Array profiles = o.Get("profiles").As<Napi::Array>();
    for (uint32_t p = 0; p < profiles.Length(); ++p) {
      Profile profile;
      Napi::Object byInput = profiles.Get(p).As<Napi::Object>();
      Napi::Array names = byInput.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); ++i) {
        std::string name = names.Get(i).As<Napi::String>().Utf8Value();
        Napi::Object range = byInput.Get(name).As<Napi::Object>();
        profile.push_back({name, GetDims(range.Get("min")), GetDims(range.Get("opt")), GetDims(range.Get("max"))});
      }
      b.profiles.push_back(std::move(profile));
    }
  }
  b.precision = GetString(o, "precision", "fp32");
  b.stronglyTyped = GetBool(o, "stronglyTyped", false);
  b.int8Calibrator = GetBool(o, "int8Calibrator", false);
  b.calibrationProfile = static_cast<int>(GetInt(o, "calibrationProfile", 0));
  b.calibrationCache = GetBytes(o, "calibrationCache");
  b.timingCache = GetBytes(o, "timingCache");
  b.ignoreTimingCacheMismatch = GetBool(o, "ignoreTimingCacheMismatch", false);
  b.optimizationLevel = static_cast<int>(GetInt(o, "optimizationLevel", -1));
  b.workspaceBytes = GetInt(o, "workspaceBytes", -1);
  b.tacticSharedMemoryBytes = GetInt(o, "tacticSharedMemoryBytes", -1);
  b.versionCompatible = GetBool(o, "versionCompatible", false);
  b.excludeLeanRuntime = GetBool(o, "excludeLeanRuntime", false);
  b.hardwareCompatibility = GetString(o, "hardwareCompatibility", "none");
  b.maxAuxStreams = static_cast<int>(GetInt(o, "maxAuxStreams", -1));
  b.tf32 = GetBool(o, "tf32", true);
  b.sparseWeights = GetBool(o, "sparseWeights", false);
  b.maxThreads = static_cast<int>(GetInt(o, "maxThreads", -1));
  b.device = static_cast<int>(GetInt(o, "device", 0));
  return b;
}

Napi::Value Build(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    throw CodedError(env, "build(options, callbacks): options must be an object", "E_ARGUMENT");
  BuildOptions options = ReadOptions(info[0].As<Napi::Object>());
  Napi::Object callbacks =
      info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* worker = new BuildWorker(env, std::move(options), callbacks.Get("onProgress"), callbacks.Get("pullBatch"),
                                 static_cast<size_t>(GetInt(callbacks, "prefetch", 4)), cancelled);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", worker->Promise());
  handle.Set("cancel", Napi::Function::New(env, [cancelled](Napi::CallbackInfo const&) { cancelled->store(true); }));
  worker->Queue();
  return handle;
}

}  // namespace

void InitBuild(Napi::Env env, Napi::Object target) { target.Set("build", Napi::Function::New(env, Build, "build")); }

}  // namespace yqp::trt
