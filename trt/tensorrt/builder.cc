#include "builder.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include "calibrator.h"
#include "library.h"

namespace yqp::trt {
namespace {

template <typename T>
struct Deleter {
  void operator()(T* p) const noexcept { delete p; }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

bool ToDims(std::vector<int64_t> const& v, nvinfer1::Dims* dims, std::string* error) {
  if (v.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS)) {
    *error = "shape has " + std::to_string(v.size()) + " dimensions, TensorRT allows " +
             std::to_string(nvinfer1::Dims::MAX_DIMS);
    return false;
  }
  dims->nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) dims->d[i] = v[i];
  return true;
}

std::vector<int64_t> FromDims(nvinfer1::Dims const& d) {
  std::vector<int64_t> v;
  for (int32_t i = 0; i < d.nbDims; ++i) v.push_back(d.d[i]);
  return v;
}

}  // namespace

size_t DataTypeBytes(int32_t dataType) {
  switch (static_cast<nvinfer1::DataType>(dataType)) {
    case nvinfer1::DataType::kFLOAT:
    case nvinfer1::DataType::kINT32:
      return 4;
    case nvinfer1::DataType::kHALF:
    case nvinfer1::DataType::kBF16:
      return 2;
    case nvinfer1::DataType::kINT64:
      return 8;
    default:
      return 1;
  }
}

namespace {

std::string ParserErrors(nvonnxparser::IParser& parser) {
  std::string out;
  for (int32_t i = 0; i < parser.getNbErrors(); ++i) {
    nvonnxparser::IParserError const* e = parser.getError(i);
    if (e == nullptr) continue;
    if (!out.empty()) out += "; ";
    std::string name = e->nodeName() ? e->nodeName() : "";
    std::string op = e->nodeOperator() ? e->nodeOperator() : "";
    if (e->node() >= 0) {
      out += "node " + std::to_string(e->node());
      if (!name.empty()) out += " (" + name + ")";
      if (!op.empty()) out += " operator " + op;
      out += ": ";
    }
    out += e->desc() ? e->desc() : "unknown parser error";
  }
  return out;
}

#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void SetPrecisionFlags10(nvinfer1::IBuilderConfig& config, BuildOptions const& o) {
  if (o.stronglyTyped) return;  // strongly typed networks reject precision flags
  if (o.precision == "fp16") config.setFlag(nvinfer1::BuilderFlag::kFP16);
  if (o.precision == "bf16") config.setFlag(nvinfer1::BuilderFlag::kBF16);
  if (o.precision == "int8") {
    config.setFlag(nvinfer1::BuilderFlag::kINT8);
    // Layers TensorRT cannot run in INT8 fall back to FP16 rather than FP32.
    config.setFlag(nvinfer1::BuilderFlag::kFP16);
  }
}
void SetCalibrator10(nvinfer1::IBuilderConfig& config, nvinfer1::IInt8Calibrator* calibrator,
                     nvinfer1::IOptimizationProfile const* profile) {
  config.setInt8Calibrator(calibrator);
  config.setCalibrationProfile(profile);
}
#pragma GCC diagnostic pop
#endif

}  // namespace

std::string DataTypeName(int32_t dataType) {
  switch (static_cast<nvinfer1::DataType>(dataType)) {
    case nvinfer1::DataType::kFLOAT:
      return "float32";
    case nvinfer1::DataType::kHALF:
      return "float16";
    case nvinfer1::DataType::kINT8:
      return "int8";
    case nvinfer1::DataType::kINT32:
      return "int32";
    case nvinfer1::DataType::kBOOL:
      return "bool";
    case nvinfer1::DataType::kUINT8:
      return "uint8";
    case nvinfer1::DataType::kINT64:
      return "int64";
    case nvinfer1::DataType::kBF16:
      return "bfloat16";
    default:
      return "unsupported";
  }
}

bool BuildEngine(BuildOptions const& o, Logger& logger, ProgressMonitor* monitor, BatchSource* batches,
                 std::shared_ptr<std::atomic<bool>> const& cancelled, BuildResult* result, std::string* error) {
  LibraryStatus const& lib = LoadLibraries();
  if (!lib.loaded) {
    *error = lib.error;
    return false;
  }
  result->libVersion = VersionString(lib.libVersion);

  cudaError_t ce = cudaSetDevice(o.device);
  if (ce != cudaSuccess) {
    *error = "cudaSetDevice(" + std::to_string(o.device) + ") failed: " + cudaGetErrorString(ce);
    return false;
  }
  cudaDeviceProp prop{};
  ce = cudaGetDeviceProperties(&prop, o.device);
  if (ce != cudaSuccess) {
    *error = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(ce);
    return false;
  }
  result->gpuName = prop.name;
  result->sm = std::to_string(prop.major) + "." + std::to_string(prop.minor);

  Owned<nvinfer1::IBuilder> builder(CreateBuilder(logger));
  if (!builder) {
    *error = logger.WithLastError("createInferBuilder failed");
    return false;
  }
  nvinfer1::NetworkDefinitionCreationFlags flags = 0;
#if NV_TENSORRT_MAJOR < 11
  if (o.stronglyTyped) flags |= 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#endif
  Owned<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(flags));
  if (!network) {
    *error = logger.WithLastError("createNetworkV2 failed");
    return false;
  }
  Owned<nvonnxparser::IParser> parser(CreateParser(*network, logger));
  if (!parser) {
    *error = logger.WithLastError("createParser failed");
    return false;
  }
  if (!parser->parseFromFile(o.onnxPath.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
    std::string details = ParserErrors(*parser);
    *error = "TensorRT's ONNX parser rejected " + o.onnxPath + ": " + (details.empty() ? logger.LastError() : details);
    return false;
  }

  for (int32_t i = 0; i < network->getNbInputs(); ++i) {
    nvinfer1::ITensor* t = network->getInput(i);
    result->io.push_back(
        {t->getName(), DataTypeName(static_cast<int32_t>(t->getType())), FromDims(t->getDimensions()), true});
  }
  for (int32_t i = 0; i < network->getNbOutputs(); ++i) {
    nvinfer1::ITensor* t = network->getOutput(i);
    result->io.push_back(
        {t->getName(), DataTypeName(static_cast<int32_t>(t->getType())), FromDims(t->getDimensions()), false});
  }

  Owned<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
  if (!config) {
    *error = logger.WithLastError("createBuilderConfig failed");
    return false;
  }

  std::vector<nvinfer1::IOptimizationProfile*> profiles;  // owned by the builder
  for (size_t p = 0; p < o.profiles.size(); ++p) {
    nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
    for (InputShapeRange const& r : o.profiles[p]) {
      nvinfer1::Dims mn{}, op{}, mx{};
      if (!ToDims(r.min, &mn, error) || !ToDims(r.opt, &op, error) || !ToDims(r.max, &mx, error)) return false;
      if (!profile->setDimensions(r.input.c_str(), nvinfer1::OptProfileSelector::kMIN, mn) ||
          !profile->setDimensions(r.input.c_str(), nvinfer1::OptProfileSelector::kOPT, op) ||
          !profile->setDimensions(r.input.c_str(), nvinfer1::OptProfileSelector::kMAX, mx)) {
        *error =
            logger.WithLastError("profile " + std::to_string(p) + ": TensorRT refused the shapes of input " + r.input);
        return false;
      }
    }
    if (config->addOptimizationProfile(profile) < 0) {
      *error = logger.WithLastError("profile " + std::to_string(p) + " is invalid for this network");
      return false;
    }
    profiles.push_back(profile);
  }

  if (o.optimizationLevel >= 0) config->setBuilderOptimizationLevel(o.optimizationLevel);
  if (o.workspaceBytes >= 0)
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<size_t>(o.workspaceBytes));
  if (o.tacticSharedMemoryBytes >= 0)
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kTACTIC_SHARED_MEMORY,
                               static_cast<size_t>(o.tacticSharedMemoryBytes));
  if (o.versionCompatible) config->setFlag(nvinfer1::BuilderFlag::kVERSION_COMPATIBLE);
  if (o.excludeLeanRuntime) config->setFlag(nvinfer1::BuilderFlag::kEXCLUDE_LEAN_RUNTIME);
  if (o.hardwareCompatibility == "ampere-plus")
    config->setHardwareCompatibilityLevel(nvinfer1::HardwareCompatibilityLevel::kAMPERE_PLUS);
  else if (o.hardwareCompatibility == "same-compute-capability")
    config->setHardwareCompatibilityLevel(nvinfer1::HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY);
  if (o.maxAuxStreams >= 0) config->setMaxAuxStreams(o.maxAuxStreams);
  if (!o.tf32) config->clearFlag(nvinfer1::BuilderFlag::kTF32);
  if (o.sparseWeights) config->setFlag(nvinfer1::BuilderFlag::kSPARSE_WEIGHTS);
  if (o.maxThreads > 0) builder->setMaxThreads(o.maxThreads);
  if (monitor != nullptr) config->setProgressMonitor(monitor);

  Owned<nvinfer1::ITimingCache> timingCache(
      config->createTimingCache(o.timingCache.empty() ? nullptr : o.timingCache.data(), o.timingCache.size()));
  if (!timingCache) {
    *error = logger.WithLastError("the timing cache could not be read (delete it to start a new one)");
    return false;
  }
  if (!config->setTimingCache(*timingCache, o.ignoreTimingCacheMismatch)) {
    *error = logger.WithLastError("the timing cache was made by another TensorRT version or GPU");
    return false;
  }

#if NV_TENSORRT_MAJOR < 11
  SetPrecisionFlags10(*config, o);
  std::unique_ptr<EntropyCalibrator> calibrator;
  if (o.precision == "int8" && o.int8Calibrator) {
    if (o.calibrationProfile < 0 || static_cast<size_t>(o.calibrationProfile) >= profiles.size()) {
      *error = "calibration profile " + std::to_string(o.calibrationProfile) + " does not exist";
      return false;
    }
    std::vector<CalibrationInput> inputs;
    for (InputShapeRange const& r : o.profiles[static_cast<size_t>(o.calibrationProfile)]) {
      size_t elements = 1;
      for (int64_t d : r.opt) elements *= static_cast<size_t>(d);
      int32_t t = static_cast<int32_t>(nvinfer1::DataType::kFLOAT);
      for (int32_t i = 0; i < network->getNbInputs(); ++i)
        if (r.input == network->getInput(i)->getName()) t = static_cast<int32_t>(network->getInput(i)->getType());
      inputs.push_back({r.input, elements * DataTypeBytes(t)});
    }
    calibrator = std::make_unique<EntropyCalibrator>(std::move(inputs), batches, o.calibrationCache, o.device);
    SetCalibrator10(*config, calibrator.get(), profiles[static_cast<size_t>(o.calibrationProfile)]);
  }
#else
  (void)batches;
  if (o.int8Calibrator) {
    *error = "TensorRT " + CompiledVersion() +
             " has no implicit INT8 calibration; build INT8 from the Q/DQ model (yqp-trt build --int8 --calib does)";
    return false;
  }
#endif

  Owned<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
  result->log = logger.Drain();
#if NV_TENSORRT_MAJOR < 11
  if (calibrator) {
    result->calibrationCache = calibrator->cacheOut();
    result->calibrationBatches = calibrator->batches();
    if (!calibrator->error().empty()) {
      *error = "calibration failed: " + calibrator->error();
      return false;
    }
  }
#endif
  if (cancelled && cancelled->load()) {
    result->cancelled = true;
    *error = "the build was cancelled";
    return false;
  }
  if (!plan || plan->size() == 0) {
    *error = logger.WithLastError("buildSerializedNetwork failed");
    return false;
  }
  auto const* bytes = static_cast<uint8_t const*>(plan->data());
  result->plan.assign(bytes, bytes + plan->size());
  Owned<nvinfer1::IHostMemory> cache(timingCache->serialize());
  if (cache) {
    auto const* c = static_cast<uint8_t const*>(cache->data());
    result->timingCache.assign(c, c + cache->size());
  }
  return true;
}

}  // namespace yqp::trt
