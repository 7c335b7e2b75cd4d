// Row selection of a CUDA run's outputs (RowSelectionOptions): after the model, a kernel (kernels/row_select.h)
// keeps only the rows whose raw score reaches the threshold, and those come back instead of the (scores, rows)
// outputs themselves: "selected:<scores output>", float32 [batch, 4 + maxRows * (2 + width)] (per image a header of
// int32 bits: rows passed, rows, width, maxRows; then [row index, raw score, row...] records in no particular order).
// An image with more rows passed than maxRows makes the run copy the full outputs instead (counted): nothing is lost.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer_pool.h"
#include "kernels/row_select.h"
#include "onnxruntime/ort_device.h"
#include "onnxruntime/ort_providers.h"

namespace yqp::ort {

class RowSelection {
 public:
  // Names to output indices: "" or the reason (an unknown output, too many pairs, a bad maxRows).
  std::string Resolve(RowSelectionOptions const& options, std::vector<std::string> const& outputs);
  bool enabled() const { return !pairs_.empty(); }
  // Whether output i is one of a pair's (not copied back unless the selection overflows).
  bool Selects(size_t output) const;

  // One binding's selection: its kernel launch and the device memory it writes.
  struct Bound {
    std::unique_ptr<core::Lease> memory;
    kernels::SelectionLaunch launch;
    std::vector<size_t> bytesPerImage;  // per pair
  };
  // Checks a binding's outputs (bound here, float32, [B, N] or [B, N, 1] beside [B, N, W]) and leases the memory.
  std::string Bind(std::vector<void*> const& ptrs, std::vector<std::vector<int64_t>> const& dims,
                   std::vector<int> const& types, std::vector<std::string> const& names, core::BufferPool* pool,
                   Bound* out) const;
  // Enqueues the kernel over the first `batch` images and the copies of their selections into pinned memory: one
  // output per pair, appended to `outputs`. Returns "" or the CUDA error; adds the bytes copied to `copied`.
  std::string Enqueue(Bound& bound, int64_t batch, cudaStream_t stream, core::BufferPool* pinned,
                      std::vector<std::string> const& names, std::vector<HostOutput>* outputs, uint64_t* copied) const;
  // After the stream synchronized: whether an image of `selected` (the outputs Enqueue appended) passed more rows
  // than were kept.
  bool Overflowed(HostOutput const* selected, size_t count) const;

 private:
  struct Pair {
    size_t scores = 0, rows = 0;
  };
  std::vector<Pair> pairs_;
  float minScore_ = 0;
  int maxRows_ = 0;
};

}  // namespace yqp::ort
