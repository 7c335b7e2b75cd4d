// tensorrt.Engine: a plan deserialized once, N contexts each on its own stream, run() staging through pinned
// memory, H2D -> shapes/addresses/enqueueV3 (or graph replay) -> D2H on the context's stream, and the promise
// resolved from the stream's completion. Streams, pooled device/pinned memory, completion and the graph cache are
// the CUDA core's (trt/core); what is here is only the TensorRT call sequence and its bookkeeping.
#include <cstring>
#include <functional>
#include <unordered_set>

#include "core/runtime.h"
#include "engine.h"
#include "memory_order.h"
#include "napi_util.h"
#include "tensorrt_binding.h"

namespace yqp::trt {
namespace {

struct Slot {
  std::unique_ptr<Context> context;
  cudaStream_t stream = nullptr;                     // the engine's StreamPool owns it
  std::vector<std::unique_ptr<core::Lease>> device;  // per tensor, sized from the profiles' max shapes
  std::vector<std::unique_ptr<core::Lease>> pinned;  // per tensor, same sizes
  std::unique_ptr<core::GraphCache> graphs;
  // Keys run once already: TensorRT does shape-dependent setup on the first enqueueV3 of a shape, which must not
  // be what a graph captures, so a key's first run is eager and the core's cache captures from the second.
  std::unordered_set<std::string> seen;
  bool busy = false;
};

class EngineWrap final : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod("describe", &EngineWrap::Describe), InstanceMethod("run", &EngineWrap::Run),
                        InstanceMethod("close", &EngineWrap::Close)});
  }

  explicit EngineWrap(Napi::CallbackInfo const& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsObject())
      throw CodedError(env, "new Engine(plan, options): plan must be a Uint8Array and options an object", "E_ARGUMENT");
    Napi::TypedArray plan = info[0].As<Napi::TypedArray>();
    Napi::Object o = info[1].As<Napi::Object>();
    device_ = static_cast<int>(GetInt(o, "device", 0));
    int64_t contexts = GetInt(o, "contexts", 1);
    std::string strategy = GetString(o, "memoryStrategy", "static");
    graphsEnabled_ = GetBool(o, "cudaGraphs", true);
    MemoryStrategy ms = strategy == "on-profile-change" ? MemoryStrategy::kOnProfileChange
                        : strategy == "user-managed"    ? MemoryStrategy::kUserManaged
                                                        : MemoryStrategy::kStatic;
    strategy_ = ms;
    std::string error;
    auto const* bytes = static_cast<uint8_t const*>(plan.ArrayBuffer().Data()) + plan.ByteOffset();
    engine_ = Engine::Deserialize(bytes, plan.ByteLength(), device_, GetBool(o, "allowHostCode", false), &error);
    if (!engine_) throw CodedError(env, error, "E_BACKEND");
    try {
      if (ms == MemoryStrategy::kUserManaged) {
        shared_ = core::BufferPool::Device(device_)->Acquire(static_cast<size_t>(engine_->deviceMemoryBytes()));
        order_ = MemoryOrder::Create(&error);
        if (!order_) throw CodedError(env, error, "E_NATIVE");
      }
      streams_ = std::make_unique<core::StreamPool>(device_, static_cast<int>(contexts));
      std::vector<EngineTensor> const& tensors = engine_->tensors();
      for (int64_t i = 0; i < contexts; ++i) {
        Slot slot;
        slot.stream = streams_->At(static_cast<size_t>(i));
        slot.context = Context::Create(*engine_, ms, shared_ ? shared_->data() : nullptr, &error);
        std::vector<size_t> sizes;
        if (slot.context && !slot.context->MeasureMaxBytes(slot.stream, &sizes, &error)) slot.context.reset();
        if (!slot.context) throw CodedError(env, error, "E_BACKEND");
        for (size_t t = 0; t < tensors.size(); ++t) {
          slot.device.push_back(core::BufferPool::Device(device_)->Acquire(sizes[t]));
          slot.pinned.push_back(core::BufferPool::Pinned()->Acquire(sizes[t]));
        }
        slot.graphs = std::make_unique<core::GraphCache>();
        slot.graphs->set_enabled(graphsEnabled_);
        slots_.push_back(std::move(slot));
      }
    } catch (core::CudaException const& e) {
      throw CodedError(env, e.what(), "E_NATIVE");
    }
  }

 private:
  Napi::Value Describe(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    if (!engine_) throw CodedError(env, "the engine is closed", "E_CLOSED");
    Napi::Object out = Napi::Object::New(env);
    std::vector<EngineTensor> const& tensors = engine_->tensors();
    Napi::Array io = Napi::Array::New(env, tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("name", tensors[i].name);
      t.Set("dtype", DataTypeName(tensors[i].dataType));
      t.Set("dims", DimsToJs(env, tensors[i].dims));
      t.Set("input", tensors[i].input);
      io.Set(static_cast<uint32_t>(i), t);
    }
    out.Set("io", io);
    Napi::Array profiles = Napi::Array::New(env);
    for (int32_t p = 0; p < engine_->profiles(); ++p) {
      Napi::Object byInput = Napi::Object::New(env);
      for (EngineTensor const& t : tensors) {
        if (!t.input) continue;
        Napi::Object r = Napi::Object::New(env);
        r.Set("min", DimsToJs(env, t.min[static_cast<size_t>(p)]));
        r.Set("opt", DimsToJs(env, t.opt[static_cast<size_t>(p)]));
        r.Set("max", DimsToJs(env, t.max[static_cast<size_t>(p)]));
        byInput.Set(t.name, r);
      }
      profiles.Set(static_cast<uint32_t>(p), byInput);
    }
    out.Set("profiles", profiles);
    out.Set("deviceMemoryBytes", Napi::Number::New(env, static_cast<double>(engine_->deviceMemoryBytes())));
    return out;
  }

  // run(context, { name: { data, dims } | { devicePtr: bigint, dims } }) -> Promise<{ name: { data, dims, dtype } }>
  Napi::Value Run(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    auto fail = [&](std::string const& message, char const* code) {
      deferred.Reject(CodedError(env, message, code).Value());
      return deferred.Promise();
    };
    if (!engine_) return fail("the engine is closed", "E_CLOSED");
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsObject())
      return fail("run(context, inputs): context must be a number and inputs an object", "E_ARGUMENT");
    int64_t index = info[0].As<Napi::Number>().Int64Value();
    if (index < 0 || index >= static_cast<int64_t>(slots_.size()))
      return fail("context " + std::to_string(index) + " does not exist (0.." + std::to_string(slots_.size() - 1) + ")",
                  "E_ARGUMENT");
    Slot& slot = slots_[static_cast<size_t>(index)];
    // The scheduler hands a context one batch at a time; a second one here would overwrite its staging buffers.
    if (slot.busy) return fail("context " + std::to_string(index) + " is still running", "E_BACKEND");
    Napi::Object inputs = info[1].As<Napi::Object>();
    std::vector<EngineTensor> const& tensors = engine_->tensors();
    std::vector<std::vector<int64_t>> shapes;
    std::vector<void*> addresses(tensors.size(), nullptr);
    cudaStream_t stream = slot.stream;
    std::string error;

    for (size_t t = 0; t < tensors.size(); ++t) {
      if (!tensors[t].input) continue;
      if (!inputs.Has(tensors[t].name)) return fail("input " + tensors[t].name + " is missing", "E_INPUT_MISSING");
      Napi::Object feed = inputs.Get(tensors[t].name).As<Napi::Object>();
      shapes.push_back(GetDims(feed.Get("dims")));
    }
    int32_t profile = engine_->PickProfile(shapes, &error);
    if (profile < 0) return fail(error, "E_SHAPE");

    // Stage every input before touching the context, so a bad input leaves the context as it was.
    size_t k = 0;
    for (size_t t = 0; t < tensors.size(); ++t) {
      if (!tensors[t].input) continue;
      Napi::Object feed = inputs.Get(tensors[t].name).As<Napi::Object>();
      size_t bytes = tensors[t].elementBytes;
      for (int64_t d : shapes[k]) bytes *= static_cast<size_t>(d);
      ++k;
      if (feed.Has("devicePtr")) {
        // GPU pipeline input: already on the device (the core's preprocessing wrote it), bound as is.
        bool lossless = false;
        uint64_t ptr = feed.Get("devicePtr").As<Napi::BigInt>().Uint64Value(&lossless);
        addresses[t] = reinterpret_cast<void*>(static_cast<uintptr_t>(ptr));
        continue;
      }
      Napi::Value data = feed.Get("data");
      if (!data.IsTypedArray()) return fail("input " + tensors[t].name + " data must be a typed array", "E_DTYPE");
      Napi::TypedArray view = data.As<Napi::TypedArray>();
      if (view.ByteLength() != bytes)
        return fail("input " + tensors[t].name + " has " + std::to_string(view.ByteLength()) + " bytes, shape " +
                        ShapeString(shapes[k - 1]) + " of " + DataTypeName(tensors[t].dataType) + " needs " +
                        std::to_string(bytes),
                    "E_SHAPE");
      std::memcpy(slot.pinned[t]->data(), static_cast<uint8_t const*>(view.ArrayBuffer().Data()) + view.ByteOffset(),
                  bytes);
      cudaError_t e =
          cudaMemcpyAsync(slot.device[t]->data(), slot.pinned[t]->data(), bytes, cudaMemcpyHostToDevice, stream);
      if (e != cudaSuccess) return fail(core::CudaError("cudaMemcpyAsync (input)", e), "E_NATIVE");
      addresses[t] = slot.device[t]->data();
    }

    Context& ctx = *slot.context;
    int32_t previousProfile = ctx.profile();
    if (!ctx.SetShapes(profile, shapes, stream, &error)) return fail(error, "E_BACKEND");
    // With on-profile-change memory TensorRT may move its scratch memory, which captured graphs have baked in.
    if (strategy_ == MemoryStrategy::kOnProfileChange && previousProfile != profile) {
      slot.graphs->Clear();
      slot.seen.clear();
    }
    std::vector<std::vector<int64_t>> outShapes(tensors.size());
    // A graph replays exactly the captured kernels: key it by profile, every input shape and every address.
    std::string key = "p" + std::to_string(profile);
    for (auto const& shape : shapes) key += ":" + ShapeString(shape);
    for (size_t t = 0; t < tensors.size(); ++t) {
      if (!tensors[t].input) {
        if (!ctx.OutputShape(t, &outShapes[t], &error)) return fail(error, "E_BACKEND");
        addresses[t] = slot.device[t]->data();
      }
      if (!ctx.SetAddress(t, addresses[t], &error)) return fail(error, "E_BACKEND");
      key += "@" + std::to_string(reinterpret_cast<uintptr_t>(addresses[t]));
    }
    if (order_ && !order_->Before(stream, &error)) return fail(error, "E_NATIVE");
    auto enqueue = [&ctx](cudaStream_t s, std::string* err) { return ctx.Enqueue(s, err); };
    // After a profile switch TensorRT updates layer resources on the next enqueueV3, and the first run of a shape
    // does shape-dependent setup: both run eagerly, later runs go through the core's graph cache.
    bool eager = !graphsEnabled_ || previousProfile != profile || slot.seen.insert(key).second;
    bool ok = eager ? enqueue(stream, &error) : slot.graphs->Run(key, stream, enqueue, &error);
    if (!ok) return fail(error, "E_BACKEND");
    if (order_ && !order_->After(stream, &error)) return fail(error, "E_NATIVE");

    std::vector<size_t> outBytes(tensors.size(), 0);
    for (size_t t = 0; t < tensors.size(); ++t) {
      if (tensors[t].input) continue;
      size_t bytes = tensors[t].elementBytes;
      for (int64_t d : outShapes[t]) bytes *= static_cast<size_t>(d);
      outBytes[t] = bytes;
      cudaError_t e =
          cudaMemcpyAsync(slot.pinned[t]->data(), slot.device[t]->data(), bytes, cudaMemcpyDeviceToHost, stream);
      if (e != cudaSuccess) return fail(core::CudaError("cudaMemcpyAsync (output)", e), "E_NATIVE");
    }

    slot.busy = true;
    Napi::ObjectReference self = Napi::Persistent(Value());  // keep the engine alive until completion
    auto selfPtr = std::make_shared<Napi::ObjectReference>(std::move(self));
    size_t slotIndex = static_cast<size_t>(index);
    core::OnStreamComplete(
        env, stream,
        [this, selfPtr, slotIndex, deferred, outShapes, outBytes](Napi::Env e, std::string const& streamError) {
          Slot& s = slots_[slotIndex];
          s.busy = false;
          if (!streamError.empty()) {
            deferred.Reject(
                CodedError(e, engine_ ? engine_->logger().WithLastError(streamError) : streamError, "E_NATIVE")
                    .Value());
            return;
          }
          std::vector<EngineTensor> const& ts = engine_->tensors();
          Napi::Object out = Napi::Object::New(e);
          for (size_t t = 0; t < ts.size(); ++t) {
            if (ts[t].input) continue;
            Napi::Object o = Napi::Object::New(e);
            // Copy out of pinned memory: the next run on this context reuses it.
            o.Set("data", ToBuffer(e, std::vector<uint8_t>(static_cast<uint8_t*>(s.pinned[t]->data()),
                                                           static_cast<uint8_t*>(s.pinned[t]->data()) + outBytes[t])));
            o.Set("dims", DimsToJs(e, outShapes[t]));
            o.Set("dtype", DataTypeName(ts[t].dataType));
            out.Set(ts[t].name, o);
          }
          deferred.Resolve(out);
        });
    return deferred.Promise();
  }

  Napi::Value Close(Napi::CallbackInfo const& info) {
    for (Slot const& s : slots_)
      if (s.busy) throw CodedError(info.Env(), "close(): a run is still in flight", "E_BACKEND");
    slots_.clear();  // contexts before the engine, as TensorRT requires
    streams_.reset();
    order_.reset();
    shared_.reset();
    engine_.reset();
    return info.Env().Undefined();
  }

  int device_ = 0;
  bool graphsEnabled_ = true;
  MemoryStrategy strategy_ = MemoryStrategy::kStatic;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<core::Lease> shared_;
  std::unique_ptr<MemoryOrder> order_;
  std::unique_ptr<core::StreamPool> streams_;
  std::vector<Slot> slots_;  // destroyed first: contexts before the engine
};

}  // namespace

void InitEngine(Napi::Env env, Napi::Object target) { target.Set("Engine", EngineWrap::Define(env)); }

}  // namespace yqp::trt
