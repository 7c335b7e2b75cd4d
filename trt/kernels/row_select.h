// Row selection on the GPU: of a detector's per-anchor outputs (a score per row, a row of regressors beside it),
// only the rows whose raw score reaches a threshold are written out, compacted per image, so that a few kilobytes
// cross to the host instead of every anchor's row (BlazeFace 128: 61 KB an image). The decode (anchors, NMS) stays
// on the host, on those rows.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace yqp::kernels {

constexpr int kMaxSelectionPairs = 4;
constexpr int kSelectionHeader = 4;

// One (scores, rows) output pair: scores [batch, count] (a trailing 1 allowed), rows [batch, count, width], float32.
struct SelectionPair {
  float const* scores = nullptr;
  float const* rows = nullptr;
  int count = 0;
  int width = 0;
  // Per image: a header of kSelectionHeader int32 (the rows that passed, which may exceed maxRows: then only maxRows
  // were written; the rows of the image; width; maxRows), then maxRows records of [row index, raw score, width
  // values], float32, in no particular order.
  float* out = nullptr;
};

struct SelectionLaunch {
  SelectionPair pairs[kMaxSelectionPairs];
  int pairCount = 0;
  int batch = 0;
  int maxRows = 0;
  float minScore = 0;  // a raw score (logit) at or above it passes
};

// Bytes one pair's selection takes per image.
inline size_t SelectionBytesPerImage(int maxRows, int width) {
  return sizeof(float) * (kSelectionHeader + static_cast<size_t>(maxRows) * (2 + static_cast<size_t>(width)));
}

cudaError_t LaunchRowSelection(SelectionLaunch const& launch, cudaStream_t stream);

}  // namespace yqp::kernels
