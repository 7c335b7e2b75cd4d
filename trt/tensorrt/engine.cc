#include "engine.h"

#include <algorithm>

#include "library.h"

namespace yqp::trt {
namespace {

nvinfer1::Dims ToDims(std::vector<int64_t> const& v) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size() && i < static_cast<size_t>(nvinfer1::Dims::MAX_DIMS); ++i) d.d[i] = v[i];
  return d;
}

std::vector<int64_t> FromDims(nvinfer1::Dims const& d) {
  std::vector<int64_t> v;
  for (int32_t i = 0; i < d.nbDims; ++i) v.push_back(d.d[i]);
  return v;
}

size_t Volume(std::vector<int64_t> const& dims) {
  size_t n = 1;
  for (int64_t d : dims) n *= d < 0 ? 0 : static_cast<size_t>(d);
  return n;
}

nvinfer1::ExecutionContextAllocationStrategy ToTrt(MemoryStrategy s) {
  switch (s) {
    case MemoryStrategy::kOnProfileChange:
      return nvinfer1::ExecutionContextAllocationStrategy::kON_PROFILE_CHANGE;
    case MemoryStrategy::kUserManaged:
      return nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED;
    case MemoryStrategy::kStatic:
      break;
  }
  return nvinfer1::ExecutionContextAllocationStrategy::kSTATIC;
}

}  // namespace

std::string ShapeString(std::vector<int64_t> const& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

std::unique_ptr<Engine> Engine::Deserialize(void const* plan, size_t size, int device, bool allowHostCode,
                                            std::string* error) {
  LibraryStatus const& lib = LoadLibraries();
  if (!lib.loaded) {
    *error = lib.error;
    return nullptr;
  }
  cudaError_t ce = cudaSetDevice(device);
  if (ce != cudaSuccess) {
    *error = "cudaSetDevice(" + std::to_string(device) + ") failed: " + cudaGetErrorString(ce);
    return nullptr;
  }
  std::unique_ptr<Engine> e(new Engine());
  e->runtime_ = CreateRuntime(e->logger_);
  if (e->runtime_ == nullptr) {
    *error = e->logger_.WithLastError("createInferRuntime failed");
    return nullptr;
  }
  if (allowHostCode) e->runtime_->setEngineHostCodeAllowed(true);
  e->engine_ = e->runtime_->deserializeCudaEngine(plan, size);
  if (e->engine_ == nullptr) {
    std::string last = e->logger_.LastError();
    *error = last.empty() ? "deserializeCudaEngine failed" : last;
    return nullptr;
  }
  e->profiles_ = e->engine_->getNbOptimizationProfiles();
  for (int32_t i = 0; i < e->engine_->getNbIOTensors(); ++i) {
    char const* name = e->engine_->getIOTensorName(i);
    EngineTensor t;
    t.name = name;
    t.dataType = static_cast<int32_t>(e->engine_->getTensorDataType(name));
    t.elementBytes = DataTypeBytes(t.dataType);
    t.input = e->engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
    t.dims = FromDims(e->engine_->getTensorShape(name));
    if (t.input) {
      for (int32_t p = 0; p < e->profiles_; ++p) {
        t.min.push_back(FromDims(e->engine_->getProfileShape(name, p, nvinfer1::OptProfileSelector::kMIN)));
        t.opt.push_back(FromDims(e->engine_->getProfileShape(name, p, nvinfer1::OptProfileSelector::kOPT)));
        t.max.push_back(FromDims(e->engine_->getProfileShape(name, p, nvinfer1::OptProfileSelector::kMAX)));
        t.maxBytes = std::max(t.maxBytes, Volume(t.max.back()) * t.elementBytes);
      }
      if (e->profiles_ == 0) t.maxBytes = Volume(t.dims) * t.elementBytes;
    }
    e->tensors_.push_back(std::move(t));
  }
  return e;
}

Engine::~Engine() {
  delete engine_;
  delete runtime_;
}

int64_t Engine::deviceMemoryBytes() const { return engine_->getDeviceMemorySizeV2(); }

int32_t Engine::PickProfile(std::vector<std::vector<int64_t>> const& shapes, std::string* why) const {
  std::string firstWhy;
  for (int32_t p = 0; p < std::max(profiles_, 1); ++p) {
    bool fits = true;
    size_t k = 0;
    for (EngineTensor const& t : tensors_) {
      if (!t.input) continue;
      std::vector<int64_t> const& s = shapes[k++];
      std::vector<int64_t> const& mn = profiles_ ? t.min[static_cast<size_t>(p)] : t.dims;
      std::vector<int64_t> const& mx = profiles_ ? t.max[static_cast<size_t>(p)] : t.dims;
      if (s.size() != mn.size()) {
        fits = false;
        if (firstWhy.empty())
          firstWhy =
              t.name + " has rank " + std::to_string(s.size()) + ", the engine expects " + std::to_string(mn.size());
        break;
      }
      for (size_t d = 0; d < s.size(); ++d) {
        if (s[d] < mn[d] || s[d] > mx[d]) {
          fits = false;
          if (firstWhy.empty())
            firstWhy = t.name + " shape " + ShapeString(s) + " is outside every profile (profile " + std::to_string(p) +
                       " allows " + ShapeString(mn) + " to " + ShapeString(mx) + ")";
          break;
        }
      }
      if (!fits) break;
    }
    if (fits) return p;
  }
  *why = firstWhy;
  return -1;
}

std::unique_ptr<Context> Context::Create(Engine& engine, MemoryStrategy strategy, void* sharedMemory,
                                         std::string* error) {
  std::unique_ptr<Context> c(new Context(engine));
  c->context_ = engine.raw()->createExecutionContext(ToTrt(strategy));
  if (c->context_ == nullptr) {
    *error = engine.logger().WithLastError("createExecutionContext failed");
    return nullptr;
  }
  if (strategy == MemoryStrategy::kUserManaged) {
    if (sharedMemory == nullptr) {
      *error = "user-managed device memory needs a shared buffer";
      return nullptr;
    }
    c->context_->setDeviceMemoryV2(sharedMemory, engine.deviceMemoryBytes());
  }
  return c;
}

Context::~Context() { delete context_; }

bool Context::SetShapes(int32_t profile, std::vector<std::vector<int64_t>> const& shapes, cudaStream_t stream,
                        std::string* error) {
  // The order TensorRT requires: profile first (it resets shapes), then every input shape.
  if (profile != profile_ && engine_.profiles() > 0) {
    if (!context_->setOptimizationProfileAsync(profile, stream)) {
      *error = engine_.logger().WithLastError("setOptimizationProfileAsync(" + std::to_string(profile) + ") failed");
      return false;
    }
    profile_ = profile;
    shapes_.clear();
    ++generation_;
  }
  if (shapes == shapes_) return true;
  size_t k = 0;
  for (EngineTensor const& t : engine_.tensors()) {
    if (!t.input) continue;
    if (!context_->setInputShape(t.name.c_str(), ToDims(shapes[k]))) {
      *error = engine_.logger().WithLastError("setInputShape(" + t.name + ", " + ShapeString(shapes[k]) + ") failed");
      shapes_.clear();
      return false;
    }
    ++k;
  }
  shapes_ = shapes;
  ++generation_;
  return true;
}

bool Context::OutputShape(size_t index, std::vector<int64_t>* dims, std::string* error) {
  EngineTensor const& t = engine_.tensors()[index];
  *dims = FromDims(context_->getTensorShape(t.name.c_str()));
  for (int64_t d : *dims) {
    if (d < 0) {
      *error = "output " + t.name + " has a data-dependent shape " + ShapeString(*dims) + ", which is not supported";
      return false;
    }
  }
  return true;
}

bool Context::SetAddress(size_t index, void* address, std::string* error) {
  EngineTensor const& t = engine_.tensors()[index];
  if (!context_->setTensorAddress(t.name.c_str(), address)) {
    *error = engine_.logger().WithLastError("setTensorAddress(" + t.name + ") failed");
    return false;
  }
  return true;
}

bool Context::Enqueue(cudaStream_t stream, std::string* error) {
  if (!context_->enqueueV3(stream)) {
    *error = engine_.logger().WithLastError("enqueueV3 failed");
    return false;
  }
  return true;
}

bool Context::MeasureMaxBytes(cudaStream_t stream, std::vector<size_t>* bytes, std::string* error) {
  std::vector<EngineTensor> const& tensors = engine_.tensors();
  bytes->assign(tensors.size(), 0);
  for (size_t i = 0; i < tensors.size(); ++i) (*bytes)[i] = tensors[i].maxBytes;
  for (int32_t p = 0; p < std::max(engine_.profiles(), 1); ++p) {
    std::vector<std::vector<int64_t>> shapes;
    for (EngineTensor const& t : tensors)
      if (t.input) shapes.push_back(engine_.profiles() ? t.max[static_cast<size_t>(p)] : t.dims);
    if (!SetShapes(p, shapes, stream, error)) return false;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].input) continue;
      std::vector<int64_t> dims;
      if (!OutputShape(i, &dims, error)) return false;
      (*bytes)[i] = std::max((*bytes)[i], Volume(dims) * tensors[i].elementBytes);
    }
  }
  cudaError_t e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) {
    *error = std::string("cudaStreamSynchronize failed: ") + cudaGetErrorString(e);
    return false;
  }
  return true;
}

}  // namespace yqp::trt
