// CUDA graphs captured per key (an input shape, e.g. "1x3x128x128") and replayed on later runs. A capture that
// CUDA refuses (an operation not capturable, or TensorRT declining) runs the work eagerly instead and marks the
// key eager so it is not retried. Not thread-safe: one cache per execution context, used from one thread.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace yqp::core {

struct GraphStats {
  uint64_t captures = 0;   // graphs captured and instantiated
  uint64_t replays = 0;    // cudaGraphLaunch of a cached graph
  uint64_t eagerRuns = 0;  // runs without a graph (fallback or disabled)
  uint64_t failedCaptures = 0;
};

enum class GraphRun { kReplayed, kCaptured, kEager };

class GraphCache {
 public:
  // enqueue(stream, &error) puts the work on stream and returns false with *error when the work itself failed.
  using Enqueue = std::function<bool(cudaStream_t, std::string*)>;

  GraphCache() = default;
  ~GraphCache() { Clear(); }
  GraphCache(GraphCache const&) = delete;
  GraphCache& operator=(GraphCache const&) = delete;

  // Replays the graph of `key` on stream, or captures `enqueue` (first run of the key) and launches it, or runs
  // it eagerly (capture refused earlier, or disabled). Returns false with *error only when the work failed.
  bool Run(std::string const& key, cudaStream_t stream, Enqueue const& enqueue, std::string* error,
           GraphRun* how = nullptr);
  // Drops every graph (e.g. after the buffers they point at changed).
  void Clear();
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  size_t size() const { return graphs_.size(); }
  bool IsEager(std::string const& key) const { return eager_.count(key) != 0; }
  GraphStats const& stats() const { return stats_; }

 private:
  std::unordered_map<std::string, cudaGraphExec_t> graphs_;
  std::unordered_set<std::string> eager_;
  GraphStats stats_;
  bool enabled_ = true;
};

}  // namespace yqp::core
