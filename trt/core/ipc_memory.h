// Raw CUDA IPC memory regions, as Triton's CUDA shared-memory extension uses them: one process exports a whole
// cudaMalloc allocation as a cudaIpcMemHandle_t (64 bytes), another opens it. InitIpcMemory adds to exports.runtime:
//   exportIpcMemory(byteSize, device) -> { handle: Uint8Array(64), byteSize, read, write, close }
//   openIpcMemHandle(handle, device, byteSize) -> { byteSize, read(offset, length), write(offset, bytes), close }
// read/write are synchronous cudaMemcpy calls on the calling thread: meant for request-sized copies (a server
// reading an input region), not bulk streaming, which goes through the frame ring and the runtime's async copy.
#pragma once

#include <napi.h>

namespace yqp {

void InitIpcMemory(Napi::Env env, Napi::Object exports);

}  // namespace yqp
