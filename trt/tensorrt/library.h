// libnvinfer and libnvonnxparser are opened with dlopen, not linked: the addon then loads on machines without
// TensorRT (the CUDA core and the onnxruntime path still work), and availability() can say exactly which library
// failed to load and why. Only the four C entry points below are resolved; everything else is virtual calls.
#pragma once

#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <string>

namespace yqp::trt {

struct LibraryStatus {
  bool loaded = false;
  std::string error;        // why not, when !loaded
  std::string nvinferPath;  // what dlopen was asked for
  std::string parserPath;
  int libVersion = 0;  // getInferLibVersion(): major*10000 + minor*100 + patch
};

// Opens the libraries once (thread-safe); later calls return the same status.
LibraryStatus const& LoadLibraries();

// Header version the adapter was compiled against, "11.1.0".
std::string CompiledVersion();
// "10.16.0" from getInferLibVersion()'s integer.
std::string VersionString(int version);

// Each returns nullptr when the libraries are not loaded (the caller reports LoadLibraries().error).
nvinfer1::IBuilder* CreateBuilder(nvinfer1::ILogger& logger);
nvinfer1::IRuntime* CreateRuntime(nvinfer1::ILogger& logger);
nvonnxparser::IParser* CreateParser(nvinfer1::INetworkDefinition& network, nvinfer1::ILogger& logger);

}  // namespace yqp::trt
