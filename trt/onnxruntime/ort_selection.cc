#include "onnxruntime/ort_selection.h"

#include <algorithm>
#include <cstring>
#include <exception>

namespace yqp::ort {
namespace {

constexpr char kSelectedPrefix[] = "selected:";

}  // namespace

std::string RowSelection::Resolve(RowSelectionOptions const& options, std::vector<std::string> const& outputs) {
  pairs_.clear();
  if (options.pairs.empty()) return {};
  if (options.pairs.size() > static_cast<size_t>(kernels::kMaxSelectionPairs))
    return "row selection takes at most " + std::to_string(kernels::kMaxSelectionPairs) + " output pairs";
  if (options.maxRows <= 0) return "row selection needs a positive maxRows";
  auto index = [&](std::string const& name, size_t* out) {
    auto it = std::find(outputs.begin(), outputs.end(), name);
    *out = static_cast<size_t>(it - outputs.begin());
    return it != outputs.end();
  };
  for (auto const& [scores, rows] : options.pairs) {
    Pair p;
    if (!index(scores, &p.scores)) return "row selection names output " + scores + ", which the model does not have";
    if (!index(rows, &p.rows)) return "row selection names output " + rows + ", which the model does not have";
    pairs_.push_back(p);
  }
  minScore_ = options.minScore;
  maxRows_ = options.maxRows;
  return {};
}

bool RowSelection::Selects(size_t output) const {
  for (auto const& p : pairs_)
    if (p.scores == output || p.rows == output) return true;
  return false;
}

std::string RowSelection::Bind(std::vector<void*> const& ptrs, std::vector<std::vector<int64_t>> const& dims,
                               std::vector<int> const& types, std::vector<std::string> const& names,
                               core::BufferPool* pool, Bound* out) const {
  out->launch = {};
  out->bytesPerImage.clear();
  size_t total = 0;
  int64_t batch = 0;
  for (auto const& p : pairs_) {
    for (size_t i : {p.scores, p.rows}) {
      if (ptrs[i] == nullptr || types[i] != kFloat)
        return "row selection needs output " + names[i] + " as float32 of a shape known before the run";
    }
    auto const& s = dims[p.scores];
    auto const& r = dims[p.rows];
    bool scoresOk = s.size() == 2 || (s.size() == 3 && s[2] == 1);
    if (!scoresOk || r.size() != 3 || s[0] != r[0] || s[1] != r[1])
      return "row selection needs " + names[p.scores] + " as [batch, rows] or [batch, rows, 1] and " + names[p.rows] +
             " as [batch, rows, width] of the same rows";
    batch = s[0];
    size_t bytes = kernels::SelectionBytesPerImage(maxRows_, static_cast<int>(r[2]));
    out->bytesPerImage.push_back(bytes);
    total += bytes * static_cast<size_t>(batch);
  }
  try {
    out->memory = pool->Acquire(total);
  } catch (std::exception const& x) {
    return std::string("device memory for the row selection: ") + x.what();
  }
  auto* base = static_cast<char*>(out->memory->data());
  kernels::SelectionLaunch& l = out->launch;
  l.pairCount = static_cast<int>(pairs_.size());
  l.maxRows = maxRows_;
  l.minScore = minScore_;
  for (size_t k = 0; k < pairs_.size(); ++k) {
    Pair const& p = pairs_[k];
    l.pairs[k].scores = static_cast<float const*>(ptrs[p.scores]);
    l.pairs[k].rows = static_cast<float const*>(ptrs[p.rows]);
    l.pairs[k].count = static_cast<int>(dims[p.rows][1]);
    l.pairs[k].width = static_cast<int>(dims[p.rows][2]);
    l.pairs[k].out = reinterpret_cast<float*>(base);
    base += out->bytesPerImage[k] * static_cast<size_t>(batch);
  }
  return {};
}

std::string RowSelection::Enqueue(Bound& bound, int64_t batch, cudaStream_t stream, core::BufferPool* pinned,
                                  std::vector<std::string> const& names, std::vector<HostOutput>* outputs,
                                  uint64_t* copied) const {
  kernels::SelectionLaunch launch = bound.launch;
  launch.batch = static_cast<int>(batch);
  cudaError_t c = kernels::LaunchRowSelection(launch, stream);
  if (c != cudaSuccess) return std::string("launching the row selection: ") + cudaGetErrorString(c);
  for (size_t k = 0; k < pairs_.size(); ++k) {
    HostOutput o;
    o.name = kSelectedPrefix + names[pairs_[k].scores];
    o.type = kFloat;
    o.dims = {batch, static_cast<int64_t>(bound.bytesPerImage[k] / sizeof(float))};
    o.size = bound.bytesPerImage[k] * static_cast<size_t>(batch);
    o.Reserve(pinned);
    c = cudaMemcpyAsync(o.data(), launch.pairs[k].out, o.size, cudaMemcpyDeviceToHost, stream);
    if (c != cudaSuccess) return std::string("copying the row selection to the host: ") + cudaGetErrorString(c);
    *copied += o.size;
    outputs->push_back(std::move(o));
  }
  return {};
}

bool RowSelection::Overflowed(HostOutput const* selected, size_t count) const {
  for (size_t k = 0; k < count; ++k) {
    HostOutput const& o = selected[k];
    size_t perImage = static_cast<size_t>(o.dims[1]) * sizeof(float);
    auto const* data = static_cast<char const*>(o.data());
    for (int64_t b = 0; b < o.dims[0]; ++b) {
      int32_t passed = 0;
      std::memcpy(&passed, data + static_cast<size_t>(b) * perImage, sizeof(passed));
      if (passed > maxRows_) return true;
    }
  }
  return false;
}

}  // namespace yqp::ort
