// What the TensorRT runtime needs from the CUDA core, in one place: a stream per context, device and pinned
// buffers, completion to JavaScript and CUDA graph capture/replay. engine_binding.cc uses only this, so the
// TensorRT adapter has no scheduling, buffer, stream, completion or graph logic of its own; core_bridge.cc maps
// each call onto trt/core.
#pragma once

#include <napi.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace yqp::trt::bridge {

// A CUDA stream owned by the core for the lifetime of the handle.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual cudaStream_t get() const = 0;
};
std::unique_ptr<Stream> AcquireStream(int device, std::string* error);

// Device or pinned host memory from the core's pools, returned on destruction.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() const = 0;
  virtual size_t size() const = 0;
};
std::unique_ptr<Buffer> AllocDevice(int device, size_t bytes, std::string* error);
std::unique_ptr<Buffer> AllocPinned(size_t bytes, std::string* error);

// Calls `done` on the JavaScript thread once `stream` has reached this point (host function or event, never a
// blocking synchronize), with the CUDA error string when the stream failed. Keeps the event loop alive until then.
void OnStreamComplete(Napi::Env env, cudaStream_t stream, std::function<void(Napi::Env, std::string const& error)> done);

// CUDA graphs per (owner, key): replays the graph captured for `key` on `stream`, or runs `enqueue` (capturing it
// when capture is allowed). Returns false with *error only when the work itself failed; a capture that CUDA or
// TensorRT refuses falls back to plain `enqueue` and is not retried for that owner.
class GraphCache {
 public:
  virtual ~GraphCache() = default;
  virtual bool Run(uint64_t key, cudaStream_t stream, std::function<bool(cudaStream_t, std::string*)> const& enqueue,
                   std::string* error) = 0;
  virtual void Clear() = 0;
  // Graphs held, and whether capture was given up for this owner (for tests and stats).
  virtual size_t size() const = 0;
  virtual bool captureDisabled() const = 0;
};
std::unique_ptr<GraphCache> MakeGraphCache();

// Orders work of contexts that share one user-managed memory block: Before() makes `stream` wait for the last
// work recorded by After() on any stream.
class Serializer {
 public:
  virtual ~Serializer() = default;
  virtual bool Before(cudaStream_t stream, std::string* error) = 0;
  virtual bool After(cudaStream_t stream, std::string* error) = 0;
};
std::unique_ptr<Serializer> MakeSerializer(std::string* error);

std::string CudaError(char const* what, cudaError_t e);

}  // namespace yqp::trt::bridge
