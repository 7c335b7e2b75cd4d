// Fused image sampling: uint8 camera frames (RGB, BGR, RGBA, BGRA, NV12) of any size to a model input in one
// pass: affine or axis-aligned resampling (bilinear, or antialiased triangle filter for downscaling), colour
// reorder, value = pixel * a[c] + b[c] (a = scale / std, b = -mean / std), NHWC or NCHW, fp32 or fp16.
// The preprocessing kernel (stretch, letterbox) and the face-ROI kernel (rotated crops) are both this sampler:
// they only differ in the per-item matrix, content rectangle and border mode, which the TypeScript side computes.
//
// Convention (README, "GPU preprocessing and face-ROI kernels"): output pixel (ox, oy) has its centre at (ox + 0.5, oy
// + 0.5); the matrix maps it to a source position whose pixel centres are at (i + 0.5, j + 0.5), as OpenCV and
// PyTorch's align_corners=False do. All coordinate arithmetic is float32 with no fused multiply-add, so a reference
// that rounds each step to float32 (Math.fround) reproduces the sample positions bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace yqp::kernels {

enum PixelFormat : int32_t { kRGB = 0, kBGR = 1, kRGBA = 2, kBGRA = 3, kNV12 = 4 };
// Bilinear: 4 taps (antialias off). Antialias: PyTorch's antialias=True bilinear (= PIL's BILINEAR), a triangle
// filter whose support grows with the downscale factor; axis-aligned matrices only (m[1] == m[3] == 0).
enum Filter : int32_t { kBilinear = 0, kAntialias = 1 };
// Clamp: taps outside the frame repeat the edge (resize, as PyTorch and OpenCV). Constant: taps outside the
// frame read padValue (ROI crops that reach past the frame, as cv2.warpAffine's BORDER_CONSTANT).
enum Border : int32_t { kClamp = 0, kConstant = 1 };

// One output image. 88 bytes; up to kMaxItemsPerLaunch of them travel as kernel parameters (constant bank),
// so concurrent launches on different streams never share mutable state.
struct SampleItem {
  uint8_t const* src;  // packed pixels, or the Y plane of NV12
  uint8_t const* uv;   // NV12 interleaved UV plane (half width, half height); unused otherwise
  int32_t width;       // source size in pixels
  int32_t height;
  int32_t pitch;  // bytes between rows of src
  int32_t uvPitch;
  int32_t format;    // PixelFormat
  int32_t outIndex;  // batch index of the output image
  // source (x, y) = (m0 * u + m1 * v + m2, m3 * u + m4 * v + m5), (u, v) = output pixel centre
  float m[6];
  // Output pixels outside [x0, x1) x [y0, y1) are padding (letterbox bars).
  int32_t x0, y0, x1, y1;
};

struct OutputSpec {
  int32_t width;
  int32_t height;
  int32_t nchw;    // 0: NHWC, 1: NCHW
  int32_t fp16;    // 0: float32, 1: float16 (round to nearest even)
  int32_t bgr;     // output channel order: 0 RGB, 1 BGR
  int32_t filter;  // Filter
  int32_t border;  // Border
  float a[3];      // per output channel: value = pixel * a[c] + b[c]
  float b[3];
  float padValue;  // pixel value (0..255) of padding, before a/b
};

constexpr int kMaxItemsPerLaunch = 32;

// Enqueues the sampling of `count` items on `stream` (split into launches of kMaxItemsPerLaunch). `out` points
// at image 0 of the output tensor; item i writes image items[i].outIndex. Returns the launch error, if any.
cudaError_t LaunchSample(SampleItem const* items, int count, OutputSpec const& spec, void* out, cudaStream_t stream);

// The same computation on the CPU (host pointers), pixel for pixel the same code as the kernel: the reference
// the GPU suite compares with besides the TypeScript one, and a check that runs on machines with no GPU.
void SampleOnHost(SampleItem const* items, int count, OutputSpec const& spec, void* out);

// Stand-in kernels for the CUDA-graph benchmark (a preprocess -> "model" -> decode chain).
cudaError_t LaunchChainStage(float* data, int64_t n, float w, float bias, cudaStream_t stream);
cudaError_t LaunchChainDecode(float const* data, int64_t n, int64_t stride, float threshold, int32_t* count,
                              cudaStream_t stream);

}  // namespace yqp::kernels
