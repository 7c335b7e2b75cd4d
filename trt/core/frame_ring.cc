#include "core/frame_ring.h"

#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/runtime.h"

namespace yqp::core {
namespace {

constexpr uint32_t kMagic = 0x52505159;  // "YQPR"
constexpr uint32_t kFree = 0, kWriting = 1, kReady = 2;

struct alignas(64) ShmHeader {
  uint32_t magic, version, slots, device;
  uint64_t slotBytes;
  std::atomic<uint64_t> lastSeq;
  uint8_t pad[32];
};
struct alignas(64) ShmSlot {
  std::atomic<uint32_t> state, readers;
  std::atomic<uint64_t> seq;
  uint32_t cameraId, format, width, height;
  uint64_t frameIndex, timestampUs, bytes;
  uint8_t pad[8];
};
static_assert(sizeof(ShmHeader) == 64 && sizeof(ShmSlot) == 64, "shared layout");
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "atomics in shared memory must be lock-free");

std::string Hex(void const* p, size_t n) {
  static char const* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    uint8_t b = static_cast<uint8_t const*>(p)[i];
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}
bool Unhex(std::string const& s, void* out, size_t n) {
  if (s.size() != 2 * n) return false;
  auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  for (size_t i = 0; i < n; ++i) {
    int h = v(s[2 * i]), l = v(s[2 * i + 1]);
    if (h < 0 || l < 0) return false;
    static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(h * 16 + l);
  }
  return true;
}

Napi::Error Err(Napi::Env env, std::string const& m, char const* code) { return CodedError(env, m, code); }

class FrameRing : public Napi::ObjectWrap<FrameRing> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    auto f = DefineClass(
        env, "FrameRing",
        {StaticMethod("open", &FrameRing::Open), InstanceAccessor("descriptor", &FrameRing::Descriptor, nullptr),
         InstanceAccessor("slotCount", &FrameRing::SlotCount, nullptr),
         InstanceAccessor("slotBytes", &FrameRing::SlotBytes, nullptr),
         InstanceAccessor("owner", &FrameRing::Owner, nullptr),
         InstanceMethod("acquireWrite", &FrameRing::AcquireWrite), InstanceMethod("slotPtr", &FrameRing::SlotPtr),
         InstanceMethod("commit", &FrameRing::Commit), InstanceMethod("abort", &FrameRing::Abort),
         InstanceMethod("acquireRead", &FrameRing::AcquireRead), InstanceMethod("waitReady", &FrameRing::WaitReady),
         InstanceMethod("release", &FrameRing::Release), InstanceMethod("releaseAfter", &FrameRing::ReleaseAfterStream),
         InstanceMethod("slot", &FrameRing::SlotInfo), InstanceMethod("dispose", &FrameRing::Dispose)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  // new FrameRing({device, slots, slotBytes}) creates and owns the ring; FrameRing.open(descriptor) attaches.
  explicit FrameRing(Napi::CallbackInfo const& info) : Napi::ObjectWrap<FrameRing>(info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsExternal()) return;  // filled by Open
    if (info.Length() < 1 || !info[0].IsObject())
      throw Err(env, "FrameRing options: expected {slots, slotBytes, device?}", "E_INVALID_PARAMETER");
    Napi::Object o = info[0].As<Napi::Object>();
    int device = o.Has("device") && o.Get("device").IsNumber() ? o.Get("device").As<Napi::Number>().Int32Value() : 0;
    double slots = o.Get("slots").IsNumber() ? o.Get("slots").As<Napi::Number>().DoubleValue() : -1;
    double slotBytes = o.Get("slotBytes").IsNumber() ? o.Get("slotBytes").As<Napi::Number>().DoubleValue() : -1;
    if (!(slots >= 1 && slots <= 1024))
      throw Err(env, "FrameRing slots: expected 1..1024, got " + o.Get("slots").ToString().Utf8Value(),
                "E_INVALID_PARAMETER");
    if (!(slotBytes >= 1))
      throw Err(env,
                "FrameRing slotBytes: expected a positive number, got " + o.Get("slotBytes").ToString().Utf8Value(),
                "E_INVALID_PARAMETER");
    owner_ = true;
    device_ = device;
    Check(env, "cudaSetDevice (FrameRing)", cudaSetDevice(device));
    static std::atomic<int> counter{0};
    shmName_ = "/yqp-ring-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1));
    MapShm(env, static_cast<uint32_t>(slots), true);
    header_->magic = kMagic;
    header_->version = 1;
    header_->slots = static_cast<uint32_t>(slots);
    header_->device = static_cast<uint32_t>(device);
    header_->slotBytes = static_cast<uint64_t>(slotBytes);
    header_->lastSeq = 0;
    slotBytes_ = static_cast<size_t>(slotBytes);
    for (uint32_t i = 0; i < header_->slots; ++i) {
      void* p = nullptr;
      cudaEvent_t ev = nullptr;
      cudaError_t e = cudaMalloc(&p, slotBytes_);
      if (e == cudaSuccess) e = cudaEventCreateWithFlags(&ev, cudaEventInterprocess | cudaEventDisableTiming);
      if (e != cudaSuccess) {
        if (p) cudaFree(p);
        Cleanup();
        throw Err(env, CudaError("cudaMalloc/cudaEventCreateWithFlags (FrameRing slot)", e), "E_CUDA");
      }
      ptrs_.push_back(p);
      events_.push_back(ev);
    }
  }
  ~FrameRing() override { Cleanup(); }

 private:
  static void Check(Napi::Env env, char const* site, cudaError_t e) {
    if (e != cudaSuccess) throw Err(env, CudaError(site, e), "E_CUDA");
  }
  void MapShm(Napi::Env env, uint32_t slots, bool create) {
    int fd = shm_open(shmName_.c_str(), create ? (O_CREAT | O_EXCL | O_RDWR) : O_RDWR, 0600);
    if (fd < 0) throw Err(env, "shm_open " + shmName_ + " failed: " + strerror(errno), "E_FRAME_RING");
    shmSize_ = sizeof(ShmHeader) + sizeof(ShmSlot) * slots;
    if (create && ftruncate(fd, static_cast<off_t>(shmSize_)) != 0) {
      close(fd);
      shm_unlink(shmName_.c_str());
      throw Err(env, "ftruncate " + shmName_ + " failed: " + strerror(errno), "E_FRAME_RING");
    }
    void* m = mmap(nullptr, shmSize_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
      if (create) shm_unlink(shmName_.c_str());
      throw Err(env, "mmap " + shmName_ + " failed: " + strerror(errno), "E_FRAME_RING");
    }
    size_t size = shmSize_;
    mapping_ = std::shared_ptr<void>(m, [size](void* p) { munmap(p, size); });
    header_ = static_cast<ShmHeader*>(m);
    slots_ = reinterpret_cast<ShmSlot*>(static_cast<char*>(m) + sizeof(ShmHeader));
  }
  void Cleanup() {
    for (size_t i = 0; i < ptrs_.size(); ++i) {
      if (owner_)
        cudaFree(ptrs_[i]);
      else
        cudaIpcCloseMemHandle(ptrs_[i]);
    }
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    ptrs_.clear();
    events_.clear();
    mapping_.reset();
    header_ = nullptr;
    slots_ = nullptr;
    if (owner_ && !shmName_.empty()) shm_unlink(shmName_.c_str());
    shmName_.clear();
  }
  void Alive(Napi::Env env) const {
    if (!header_) throw Err(env, "the frame ring was disposed", "E_DISPOSED");
  }
  uint32_t SlotArg(Napi::CallbackInfo const& info, size_t i = 0) const {
    Alive(info.Env());
    if (info.Length() <= i || !info[i].IsNumber() || info[i].As<Napi::Number>().Int64Value() < 0 ||
        info[i].As<Napi::Number>().Int64Value() >= header_->slots)
      throw Err(info.Env(),
                "slot: expected 0.." + std::to_string(header_->slots - 1) + ", got " +
                    (info.Length() > i ? info[i].ToString().Utf8Value() : "nothing"),
                "E_INVALID_PARAMETER");
    return info[i].As<Napi::Number>().Uint32Value();
  }

  static Napi::Value Open(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    std::string text = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    Napi::Object d;
    try {
      Napi::Object json = env.Global().Get("JSON").As<Napi::Object>();
      d = json.Get("parse").As<Napi::Function>().Call(json, {Napi::String::New(env, text)}).As<Napi::Object>();
    } catch (Napi::Error const&) {
      throw Err(env, "FrameRing.open descriptor: expected the JSON string of ring.descriptor", "E_INVALID_PARAMETER");
    }
    if (!d.Get("shm").IsString() || !d.Get("slots").IsArray())
      throw Err(env, "FrameRing.open descriptor: expected {shm, slots, slotBytes, device}", "E_INVALID_PARAMETER");
    Napi::Object o = ctor->New({Napi::External<int>::New(env, nullptr)});
    FrameRing* r = Unwrap(o);
    r->owner_ = false;
    r->shmName_ = d.Get("shm").As<Napi::String>().Utf8Value();
    r->device_ = d.Get("device").As<Napi::Number>().Int32Value();
    Napi::Array slots = d.Get("slots").As<Napi::Array>();
    r->MapShm(env, slots.Length(), false);
    if (r->header_->magic != kMagic || r->header_->slots != slots.Length()) {
      r->Cleanup();
      throw Err(env, "FrameRing.open: shared memory " + r->shmName_ + " is not a frame ring of this descriptor",
                "E_FRAME_RING");
    }
    r->slotBytes_ = r->header_->slotBytes;
    Check(env, "cudaSetDevice (FrameRing.open)", cudaSetDevice(r->device_));
    for (uint32_t i = 0; i < slots.Length(); ++i) {
      Napi::Object s = slots.Get(i).As<Napi::Object>();
      cudaIpcMemHandle_t mh;
      cudaIpcEventHandle_t eh;
      if (!Unhex(s.Get("mem").ToString(), &mh, sizeof mh) || !Unhex(s.Get("event").ToString(), &eh, sizeof eh)) {
        r->Cleanup();
        throw Err(env, "FrameRing.open slot " + std::to_string(i) + ": malformed IPC handle", "E_INVALID_PARAMETER");
      }
      void* p = nullptr;
      cudaEvent_t ev = nullptr;
      cudaError_t e = cudaIpcOpenMemHandle(&p, mh, cudaIpcMemLazyEnablePeerAccess);
      if (e != cudaSuccess) {
        r->Cleanup();
        throw Err(env, CudaError(("cudaIpcOpenMemHandle (FrameRing.open slot " + std::to_string(i) + ")").c_str(), e),
                  "E_CUDA");
      }
      r->ptrs_.push_back(p);
      e = cudaIpcOpenEventHandle(&ev, eh);
      if (e != cudaSuccess) {
        r->Cleanup();
        throw Err(env, CudaError("cudaIpcOpenEventHandle (FrameRing.open)", e), "E_CUDA");
      }
      r->events_.push_back(ev);
    }
    return o;
  }

  Napi::Value Descriptor(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    Alive(env);
    std::string s = "{\"v\":1,\"shm\":\"" + shmName_ + "\",\"device\":" + std::to_string(device_) +
                    ",\"slotBytes\":" + std::to_string(slotBytes_) + ",\"slots\":[";
    for (size_t i = 0; i < ptrs_.size(); ++i) {
      cudaIpcMemHandle_t mh;
      cudaIpcEventHandle_t eh;
      if (owner_) {
        Check(env, "cudaIpcGetMemHandle (FrameRing.descriptor)", cudaIpcGetMemHandle(&mh, ptrs_[i]));
        Check(env, "cudaIpcGetEventHandle (FrameRing.descriptor)", cudaIpcGetEventHandle(&eh, events_[i]));
      } else {
        throw Err(env, "FrameRing.descriptor: only the process that created the ring exports it", "E_FRAME_RING");
      }
      s += std::string(i ? "," : "") + "{\"mem\":\"" + Hex(&mh, sizeof mh) + "\",\"event\":\"" + Hex(&eh, sizeof eh) +
           "\"}";
    }
    s += "]}";
    return Napi::String::New(env, s);
  }
  Napi::Value SlotCount(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), header_ ? header_->slots : 0);
  }
  Napi::Value SlotBytes(Napi::CallbackInfo const& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(slotBytes_));
  }
  Napi::Value Owner(Napi::CallbackInfo const& info) { return Napi::Boolean::New(info.Env(), owner_); }

  // Takes a free slot, or else the oldest ready slot no reader holds (a camera drops its stalest frame);
  // -1 when every slot is being written or read.
  Napi::Value AcquireWrite(Napi::CallbackInfo const& info) {
    Alive(info.Env());
    for (uint32_t i = 0; i < header_->slots; ++i) {
      uint32_t expected = kFree;
      if (slots_[i].state.compare_exchange_strong(expected, kWriting)) return Napi::Number::New(info.Env(), i);
    }
    bool overwrite =
        !(info.Length() > 0 && info[0].IsObject() && info[0].As<Napi::Object>().Get("overwrite").IsBoolean() &&
          !info[0].As<Napi::Object>().Get("overwrite").As<Napi::Boolean>().Value());
    while (overwrite) {
      int64_t oldest = -1;
      uint64_t oldestSeq = UINT64_MAX;
      for (uint32_t i = 0; i < header_->slots; ++i) {
        if (slots_[i].state.load() == kReady && slots_[i].readers.load() == 0 && slots_[i].seq.load() < oldestSeq) {
          oldest = i;
          oldestSeq = slots_[i].seq.load();
        }
      }
      if (oldest < 0) break;
      ShmSlot& s = slots_[oldest];
      uint32_t expected = kReady;
      if (s.state.compare_exchange_strong(expected, kWriting)) {
        // A reader that incremented in between backs off when it sees the state change (AcquireRead).
        if (s.readers.load() == 0) return Napi::Number::New(info.Env(), static_cast<double>(oldest));
        s.state.store(kReady);
      }
    }
    return Napi::Number::New(info.Env(), -1);
  }
  Napi::Value SlotPtr(Napi::CallbackInfo const& info) { return PtrToValue(info.Env(), ptrs_[SlotArg(info)]); }

  // commit(slot, meta, stream): records the slot's interprocess event on the writer's stream (after its writes),
  // then publishes the metadata and marks the slot ready.
  Napi::Value Commit(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    uint32_t i = SlotArg(info);
    ShmSlot& s = slots_[i];
    if (s.state.load() != kWriting)
      throw Err(env, "commit: slot " + std::to_string(i) + " is not acquired for writing", "E_FRAME_RING");
    Napi::Object m = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    auto num = [&](char const* k, double def) {
      return m.Get(k).IsNumber() ? m.Get(k).As<Napi::Number>().DoubleValue() : def;
    };
    double bytes = num("bytes", static_cast<double>(slotBytes_));
    if (bytes < 0 || bytes > static_cast<double>(slotBytes_))
      throw Err(env, "commit meta.bytes: expected 0.." + std::to_string(slotBytes_) + ", got " + std::to_string(bytes),
                "E_INVALID_PARAMETER");
    auto stream =
        static_cast<cudaStream_t>(PtrFromValue(info.Length() > 2 ? info[2] : env.Undefined(), "commit stream"));
    Check(env, "cudaEventRecord (FrameRing.commit)", cudaEventRecord(events_[i], stream));
    s.cameraId = static_cast<uint32_t>(num("cameraId", 0));
    s.format = static_cast<uint32_t>(num("format", 0));
    s.width = static_cast<uint32_t>(num("width", 0));
    s.height = static_cast<uint32_t>(num("height", 0));
    s.frameIndex = static_cast<uint64_t>(num("frameIndex", 0));
    s.timestampUs = static_cast<uint64_t>(num("timestampUs", 0));
    s.bytes = static_cast<uint64_t>(bytes);
    s.seq.store(header_->lastSeq.fetch_add(1) + 1);
    s.state.store(kReady);  // release: metadata above is visible before the state
    return Napi::Number::New(env, static_cast<double>(s.seq.load()));
  }
  Napi::Value Abort(Napi::CallbackInfo const& info) {
    uint32_t i = SlotArg(info);
    uint32_t expected = kWriting;
    slots_[i].state.compare_exchange_strong(expected, kFree);
    return info.Env().Undefined();
  }

  Napi::Object Meta(Napi::Env env, uint32_t i) {
    ShmSlot& s = slots_[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("slot", i);
    o.Set("seq", static_cast<double>(s.seq.load()));
    o.Set("cameraId", s.cameraId);
    o.Set("format", s.format);
    o.Set("width", s.width);
    o.Set("height", s.height);
    o.Set("frameIndex", static_cast<double>(s.frameIndex));
    o.Set("timestampUs", static_cast<double>(s.timestampUs));
    o.Set("bytes", static_cast<double>(s.bytes));
    o.Set("ptr", PtrToValue(env, ptrs_[i]));
    return o;
  }

  // acquireRead({afterSeq, cameraId}) -> the newest ready frame newer than afterSeq (of that camera), held until
  // release; null when there is none.
  Napi::Value AcquireRead(Napi::CallbackInfo const& info) {
    Napi::Env env = info.Env();
    Alive(env);
    Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    uint64_t after =
        o.Get("afterSeq").IsNumber() ? static_cast<uint64_t>(o.Get("afterSeq").As<Napi::Number>().DoubleValue()) : 0;
    bool anyCamera = !o.Get("cameraId").IsNumber();
    uint32_t camera = anyCamera ? 0 : o.Get("cameraId").As<Napi::Number>().Uint32Value();
    bool oldest = o.Get("oldest").IsBoolean() && o.Get("oldest").As<Napi::Boolean>().Value();
    for (int attempt = 0; attempt < 64; ++attempt) {
      int64_t best = -1;
      uint64_t bestSeq = 0;
      for (uint32_t i = 0; i < header_->slots; ++i) {
        ShmSlot& s = slots_[i];
        if (s.state.load() != kReady) continue;
        uint64_t seq = s.seq.load();
        if (seq <= after || (!anyCamera && s.cameraId != camera)) continue;
        if (best < 0 || (oldest ? seq < bestSeq : seq > bestSeq)) {
          best = i;
          bestSeq = seq;
        }
      }
      if (best < 0) return env.Null();
      ShmSlot& s = slots_[best];
      s.readers.fetch_add(1);
      if (s.state.load() == kReady && s.seq.load() == bestSeq) return Meta(env, static_cast<uint32_t>(best));
      s.readers.fetch_sub(1);  // the writer took it in between: look again
    }
    return env.Null();
  }
  // waitReady(slot, stream): the reader's stream waits for the writer's GPU writes (interprocess event).
  Napi::Value WaitReady(Napi::CallbackInfo const& info) {
    uint32_t i = SlotArg(info);
    auto stream = static_cast<cudaStream_t>(PtrFromValue(info[1], "waitReady stream"));
    Check(info.Env(), "cudaStreamWaitEvent (FrameRing.waitReady)", cudaStreamWaitEvent(stream, events_[i], 0));
    return info.Env().Undefined();
  }
  Napi::Value Release(Napi::CallbackInfo const& info) {
    uint32_t i = SlotArg(info);
    if (slots_[i].readers.load() == 0)
      throw Err(info.Env(), "release: slot " + std::to_string(i) + " is not held", "E_FRAME_RING");
    slots_[i].readers.fetch_sub(1);
    return info.Env().Undefined();
  }
  // releaseAfter(slot, stream): the hold ends when the stream gets past the work queued so far.
  Napi::Value ReleaseAfterStream(Napi::CallbackInfo const& info) {
    uint32_t i = SlotArg(info);
    auto stream = static_cast<cudaStream_t>(PtrFromValue(info[1], "releaseAfter stream"));
    // An event waited for off the JS thread (no gap in the reader's stream); the callback holds the shared
    // mapping so that dispose() before the stream gets there cannot unmap the slot under it.
    ShmSlot* slot = &slots_[i];
    std::string error;
    std::shared_ptr<void> mapping = mapping_;
    if (!OnStreamCompleteNative(
            stream, [slot, mapping](cudaError_t) { slot->readers.fetch_sub(1); }, &error))
      throw Err(info.Env(), error + " (FrameRing.releaseAfter)", "E_CUDA");
    return info.Env().Undefined();
  }
  Napi::Value SlotInfo(Napi::CallbackInfo const& info) {
    uint32_t i = SlotArg(info);
    Napi::Object o = Meta(info.Env(), i);
    uint32_t st = slots_[i].state.load();
    o.Set("state", st == kFree ? "free" : st == kWriting ? "writing" : "ready");
    o.Set("readers", slots_[i].readers.load());
    return o;
  }
  Napi::Value Dispose(Napi::CallbackInfo const& info) {
    Cleanup();
    return info.Env().Undefined();
  }

  bool owner_ = false;
  int device_ = 0;
  std::string shmName_;
  size_t shmSize_ = 0;
  size_t slotBytes_ = 0;
  std::shared_ptr<void> mapping_;
  ShmHeader* header_ = nullptr;
  ShmSlot* slots_ = nullptr;
  std::vector<void*> ptrs_;
  std::vector<cudaEvent_t> events_;
};

Napi::FunctionReference* FrameRing::ctor = nullptr;

}  // namespace
}  // namespace yqp::core

namespace yqp {

void InitFrameRing(Napi::Env env, Napi::Object exports) {
  Napi::Object rt = exports.Has("runtime") ? exports.Get("runtime").As<Napi::Object>() : Napi::Object::New(env);
  rt.Set("FrameRing", core::FrameRing::Define(env));
  exports.Set("runtime", rt);
}

}  // namespace yqp
