// N-API surface of the runtime core: StreamPool, DeviceBuffer/PinnedBuffer (pooled), copy with a Promise settled
// from the stream (never a synchronize on the JS thread), pool statistics, and a GraphCache test surface.
#include "core/runtime.h"

#include <memory>
#include <string>

namespace yqp::core {

void* PtrFromValue(Napi::Value v, char const* what) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (v.IsBigInt()) {
    bool lossless = true;
    return reinterpret_cast<void*>(static_cast<uintptr_t>(v.As<Napi::BigInt>().Uint64Value(&lossless)));
  }
  if (v.IsObject() && v.As<Napi::Object>().Has("handle")) return PtrFromValue(v.As<Napi::Object>().Get("handle"), what);
  throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a BigInt handle, got " +
                                          (v.IsNumber()   ? "a number"
                                           : v.IsString() ? "a string"
                                                          : "another value"));
}

Napi::Value PtrToValue(Napi::Env env, void const* p) {
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

namespace {

Napi::Error Coded(Napi::Env env, std::string const& message, char const* code) {
  return CodedError(env, message, code);
}

// One pooled block lent to JS. Shared by the wrap object, the pinned ArrayBuffer and in-flight copies; the block
// goes back to its pool when the last of them lets go, or at dispose() once no copy is in flight.
struct BlockState {
  std::unique_ptr<Lease> lease;
  MemoryKind kind;
  int device;
  napi_env env;
  int pending = 0;
  bool disposed = false;
  int64_t external = 0;  // bytes reported to V8 through AdjustExternalMemory
  ~BlockState() { Drop(); }
  void Drop() {
    if (lease) lease.reset();
    if (external != 0) {
      Napi::MemoryManagement::AdjustExternalMemory(Napi::Env(env), -external);
      external = 0;
    }
  }
  void MaybeDrop() {
    if (disposed && pending == 0) Drop();
  }
  void* ptr() const { return lease ? lease->data() : nullptr; }
  size_t size() const { return lease ? lease->size() : 0; }
};

template <MemoryKind K>
class BlockWrap : public Napi::ObjectWrap<BlockWrap<K>> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env, char const* name) {
    using W = BlockWrap<K>;
    auto f = W::DefineClass(
        env, name,
        {W::InstanceAccessor("ptr", &W::Ptr, nullptr), W::InstanceAccessor("size", &W::Size, nullptr),
         W::InstanceAccessor("capacity", &W::Capacity, nullptr), W::InstanceAccessor("device", &W::Device, nullptr),
         W::InstanceAccessor("disposed", &W::Disposed, nullptr), W::InstanceAccessor("array", &W::Array, nullptr),
         W::InstanceMethod("dispose", &W::Dispose)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }
  static Napi::Object New(Napi::Env env, std::unique_ptr<Lease> lease, int device) {
    Napi::Object o = ctor->New({});
    auto* w = BlockWrap::Unwrap(o);
    w->state_ = std::make_shared<BlockState>();
    w->state_->kind = K;
    w->state_->device = device;
    w->state_->env = env;
    w->state_->lease = std::move(lease);
    if (K == MemoryKind::kPinned) {
      w->state_->external = static_cast<int64_t>(w->state_->lease->capacity());
      Napi::MemoryManagement::AdjustExternalMemory(env, w->state_->external);
    }
    return o;
  }

  explicit BlockWrap(Napi::CallbackInfo const& info) : Napi::ObjectWrap<BlockWrap<K>>(info) {}
  std::shared_ptr<BlockState> state() const { return state_; }
  void* ptr() const { return state_ ? state_->ptr() : nullptr; }

 private:
  void Check(Napi::Env env) const {
    if (!state_ || state_->disposed) throw Coded(env, "the buffer was disposed", "E_DISPOSED");
  }
  Napi::Value Ptr(Napi::CallbackInfo const& info) {
    Check(info.Env());
    return PtrToValue(info.Env(), state_->ptr());
  }
  Napi::Value Size(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), state_ && state_->lease ? static_cast<double>(state_->size()) : 0);
  }
  Napi::Value Capacity(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), state_ && state_->lease ? static_cast<double>(state_->lease->capacity()) : 0);
  }
  Napi::Value Device(Napi::CallbackInfo const& info) {
    return K == MemoryKind::kDevice ? Napi::Number::New(info.Env(), state_ ? state_->device : -1) : info.Env().Null();
  }
  Napi::Value Disposed(Napi::CallbackInfo const& info) {
    return Napi::Boolean::New(info.Env(), !state_ || state_->disposed);
  }
  // Pinned memory as a Uint8Array (external ArrayBuffer: no copy). dispose() detaches it.
  Napi::Value Array(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    if (K != MemoryKind::kPinned) return env.Undefined();
    Check(env);
    if (array_.IsEmpty()) {
      auto* hold = new std::shared_ptr<BlockState>(state_);
      auto ab = Napi::ArrayBuffer::New(
          env, state_->ptr(), state_->size(), [](Napi::Env, void*, std::shared_ptr<BlockState>* h) { delete h; }, hold);
      array_ = Napi::Persistent(ab);
    }
    return Napi::Uint8Array::New(env, state_->size(), array_.Value(), 0);
  }
  Napi::Value Dispose(Napi::CallbackInfo const& info) {
    if (!state_ || state_->disposed) return info.Env().Undefined();
    if (!array_.IsEmpty()) {
      // Views of freed pinned memory must not stay readable.
      array_.Value().Detach();
      array_.Reset();
    }
    state_->disposed = true;
    state_->MaybeDrop();
    return info.Env().Undefined();
  }

  std::shared_ptr<BlockState> state_;
  Napi::Reference<Napi::ArrayBuffer> array_;
};

template <MemoryKind K>
Napi::FunctionReference* BlockWrap<K>::ctor = nullptr;

using DeviceWrap = BlockWrap<MemoryKind::kDevice>;
using PinnedWrap = BlockWrap<MemoryKind::kPinned>;

bool IsInstance(Napi::Value v, Napi::FunctionReference* ctor) {
  return ctor != nullptr && v.IsObject() && v.As<Napi::Object>().InstanceOf(ctor->Value());
}

}  // namespace

bool UnwrapBlock(Napi::Value v, JsBlock* out) {
  if (IsInstance(v, DeviceWrap::ctor)) {
    auto* w = DeviceWrap::Unwrap(v.As<Napi::Object>());
    *out = {w->ptr(), w->state() ? w->state()->size() : 0, MemoryKind::kDevice};
    return out->ptr != nullptr;
  }
  if (IsInstance(v, PinnedWrap::ctor)) {
    auto* w = PinnedWrap::Unwrap(v.As<Napi::Object>());
    *out = {w->ptr(), w->state() ? w->state()->size() : 0, MemoryKind::kPinned};
    return out->ptr != nullptr;
  }
  return false;
}

namespace {

class JsStreamPool : public Napi::ObjectWrap<JsStreamPool> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "StreamPool",
        {InstanceAccessor("size", &JsStreamPool::Size, nullptr),
         InstanceAccessor("device", &JsStreamPool::Device, nullptr), InstanceMethod("handle", &JsStreamPool::Handle),
         InstanceMethod("next", &JsStreamPool::Next), InstanceMethod("synchronize", &JsStreamPool::Synchronize),
         InstanceMethod("dispose", &JsStreamPool::Dispose)});
  }
  explicit JsStreamPool(Napi::CallbackInfo const& info) : Napi::ObjectWrap<JsStreamPool>(info) {
    Napi::Env env = info.Env();
    int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    int count = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 4;
    if (count < 1 || count > 256)
      throw Coded(env, "StreamPool count: expected 1..256 streams, got " + std::to_string(count),
                  "E_INVALID_PARAMETER");
    try {
      pool_ = std::make_unique<StreamPool>(device, count);
    } catch (CudaException const& e) {
      throw Coded(env, e.what(), "E_CUDA");
    }
  }

 private:
  StreamPool& Pool(Napi::Env env) {
    if (!pool_) throw Coded(env, "the stream pool was disposed", "E_DISPOSED");
    return *pool_;
  }
  size_t Index(Napi::CallbackInfo const& info) {
    size_t i = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    if (i >= Pool(info.Env()).size())
      throw Coded(
          info.Env(),
          "stream index: expected 0.." + std::to_string(Pool(info.Env()).size() - 1) + ", got " + std::to_string(i),
          "E_INVALID_PARAMETER");
    return i;
  }
  Napi::Value Size(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), pool_ ? static_cast<double>(pool_->size()) : 0);
  }
  Napi::Value Device(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), Pool(info.Env()).device());
  }
  Napi::Value Handle(Napi::CallbackInfo const& info) {
    return PtrToValue(info.Env(), Pool(info.Env()).At(Index(info)));
  }
  Napi::Value Next(Napi::CallbackInfo const& info) { return PtrToValue(info.Env(), Pool(info.Env()).Next()); }
  // Promise settled when every stream (or stream i) has finished the work queued so far.
  Napi::Value Synchronize(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    StreamPool& pool = Pool(env);
    if (info.Length() > 0 && info[0].IsNumber()) return StreamDone(env, pool.At(Index(info)));
    auto deferred = Napi::Promise::Deferred::New(env);
    auto left = std::make_shared<size_t>(pool.size());
    auto firstError = std::make_shared<std::string>();
    for (size_t i = 0; i < pool.size(); ++i) {
      OnStreamComplete(env, pool.At(i), [deferred, left, firstError](Napi::Env env, std::string const& error) {
        if (!error.empty() && firstError->empty()) *firstError = error;
        if (--*left != 0) return;
        Napi::HandleScope scope(env);
        if (firstError->empty())
          deferred.Resolve(env.Undefined());
        else
          deferred.Reject(CodedError(env, *firstError).Value());
      });
    }
    return deferred.Promise();
  }
  Napi::Value Dispose(Napi::CallbackInfo const& info) {
    pool_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<StreamPool> pool_;
};

size_t OptSize(Napi::Object o, char const* key, size_t fallback) {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0)
    throw Coded(o.Env(), std::string("copy option ") + key + ": expected a non-negative number", "E_INVALID_PARAMETER");
  return static_cast<size_t>(v.As<Napi::Number>().Int64Value());
}

// One side of a copy: a pooled block or pageable JS memory (an ArrayBufferView, kept alive until completion).
struct Side {
  char* ptr = nullptr;
  size_t size = 0;
  bool device = false;
  std::shared_ptr<BlockState> state;
  Napi::Reference<Napi::Value> keep;
};

Side ResolveSide(Napi::Value v, char const* name) {
  Side s;
  Napi::Env env = v.Env();
  if (IsInstance(v, DeviceWrap::ctor) || IsInstance(v, PinnedWrap::ctor)) {
    bool dev = IsInstance(v, DeviceWrap::ctor);
    std::shared_ptr<BlockState> st =
        dev ? DeviceWrap::Unwrap(v.As<Napi::Object>())->state() : PinnedWrap::Unwrap(v.As<Napi::Object>())->state();
    if (!st || st->disposed) throw Coded(env, std::string(name) + ": the buffer was disposed", "E_DISPOSED");
    s.ptr = static_cast<char*>(st->ptr());
    s.size = st->size();
    s.device = dev;
    s.state = st;
    return s;
  }
  if (v.IsTypedArray() || v.IsDataView()) {
    Napi::ArrayBuffer ab;
    size_t offset = 0, length = 0;
    if (v.IsTypedArray()) {
      auto ta = v.As<Napi::TypedArray>();
      ab = ta.ArrayBuffer();
      offset = ta.ByteOffset();
      length = ta.ByteLength();
    } else {
      auto dv = v.As<Napi::DataView>();
      ab = dv.ArrayBuffer();
      offset = dv.ByteOffset();
      length = dv.ByteLength();
    }
    s.ptr = static_cast<char*>(ab.Data()) + offset;
    s.size = length;
    s.keep = Napi::Persistent(v);
    return s;
  }
  // A raw device range {ptr: bigint, size}: frame-ring slots, kernel outputs. The caller keeps it alive.
  if (v.IsObject() && v.As<Napi::Object>().Get("ptr").IsBigInt() && v.As<Napi::Object>().Get("size").IsNumber()) {
    Napi::Object o = v.As<Napi::Object>();
    s.ptr = static_cast<char*>(PtrFromValue(o.Get("ptr"), name));
    s.size = static_cast<size_t>(o.Get("size").As<Napi::Number>().Int64Value());
    s.device = true;
    return s;
  }
  throw Coded(env, std::string(name) + ": expected a DeviceBuffer, PinnedBuffer, {ptr, size} or ArrayBufferView",
              "E_INVALID_PARAMETER");
}

// copy(dst, src, stream, {bytes, dstOffset, srcOffset}) -> Promise<void>, settled from the stream.
Napi::Value Copy(Napi::CallbackInfo const& info) {
  Napi::Env env = info.Env();
  auto dst = std::make_shared<Side>(ResolveSide(info[0], "copy dst"));
  auto src = std::make_shared<Side>(ResolveSide(info[1], "copy src"));
  auto stream = static_cast<cudaStream_t>(PtrFromValue(info[2], "copy stream"));
  Napi::Object opts = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  size_t dstOffset = OptSize(opts, "dstOffset", 0), srcOffset = OptSize(opts, "srcOffset", 0);
  size_t available = std::min(dst->size - std::min(dst->size, dstOffset), src->size - std::min(src->size, srcOffset));
  size_t bytes = OptSize(opts, "bytes", available);
  if (dstOffset + bytes > dst->size || srcOffset + bytes > src->size)
    throw Coded(env,
                "copy bytes: expected at most " + std::to_string(available) + " bytes (dst " +
                    std::to_string(dst->size) + " from offset " + std::to_string(dstOffset) + ", src " +
                    std::to_string(src->size) + " from offset " + std::to_string(srcOffset) + "), got " +
                    std::to_string(bytes),
                "E_INVALID_PARAMETER");
  // Unified addressing tells CUDA where each side lives (pooled, pinned, pageable or IPC-mapped).
  cudaMemcpyKind kind = cudaMemcpyDefault;
  cudaError_t e = cudaMemcpyAsync(dst->ptr + dstOffset, src->ptr + srcOffset, bytes, kind, stream);
  if (e != cudaSuccess) throw Coded(env, CudaError("cudaMemcpyAsync (runtime.copy)", e), "E_CUDA");
  for (auto* side : {dst.get(), src.get()})
    if (side->state) ++side->state->pending;
  auto deferred = Napi::Promise::Deferred::New(env);
  OnStreamComplete(env, stream, [deferred, dst, src](Napi::Env env, std::string const& error) {
    Napi::HandleScope scope(env);
    for (auto* side : {dst.get(), src.get()}) {
      if (side->state) {
        --side->state->pending;
        side->state->MaybeDrop();
      }
      side->keep.Reset();
    }
    if (error.empty())
      deferred.Resolve(env.Undefined());
    else
      deferred.Reject(CodedError(env, error).Value());
  });
  return deferred.Promise();
}

size_t BytesArg(Napi::CallbackInfo const& info, char const* what) {
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 1)
    throw Coded(info.Env(), std::string(what) + " bytes: expected a positive number", "E_INVALID_PARAMETER");
  return static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
}

Napi::Value AllocDevice(Napi::CallbackInfo const& info) {
  size_t bytes = BytesArg(info, "allocDevice");
  int device = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  try {
    return DeviceWrap::New(info.Env(), BufferPool::Device(device)->Acquire(bytes), device);
  } catch (CudaException const& e) {
    throw Coded(info.Env(), e.what(), "E_CUDA");
  }
}

Napi::Value AllocPinned(Napi::CallbackInfo const& info) {
  size_t bytes = BytesArg(info, "allocPinned");
  try {
    return PinnedWrap::New(info.Env(), BufferPool::Pinned()->Acquire(bytes), -1);
  } catch (CudaException const& e) {
    throw Coded(info.Env(), e.what(), "E_CUDA");
  }
}

Napi::Object StatsObject(Napi::Env env, PoolStats const& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocations", static_cast<double>(s.allocations));
  o.Set("reuses", static_cast<double>(s.reuses));
  o.Set("releases", static_cast<double>(s.releases));
  o.Set("bytesAllocated", static_cast<double>(s.bytesAllocated));
  o.Set("bytesInUse", static_cast<double>(s.bytesInUse));
  o.Set("peakBytesAllocated", static_cast<double>(s.peakBytesAllocated));
  return o;
}

Napi::Value PoolStatsFn(Napi::CallbackInfo const& info) {
  int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("device", StatsObject(info.Env(), BufferPool::Device(device)->stats()));
  o.Set("pinned", StatsObject(info.Env(), BufferPool::Pinned()->stats()));
  return o;
}

Napi::Value TrimPools(Napi::CallbackInfo const& info) {
  int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  BufferPool::Device(device)->Trim();
  BufferPool::Pinned()->Trim();
  return info.Env().Undefined();
}

// Test surface of GraphCache: run(key, stream, ops) with ops {op:'memset', dst, value, bytes} |
// {op:'copy', dst, src, bytes} | {op:'query'} (cudaStreamQuery: not capturable, forces the eager fallback).
class JsGraphCache : public Napi::ObjectWrap<JsGraphCache> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "GraphCache",
        {InstanceMethod("run", &JsGraphCache::Run), InstanceMethod("stats", &JsGraphCache::Stats),
         InstanceMethod("clear", &JsGraphCache::Clear), InstanceAccessor("size", &JsGraphCache::Size, nullptr),
         InstanceAccessor("enabled", &JsGraphCache::Enabled, &JsGraphCache::SetEnabled)});
  }
  explicit JsGraphCache(Napi::CallbackInfo const& info) : Napi::ObjectWrap<JsGraphCache>(info) {}

 private:
  struct Op {
    int kind;  // 0 memset, 1 copy, 2 query
    char* dst = nullptr;
    char const* src = nullptr;
    int value = 0;
    size_t bytes = 0;
  };
  Napi::Value Run(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    std::string key = info[0].ToString();
    auto stream = static_cast<cudaStream_t>(PtrFromValue(info[1], "GraphCache.run stream"));
    if (!info[2].IsArray()) throw Coded(env, "GraphCache.run ops: expected an array", "E_INVALID_PARAMETER");
    Napi::Array arr = info[2].As<Napi::Array>();
    std::vector<Op> ops;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Object o = arr.Get(i).As<Napi::Object>();
      std::string name = o.Get("op").ToString();
      Op op;
      JsBlock b;
      if (name == "memset") {
        op.kind = 0;
        if (!UnwrapBlock(o.Get("dst"), &b))
          throw Coded(env, "memset dst: expected a DeviceBuffer", "E_INVALID_PARAMETER");
        op.dst = static_cast<char*>(b.ptr);
        op.value = o.Get("value").As<Napi::Number>().Int32Value();
        op.bytes = o.Has("bytes") ? static_cast<size_t>(o.Get("bytes").As<Napi::Number>().Int64Value()) : b.size;
        if (op.bytes > b.size) throw Coded(env, "memset bytes: larger than dst", "E_INVALID_PARAMETER");
      } else if (name == "copy") {
        op.kind = 1;
        JsBlock s;
        if (!UnwrapBlock(o.Get("dst"), &b) || !UnwrapBlock(o.Get("src"), &s))
          throw Coded(env, "copy dst/src: expected DeviceBuffer or PinnedBuffer", "E_INVALID_PARAMETER");
        op.dst = static_cast<char*>(b.ptr);
        op.src = static_cast<char const*>(s.ptr);
        op.bytes = o.Has("bytes") ? static_cast<size_t>(o.Get("bytes").As<Napi::Number>().Int64Value())
                                  : std::min(b.size, s.size);
        if (op.bytes > b.size || op.bytes > s.size)
          throw Coded(env, "copy bytes: larger than a buffer", "E_INVALID_PARAMETER");
      } else if (name == "query") {
        op.kind = 2;
      } else {
        throw Coded(env, "GraphCache.run op: expected memset, copy or query, got " + name, "E_INVALID_PARAMETER");
      }
      ops.push_back(op);
    }
    std::string error;
    GraphRun how = GraphRun::kEager;
    bool ok = cache_.Run(
        key, stream,
        [&ops](cudaStream_t s, std::string* err) {
          for (Op const& op : ops) {
            cudaError_t e = cudaSuccess;
            if (op.kind == 0) e = cudaMemsetAsync(op.dst, op.value, op.bytes, s);
            if (op.kind == 1) e = cudaMemcpyAsync(op.dst, op.src, op.bytes, cudaMemcpyDefault, s);
            if (op.kind == 2) {
              e = cudaStreamQuery(s);
              if (e == cudaErrorNotReady) e = cudaSuccess;
            }
            if (e != cudaSuccess) {
              *err = CudaError(op.kind == 0   ? "cudaMemsetAsync"
                               : op.kind == 1 ? "cudaMemcpyAsync"
                                              : "cudaStreamQuery",
                               e);
              return false;
            }
          }
          return true;
        },
        &error, &how);
    if (!ok) throw Coded(env, error, "E_CUDA");
    return Napi::String::New(env, how == GraphRun::kReplayed   ? "replayed"
                                  : how == GraphRun::kCaptured ? "captured"
                                                               : "eager");
  }
  Napi::Value Stats(Napi::CallbackInfo const& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    auto const& s = cache_.stats();
    o.Set("captures", static_cast<double>(s.captures));
    o.Set("replays", static_cast<double>(s.replays));
    o.Set("eagerRuns", static_cast<double>(s.eagerRuns));
    o.Set("failedCaptures", static_cast<double>(s.failedCaptures));
    o.Set("graphs", static_cast<double>(cache_.size()));
    return o;
  }
  Napi::Value Clear(Napi::CallbackInfo const& info) {
    cache_.Clear();
    return info.Env().Undefined();
  }
  Napi::Value Size(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(cache_.size()));
  }
  Napi::Value Enabled(Napi::CallbackInfo const& info) { return Napi::Boolean::New(info.Env(), cache_.enabled()); }
  void SetEnabled(Napi::CallbackInfo const&, Napi::Value const& v) { cache_.set_enabled(v.ToBoolean()); }

  GraphCache cache_;
};

// done(stream) -> Promise settled when the stream reaches this point.
Napi::Value Done(Napi::CallbackInfo const& info) {
  return StreamDone(info.Env(), static_cast<cudaStream_t>(PtrFromValue(info[0], "done stream")));
}

}  // namespace
}  // namespace yqp::core

namespace yqp {

void InitRuntime(Napi::Env env, Napi::Object exports) {
  using namespace core;
  Napi::Object rt = Napi::Object::New(env);
  rt.Set("StreamPool", JsStreamPool::Define(env));
  rt.Set("DeviceBuffer", DeviceWrap::Define(env, "DeviceBuffer"));
  rt.Set("PinnedBuffer", PinnedWrap::Define(env, "PinnedBuffer"));
  rt.Set("GraphCache", JsGraphCache::Define(env));
  rt.Set("allocDevice", Napi::Function::New(env, AllocDevice, "allocDevice"));
  rt.Set("allocPinned", Napi::Function::New(env, AllocPinned, "allocPinned"));
  rt.Set("copy", Napi::Function::New(env, Copy, "copy"));
  rt.Set("done", Napi::Function::New(env, Done, "done"));
  rt.Set("poolStats", Napi::Function::New(env, PoolStatsFn, "poolStats"));
  rt.Set("trimPools", Napi::Function::New(env, TrimPools, "trimPools"));
  exports.Set("runtime", rt);
}

}  // namespace yqp
