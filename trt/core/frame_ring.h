// GPU frame ring shared across processes: N slots, each its own cudaMalloc (so each has a valid CUDA IPC memory
// handle) with an interprocess event recorded by the writer after its GPU writes; slot states and frame metadata
// live in POSIX shared memory (layout below, also read by test/gpu/ring_writer.py). A slot is not rewritten while
// a reader holds it. exports.runtime.FrameRing (src/gpu/frame-ring.ts).
//
// Shared memory layout (little endian): header 64 bytes {u32 magic 'YQPR', u32 version 1, u32 slots, u32 device,
// u64 slotBytes, u64 lastSeq}, then per slot 64 bytes {u32 state (0 free, 1 writing, 2 ready), u32 readers,
// u64 seq, u32 cameraId, u32 format, u32 width, u32 height, u64 frameIndex, u64 timestampUs, u64 bytes, 8 pad}.
#pragma once

#include <napi.h>

namespace yqp {

void InitFrameRing(Napi::Env env, Napi::Object exports);

}  // namespace yqp
