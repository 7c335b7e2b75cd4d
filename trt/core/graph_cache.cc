#include "core/graph_cache.h"

#include "core/cuda_check.h"

namespace yqp::core {

void GraphCache::Clear() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
  eager_.clear();
}

bool GraphCache::Run(std::string const& key, cudaStream_t stream, Enqueue const& enqueue, std::string* error,
                     GraphRun* how) {
  auto eager = [&]() {
    ++stats_.eagerRuns;
    if (how) *how = GraphRun::kEager;
    return enqueue(stream, error);
  };
  auto found = graphs_.find(key);
  if (found != graphs_.end()) {
    cudaError_t e = cudaGraphLaunch(found->second, stream);
    if (e != cudaSuccess) {
      *error = CudaError(("cudaGraphLaunch (graph '" + key + "')").c_str(), e);
      return false;
    }
    ++stats_.replays;
    if (how) *how = GraphRun::kReplayed;
    return true;
  }
  if (!enabled_ || eager_.count(key)) return eager();

  // ThreadLocal: other threads' unrelated CUDA calls neither join nor break this capture.
  cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    cudaGetLastError();
    ++stats_.failedCaptures;
    eager_.insert(key);
    return eager();
  }
  std::string enqueueError;
  bool ok = enqueue(stream, &enqueueError);
  cudaGraph_t graph = nullptr;
  cudaError_t end = cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  cudaError_t inst = cudaErrorUnknown;
  if (ok && end == cudaSuccess && graph != nullptr) inst = cudaGraphInstantiate(&exec, graph, 0);
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!ok || end != cudaSuccess || inst != cudaSuccess) {
    // Clear the capture's non-sticky error; the work was not executed, so run it for real.
    cudaGetLastError();
    ++stats_.failedCaptures;
    eager_.insert(key);
    return eager();
  }
  e = cudaGraphLaunch(exec, stream);
  if (e != cudaSuccess) {
    cudaGraphExecDestroy(exec);
    *error = CudaError(("cudaGraphLaunch (graph '" + key + "', first launch)").c_str(), e);
    return false;
  }
  graphs_.emplace(key, exec);
  ++stats_.captures;
  if (how) *how = GraphRun::kCaptured;
  return true;
}

}  // namespace yqp::core
