// tensorrt.build(options, { onProgress, pullBatch }) -> { promise, cancel }.
// The build runs in an AsyncWorker whose Execute touches no N-API: options are copied into a BuildOptions struct
// first, progress goes out through one ThreadSafeFunction and calibration batches come in through another.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "builder.h"
#include "library.h"
#include "napi_util.h"
#include "tensorrt_binding.h"

namespace yqp::trt {
namespace {

// Calibration batches pulled from JavaScript with bounded prefetch. The builder thread waits on a condition
// variable while JavaScript answers asynchronously, so a busy event loop only delays it, never deadlocks it.
struct BatchState {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::vector<std::vector<uint8_t>>> queue;
  size_t inFlight = 0;
  bool done = false;
  std::string error;
  std::shared_ptr<std::atomic<bool>> cancelled;
};

class JsBatchSource final : public BatchSource {
 public:
  JsBatchSource(Napi::ThreadSafeFunction tsfn, std::shared_ptr<BatchState> state, size_t prefetch)
      : tsfn_(std::move(tsfn)), state_(std::move(state)), prefetch_(prefetch == 0 ? 1 : prefetch) {}

  bool Next(std::vector<std::vector<uint8_t>>* inputs, std::string* error) override {
    std::unique_lock<std::mutex> lock(state_->mutex);
    for (;;) {
      if (state_->cancelled->load()) return false;
      if (!state_->error.empty()) {
        *error = state_->error;
        return false;
      }
      // Keep up to `prefetch` batches requested or waiting so decoding overlaps TensorRT's calibration passes.
      while (!state_->done && state_->queue.size() + state_->inFlight < prefetch_) {
        ++state_->inFlight;
        std::shared_ptr<BatchState> state = state_;
        napi_status s = tsfn_.NonBlockingCall([state](Napi::Env env, Napi::Function pull) { Pull(env, pull, state); });
        if (s != napi_ok) {
          --state_->inFlight;
          state_->done = true;
        }
      }
      if (!state_->queue.empty()) {
        *inputs = std::move(state_->queue.front());
        state_->queue.pop_front();
        return true;
      }
      if (state_->done && state_->inFlight == 0) return false;
      // Wake periodically to notice Ctrl-C even when JavaScript never answers.
      state_->ready.wait_for(lock, std::chrono::milliseconds(100));
    }
  }

 private:
  static void Settle(std::shared_ptr<BatchState> const& state, std::vector<std::vector<uint8_t>>* batch,
                     std::string const& error, bool end) {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->inFlight > 0) --state->inFlight;
    if (!error.empty() && state->error.empty()) state->error = error;
    if (end) state->done = true;
    if (batch != nullptr) state->queue.push_back(std::move(*batch));
    state->ready.notify_all();
  }

  static void Accept(Napi::Value value, std::shared_ptr<BatchState> const& state) {
    if (value.IsNull() || value.IsUndefined()) return Settle(state, nullptr, "", true);
    if (!value.IsArray()) return Settle(state, nullptr, "pullBatch must resolve to an array of typed arrays or null", true);
    Napi::Array a = value.As<Napi::Array>();
    std::vector<std::vector<uint8_t>> batch;
    for (uint32_t i = 0; i < a.Length(); ++i) batch.push_back(BytesOf(a.Get(i)));
    Settle(state, &batch, "", false);
  }

  static void Pull(Napi::Env env, Napi::Function pull, std::shared_ptr<BatchState> state) {
    try {
      Napi::Value r = pull.Call({});
      if (!r.IsPromise()) return Accept(r, state);
      Napi::Object promise = r.As<Napi::Object>();
      Napi::Function onOk = Napi::Function::New(env, [state](Napi::CallbackInfo const& info) {
        Accept(info.Length() > 0 ? info[0] : info.Env().Undefined(), state);
      });
      Napi::Function onErr = Napi::Function::New(env, [state](Napi::CallbackInfo const& info) {
        std::string message = "the calibration loader failed";
        if (info.Length() > 0 && info[0].IsObject()) {
          Napi::Value m = info[0].As<Napi::Object>().Get("message");
          if (m.IsString()) message = m.As<Napi::String>().Utf8Value();
        }
        Settle(state, nullptr, message, true);
      });
      promise.Get("then").As<Napi::Function>().Call(promise, {onOk, onErr});
    } catch (Napi::Error const& e) {
      Settle(state, nullptr, e.Message(), true);
    }
  }

  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<BatchState> state_;
  size_t prefetch_;
};

class BuildWorker final : public Napi::AsyncWorker {
 public:
  BuildWorker(Napi::Env env, BuildOptions options, Napi::Value onProgress, Napi::Value pullBatch, size_t prefetch,
              std::shared_ptr<std::atomic<bool>> cancelled)
      : Napi::AsyncWorker(env, "yqp-trt:build"),
        deferred_(Napi::Promise::Deferred::New(env)),
        options_(std::move(options)),
        cancelled_(std::move(cancelled)),
        batchState_(std::make_shared<BatchState>()),
        prefetch_(prefetch) {
    batchState_->cancelled = cancelled_;
    if (onProgress.IsFunction()) {
      progress_ = Napi::ThreadSafeFunction::New(env, onProgress.As<Napi::Function>(), "yqp-trt:build-progress", 0, 1);
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
    if (hasProgress_) {
      Napi::ThreadSafeFunction tsfn = progress_;
      auto last = std::make_shared<std::chrono::steady_clock::time_point>();
      callback = [tsfn, last](ProgressEvent const& ev) mutable {
        // Tactic steps come by the thousand; a progress bar needs a few per second.
        auto now = std::chrono::steady_clock::now();
        if (ev.kind == ProgressEvent::Kind::kStep && now - *last < std::chrono::milliseconds(100)) return;
        *last = now;
        auto* copy = new ProgressEvent(ev);
        napi_status s = tsfn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, ProgressEvent* e) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("kind", e->kind == ProgressEvent::Kind::kStart ? "start"
                        : e->kind == ProgressEvent::Kind::kStep ? "step"
                                                                : "finish");
          o.Set("phase", e->phase);
          if (!e->parent.empty()) o.Set("parent", e->parent);
          o.Set("step", e->step);
          o.Set("steps", e->steps);
          delete e;
          fn.Call({o});
        });
        if (s != napi_ok) delete copy;
      };
    }
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
    deferred_.Resolve(out);
  }

  void OnError(Napi::Error const& e) override {
    Release();
    deferred_.Reject(CodedError(Env(), e.Message(), failure_.c_str()).Value());
  }

 private:
  void Release() {
    if (hasProgress_) progress_.Release();
    if (hasBatches_) batches_.Release();
    hasProgress_ = hasBatches_ = false;
  }

  Napi::Promise::Deferred deferred_;
  BuildOptions options_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::shared_ptr<BatchState> batchState_;
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
  if (info.Length() < 1 || !info[0].IsObject()) throw CodedError(env, "build(options, callbacks): options must be an object", "E_ARGUMENT");
  BuildOptions options = ReadOptions(info[0].As<Napi::Object>());
  Napi::Object callbacks = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
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
