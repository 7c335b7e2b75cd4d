#include "library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace yqp::trt {
namespace {

using CreateFn = void* (*)(void*, int32_t);
using CreateParserFn = void* (*)(void*, void*, int);
using VersionFn = int32_t (*)();

struct Symbols {
  CreateFn createBuilder = nullptr;
  CreateFn createRuntime = nullptr;
  CreateParserFn createParser = nullptr;
  VersionFn libVersion = nullptr;
};

Symbols g_symbols;
LibraryStatus g_status;
std::once_flag g_once;

std::string DlError() {
  char const* e = dlerror();
  return e == nullptr ? std::string("unknown dlopen error") : std::string(e);
}

// YQP_TENSORRT_LIB_DIR points at TensorRT's lib/ when it is not on the loader path.
std::string LibPath(char const* stem) {
  std::string name = std::string(stem) + ".so." + std::to_string(NV_TENSORRT_MAJOR);
  char const* dir = std::getenv("YQP_TENSORRT_LIB_DIR");
  if (dir != nullptr && dir[0] != '\0') return std::string(dir) + "/" + name;
  return name;
}

void Load() {
  g_status.nvinferPath = LibPath("libnvinfer");
  g_status.parserPath = LibPath("libnvonnxparser");
  void* nvinfer = dlopen(g_status.nvinferPath.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (nvinfer == nullptr) {
    g_status.error = "cannot load " + g_status.nvinferPath + ": " + DlError();
    return;
  }
  g_symbols.createBuilder = reinterpret_cast<CreateFn>(dlsym(nvinfer, "createInferBuilder_INTERNAL"));
  g_symbols.createRuntime = reinterpret_cast<CreateFn>(dlsym(nvinfer, "createInferRuntime_INTERNAL"));
  g_symbols.libVersion = reinterpret_cast<VersionFn>(dlsym(nvinfer, "getInferLibVersion"));
  if (g_symbols.createBuilder == nullptr || g_symbols.createRuntime == nullptr || g_symbols.libVersion == nullptr) {
    g_status.error = g_status.nvinferPath + " lacks TensorRT's entry points: " + DlError();
    return;
  }
  g_status.libVersion = g_symbols.libVersion();
  // The C++ ABI (vtable layout) and the plan format change between major versions.
  if (g_status.libVersion / 10000 != NV_TENSORRT_MAJOR) {
    g_status.error = "found TensorRT " + VersionString(g_status.libVersion) + " but the addon was compiled against " +
                     CompiledVersion() + "; rebuild with TENSORRT_ROOT pointing at the installed TensorRT";
    return;
  }
  void* parser = dlopen(g_status.parserPath.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (parser == nullptr) {
    g_status.error = "cannot load " + g_status.parserPath + ": " + DlError();
    return;
  }
  g_symbols.createParser = reinterpret_cast<CreateParserFn>(dlsym(parser, "createNvOnnxParser_INTERNAL"));
  if (g_symbols.createParser == nullptr) {
    g_status.error = g_status.parserPath + " lacks createNvOnnxParser_INTERNAL: " + DlError();
    return;
  }
  g_status.loaded = true;
}

}  // namespace

LibraryStatus const& LoadLibraries() {
  std::call_once(g_once, Load);
  return g_status;
}

std::string VersionString(int version) {
  return std::to_string(version / 10000) + "." + std::to_string((version / 100) % 100) + "." +
         std::to_string(version % 100);
}

std::string CompiledVersion() {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH);
}

nvinfer1::IBuilder* CreateBuilder(nvinfer1::ILogger& logger) {
  if (!LoadLibraries().loaded) return nullptr;
  return static_cast<nvinfer1::IBuilder*>(
      g_symbols.createBuilder(static_cast<void*>(&logger), static_cast<int32_t>(NV_TENSORRT_VERSION)));
}

nvinfer1::IRuntime* CreateRuntime(nvinfer1::ILogger& logger) {
  if (!LoadLibraries().loaded) return nullptr;
  return static_cast<nvinfer1::IRuntime*>(
      g_symbols.createRuntime(static_cast<void*>(&logger), static_cast<int32_t>(NV_TENSORRT_VERSION)));
}

nvonnxparser::IParser* CreateParser(nvinfer1::INetworkDefinition& network, nvinfer1::ILogger& logger) {
  if (!LoadLibraries().loaded) return nullptr;
  return static_cast<nvonnxparser::IParser*>(g_symbols.createParser(
      static_cast<void*>(&network), static_cast<void*>(&logger), static_cast<int>(NV_ONNX_PARSER_VERSION)));
}

}  // namespace yqp::trt
