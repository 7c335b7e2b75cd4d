// onnxruntime's EP-device route to the CUDA provider (1.22 and later): the provider library registered with the
// runtime's environment once, its devices listed, and a session's CUDA provider appended by device with string
// options. It is the only route by which a core built without CUDA (the npm GPU build, whose V2 option structs
// are "not enabled in this build") takes enable_cuda_graph: onnxruntime then captures and replays its own graph.
#pragma once

#include <string>
#include <vector>

#include "onnxruntime/ort_api.h"

namespace yqp::ort {

// The CUDA provider's devices in the order the provider lists them (its CUDA ordinals), or *error saying why the
// route is closed (no EP-device API in this onnxruntime, no provider library, no device). Registered once per
// runtime; later calls return the first answer.
std::vector<OrtEpDevice const*> CudaEpDevices(Runtime const* rt, std::string* error);

// Appends the CUDA provider of device `ordinal` with `keys`/`values` (onnxruntime's CUDA option names); "" or why.
std::string AppendCudaByDevice(Runtime const* rt, OrtSessionOptions* so, int ordinal,
                               std::vector<std::string> const& keys, std::vector<std::string> const& values);

}  // namespace yqp::ort
