// The CUDA runtime core as one include for other parts of the addon (the TensorRT adapter, the kernels):
// streams, pooled device/pinned memory, completion to JS, graph cache. InitRuntime registers exports.runtime:
//   StreamPool(device, count), allocDevice(bytes, device), allocPinned(bytes), copy(...), poolStats(), trimPools(),
//   GraphCache (test surface for capture/replay/fallback), all typed in src/gpu/runtime.ts.
#pragma once

#include <napi.h>

#include "core/buffer_pool.h"
#include "core/completion.h"
#include "core/cuda_check.h"
#include "core/graph_cache.h"
#include "core/stream_pool.h"

namespace yqp {

void InitRuntime(Napi::Env env, Napi::Object exports);

namespace core {

// A device or pinned block lent to JS (DeviceBuffer/PinnedBuffer objects). Null when `v` is neither.
struct JsBlock {
  void* ptr = nullptr;
  size_t size = 0;
  MemoryKind kind = MemoryKind::kDevice;
};
bool UnwrapBlock(Napi::Value v, JsBlock* out);

// Parses a BigInt pointer/stream handle (0n and undefined -> nullptr).
void* PtrFromValue(Napi::Value v, char const* what);
Napi::Value PtrToValue(Napi::Env env, void const* p);

}  // namespace core
}  // namespace yqp
