// A kernels job as JavaScript hands it over ({ spec, frames, items, out, outBytes?, stream? }), parsed and checked
// for memory safety (src/gpu/frames.ts validates the arguments first), and the small argument helpers every
// part of exports.kernels shares.
#pragma once

#include <cuda_runtime.h>
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/coded_error.h"
#include "kernels/sampler.h"

// With the CUDA core (trt/core) present, device buffers may be its DeviceBuffer objects, completion is the
// core's (cudaLaunchHostFunc -> ThreadSafeFunction) and host staging comes from its pinned and device pools.
#if __has_include("core/runtime.h")
#include "core/runtime.h"
#define YQP_KERNELS_WITH_CORE 1
#endif

namespace yqp::kernels {

std::string CudaMessage(char const* what, cudaError_t err);
// Throws a coded error (E_NATIVE) naming the CUDA call when err is not cudaSuccess.
void Check(Napi::Env env, char const* what, cudaError_t err);

uint64_t ToPtr(Napi::Value v);
int32_t Int(Napi::Object const& o, char const* key, int32_t fallback = 0);
int64_t Int64(Napi::Object const& o, char const* key, int64_t fallback = 0);
void Floats(Napi::Object const& o, char const* key, float* out, uint32_t n);

struct HostView {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};

HostView ViewOf(Napi::Value v);

// A parsed job. Item src/uv hold byte offsets from their frame until Resolve() turns them into pointers.
struct Job {
  OutputSpec spec{};
  std::vector<SampleItem> items;
  std::vector<int32_t> frameOf;
  std::vector<int64_t> uvOffset;
  std::vector<uint64_t> deviceFrames;
  std::vector<HostView> hostFrames;
  uint64_t deviceOut = 0;
  HostView hostOut;
  uint64_t stream = 0;
  size_t outBytes = 0;

  size_t NeededOutBytes() const {
    int32_t images = 0;
    for (auto const& it : items) images = std::max(images, it.outIndex + 1);
    return static_cast<size_t>(images) * spec.width * spec.height * 3 * (spec.fp16 ? 2 : 4);
  }

  // Bytes of frame f that the items read (to check host frames and size staging).
  static size_t ItemExtent(SampleItem const& it, int64_t uvOff) {
    if (it.format == kNV12)
      return static_cast<size_t>(uvOff) + static_cast<size_t>(it.uvPitch) * ((it.height + 1) / 2 - 1) +
             static_cast<size_t>((it.width + 1) / 2) * 2;
    int bpp = it.format >= kRGBA ? 4 : 3;
    return static_cast<size_t>(it.pitch) * (it.height - 1) + static_cast<size_t>(it.width) * bpp;
  }

  void Resolve(std::vector<uint64_t> const& bases) {
    for (size_t i = 0; i < items.size(); ++i) {
      uint64_t base = bases[frameOf[i]];
      items[i].src = reinterpret_cast<uint8_t const*>(base);
      items[i].uv = reinterpret_cast<uint8_t const*>(base + uvOffset[i]);
    }
  }
};

// hostFrames: frames are typed arrays (else device pointers); hostOut: out is a typed array (else a pointer).
Job ParseJob(Napi::Object job, bool hostFrames, bool hostOut);

}  // namespace yqp::kernels
