// The fused sampler (sampler.h): one thread per output pixel computes its three channels from the frame in
// device memory and writes them normalized, in the output layout and dtype. The per-pixel code is
// __host__ __device__ so SampleOnHost runs the very same arithmetic on the CPU.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "sampler.h"

namespace yqp::kernels {
namespace {

// Explicitly rounded float32 operations: no contraction into FMA, so host, device and a Math.fround reference
// agree on every sample position and weight.
__host__ __device__ __forceinline__ float Mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  volatile float r = a * b;
  return r;
#endif
}
__host__ __device__ __forceinline__ float Add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  volatile float r = a + b;
  return r;
#endif
}
__host__ __device__ __forceinline__ float Sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  volatile float r = a - b;
  return r;
#endif
}
__host__ __device__ __forceinline__ float Div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  volatile float r = a / b;
  return r;
#endif
}

__host__ __device__ __forceinline__ uint8_t Load(uint8_t const* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

__host__ __device__ __forceinline__ float Clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// RGB value of one source pixel (x, y inside the frame). NV12: BT.601 limited ("video") range, chroma of the
// 2x2 block the pixel belongs to (nearest), clamped to 0..255.
__host__ __device__ __forceinline__ void Fetch(SampleItem const& it, int x, int y, float rgb[3]) {
  int64_t row = static_cast<int64_t>(y) * it.pitch;
  switch (it.format) {
    case kRGB:
    case kBGR:
    case kRGBA:
    case kBGRA: {
      int bpp = it.format >= kRGBA ? 4 : 3;
      uint8_t const* p = it.src + row + static_cast<int64_t>(x) * bpp;
      float c0 = Load(p), c1 = Load(p + 1), c2 = Load(p + 2);
      bool bgr = it.format == kBGR || it.format == kBGRA;
      rgb[0] = bgr ? c2 : c0;
      rgb[1] = c1;
      rgb[2] = bgr ? c0 : c2;
      return;
    }
    default: {
      float Y = Load(it.src + row + x);
      uint8_t const* q = it.uv + static_cast<int64_t>(y >> 1) * it.uvPitch + (x >> 1) * 2;
      float U = Sub(static_cast<float>(Load(q)), 128.f), V = Sub(static_cast<float>(Load(q + 1)), 128.f);
      float yy = Mul(1.164383f, Sub(Y, 16.f));
      rgb[0] = Clamp255(Add(yy, Mul(1.596027f, V)));
      rgb[1] = Clamp255(Sub(Sub(yy, Mul(0.391762f, U)), Mul(0.812968f, V)));
      rgb[2] = Clamp255(Add(yy, Mul(2.017232f, U)));
      return;
    }
  }
}

__host__ __device__ __forceinline__ void FetchOrPad(SampleItem const& it, int x, int y, float pad, float rgb[3]) {
  if (x < 0 || y < 0 || x >= it.width || y >= it.height) {
    rgb[0] = rgb[1] = rgb[2] = pad;
    return;
  }
  Fetch(it, x, y, rgb);
}

// Bilinear with pixel centres at i + 0.5 (PyTorch align_corners=False, antialias=False; OpenCV INTER_LINEAR).
__host__ __device__ __forceinline__ void Bilinear(SampleItem const& it, OutputSpec const& s, float sx, float sy,
                                                  float rgb[3]) {
  float fx = Sub(sx, 0.5f), fy = Sub(sy, 0.5f);
  int x0, y0, x1, y1;
  float lx, ly;
  if (s.border == kClamp) {
    // Torch clamps negative source coordinates to 0; past the far edge both taps are the last pixel.
    float maxx = static_cast<float>(it.width - 1), maxy = static_cast<float>(it.height - 1);
    fx = fx < 0.f ? 0.f : (fx > maxx ? maxx : fx);
    fy = fy < 0.f ? 0.f : (fy > maxy ? maxy : fy);
    x0 = static_cast<int>(fx);
    y0 = static_cast<int>(fy);
    x1 = x0 + 1 < it.width ? x0 + 1 : x0;
    y1 = y0 + 1 < it.height ? y0 + 1 : y0;
    lx = Sub(fx, static_cast<float>(x0));
    ly = Sub(fy, static_cast<float>(y0));
  } else {
    // Far outside: everything is padding (and the int conversion below stays in range).
    if (!(fx > -1.f && fy > -1.f && fx < static_cast<float>(it.width) && fy < static_cast<float>(it.height))) {
      rgb[0] = rgb[1] = rgb[2] = s.padValue;
      return;
    }
    float flx = floorf(fx), fly = floorf(fy);
    x0 = static_cast<int>(flx);
    y0 = static_cast<int>(fly);
    x1 = x0 + 1;
    y1 = y0 + 1;
    lx = Sub(fx, flx);
    ly = Sub(fy, fly);
  }
  float p00[3], p01[3], p10[3], p11[3];
  FetchOrPad(it, x0, y0, s.padValue, p00);
  FetchOrPad(it, x1, y0, s.padValue, p01);
  FetchOrPad(it, x0, y1, s.padValue, p10);
  FetchOrPad(it, x1, y1, s.padValue, p11);
  float wx0 = Sub(1.f, lx), wy0 = Sub(1.f, ly);
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    float top = Add(Mul(wx0, p00[c]), Mul(lx, p01[c]));
    float bottom = Add(Mul(wx0, p10[c]), Mul(lx, p11[c]));
    rgb[c] = Add(Mul(wy0, top), Mul(ly, bottom));
  }
}

__host__ __device__ __forceinline__ float Triangle(float x) {
  x = x < 0.f ? -x : x;
  return x < 1.f ? Sub(1.f, x) : 0.f;
}

// PyTorch's antialias=True bilinear (PIL BILINEAR): triangle filter stretched by the downscale factor, weights
// normalized over the taps inside the frame. center = scale * (o + 0.5) is the matrix's source position.
__host__ __device__ __forceinline__ void Window(float center, float scale, int size, int& lo, int& hi, float& support,
                                                float& inv) {
  support = scale >= 1.f ? scale : 1.f;
  inv = scale >= 1.f ? Div(1.f, scale) : 1.f;
  lo = static_cast<int>(Add(Sub(center, support), 0.5f));
  hi = static_cast<int>(Add(Add(center, support), 0.5f));
  lo = lo < 0 ? 0 : lo;
  hi = hi > size ? size : hi;
}

__host__ __device__ __forceinline__ void Antialias(SampleItem const& it, float cx, float cy, float rgb[3]) {
  int xlo, xhi, ylo, yhi;
  float sup, invx, invy;
  Window(cx, it.m[0], it.width, xlo, xhi, sup, invx);
  Window(cy, it.m[4], it.height, ylo, yhi, sup, invy);
  float totx = 0.f, toty = 0.f;
  for (int x = xlo; x < xhi; ++x) totx = Add(totx, Triangle(Mul(Add(Sub(static_cast<float>(x), cx), 0.5f), invx)));
  for (int y = ylo; y < yhi; ++y) toty = Add(toty, Triangle(Mul(Add(Sub(static_cast<float>(y), cy), 0.5f), invy)));
  float nx = totx > 0.f ? Div(1.f, totx) : 0.f, ny = toty > 0.f ? Div(1.f, toty) : 0.f;
  float acc[3] = {0.f, 0.f, 0.f};
  for (int y = ylo; y < yhi; ++y) {
    float wy = Mul(Triangle(Mul(Add(Sub(static_cast<float>(y), cy), 0.5f), invy)), ny);
    float row[3] = {0.f, 0.f, 0.f};
    for (int x = xlo; x < xhi; ++x) {
      float wx = Mul(Triangle(Mul(Add(Sub(static_cast<float>(x), cx), 0.5f), invx)), nx);
      float p[3];
      Fetch(it, x, y, p);
#pragma unroll
      for (int c = 0; c < 3; ++c) row[c] = Add(row[c], Mul(wx, p[c]));
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) acc[c] = Add(acc[c], Mul(wy, row[c]));
  }
#pragma unroll
  for (int c = 0; c < 3; ++c) rgb[c] = acc[c];
}

// The normalized output channels of output pixel (ox, oy) of one item.
__host__ __device__ __forceinline__ void Pixel(SampleItem const& it, OutputSpec const& s, int ox, int oy,
                                               float out[3]) {
  float rgb[3];
  if (ox < it.x0 || ox >= it.x1 || oy < it.y0 || oy >= it.y1 || it.width <= 0 || it.height <= 0) {
    rgb[0] = rgb[1] = rgb[2] = s.padValue;
  } else {
    float u = static_cast<float>(ox) + 0.5f, v = static_cast<float>(oy) + 0.5f;
    float sx = Add(Add(Mul(it.m[0], u), Mul(it.m[1], v)), it.m[2]);
    float sy = Add(Add(Mul(it.m[3], u), Mul(it.m[4], v)), it.m[5]);
    if (s.filter == kAntialias)
      Antialias(it, sx, sy, rgb);
    else
      Bilinear(it, s, sx, sy, rgb);
  }
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    float p = rgb[s.bgr ? 2 - c : c];
    out[c] = Add(Mul(p, s.a[c]), s.b[c]);
  }
}

template <bool kNchw, bool kFp16>
__host__ __device__ __forceinline__ void Store(OutputSpec const& s, void* out, int index, int ox, int oy,
                                               float const v[3]) {
  int64_t plane = static_cast<int64_t>(s.width) * s.height;
  int64_t base = static_cast<int64_t>(index) * plane * 3;
  int64_t pix = static_cast<int64_t>(oy) * s.width + ox;
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    int64_t o = kNchw ? base + c * plane + pix : base + pix * 3 + c;
    if (kFp16)
      static_cast<__half*>(out)[o] = __float2half_rn(v[c]);
    else
      static_cast<float*>(out)[o] = v[c];
  }
}

struct LaunchParams {
  SampleItem items[kMaxItemsPerLaunch];
  OutputSpec spec;
};

template <bool kNchw, bool kFp16>
__global__ void __launch_bounds__(256) SampleKernel(__grid_constant__ LaunchParams const p, void* out) {
  int ox = blockIdx.x * blockDim.x + threadIdx.x;
  int oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= p.spec.width || oy >= p.spec.height) return;
  SampleItem const& it = p.items[blockIdx.z];
  float v[3];
  Pixel(it, p.spec, ox, oy, v);
  Store<kNchw, kFp16>(p.spec, out, it.outIndex, ox, oy, v);
}

template <bool kNchw, bool kFp16>
void HostLoop(SampleItem const* items, int count, OutputSpec const& s, void* out) {
  for (int i = 0; i < count; ++i)
    for (int oy = 0; oy < s.height; ++oy)
      for (int ox = 0; ox < s.width; ++ox) {
        float v[3];
        Pixel(items[i], s, ox, oy, v);
        Store<kNchw, kFp16>(s, out, items[i].outIndex, ox, oy, v);
      }
}

__global__ void ChainStageKernel(float* data, int64_t n, float w, float bias) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    float x = data[i];
    data[i] = fmaxf(x * w + bias, 0.f) * 0.5f + x * 0.5f;
  }
}

__global__ void ChainDecodeKernel(float const* data, int64_t n, int64_t stride, float threshold, int32_t* count) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    float score = 1.f / (1.f + __expf(-data[i * stride]));
    if (score > threshold) atomicAdd(count, 1);
  }
}

}  // namespace

cudaError_t LaunchSample(SampleItem const* items, int count, OutputSpec const& spec, void* out, cudaStream_t stream) {
  if (count <= 0 || spec.width <= 0 || spec.height <= 0) return cudaSuccess;
  dim3 block(32, 8);
  for (int first = 0; first < count; first += kMaxItemsPerLaunch) {
    int n = std::min(kMaxItemsPerLaunch, count - first);
    LaunchParams p{};
    std::copy(items + first, items + first + n, p.items);
    p.spec = spec;
    dim3 grid((spec.width + block.x - 1) / block.x, (spec.height + block.y - 1) / block.y, n);
    if (spec.nchw)
      spec.fp16 ? SampleKernel<true, true><<<grid, block, 0, stream>>>(p, out)
                : SampleKernel<true, false><<<grid, block, 0, stream>>>(p, out);
    else
      spec.fp16 ? SampleKernel<false, true><<<grid, block, 0, stream>>>(p, out)
                : SampleKernel<false, false><<<grid, block, 0, stream>>>(p, out);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

void SampleOnHost(SampleItem const* items, int count, OutputSpec const& spec, void* out) {
  if (spec.nchw)
    spec.fp16 ? HostLoop<true, true>(items, count, spec, out) : HostLoop<true, false>(items, count, spec, out);
  else
    spec.fp16 ? HostLoop<false, true>(items, count, spec, out) : HostLoop<false, false>(items, count, spec, out);
}

cudaError_t LaunchChainStage(float* data, int64_t n, float w, float bias, cudaStream_t stream) {
  ChainStageKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(data, n, w, bias);
  return cudaGetLastError();
}

cudaError_t LaunchChainDecode(float const* data, int64_t n, int64_t stride, float threshold, int32_t* count,
                              cudaStream_t stream) {
  ChainDecodeKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(data, n, stride, threshold, count);
  return cudaGetLastError();
}

}  // namespace yqp::kernels
