import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBinding } from '../binding.js';
import { YqpError, expectOneOf, expectPositiveInteger, invalidParameter } from '../errors.js';
import { toHalfBits } from '../preprocess/half.js';
import {
  elementsPerImage,
  inputDims,
  normalization,
  placeImage,
  validatePreprocessing,
  type ImageTransform,
} from '../preprocess/spec.js';
import type { ModelConfig, PreprocessingSpec } from '../repository/config.js';
import { tensor, type Tensor } from '../tensor.js';

/**
 * Fused GPU preprocessing (trt/kernels/sampler.cu): uint8 frames of any size to the model input in one pass.
 * Convention (README, "GPU preprocessing and face-ROI kernels"): bilinear with pixel centres at i + 0.5 (PyTorch align_corners=False,
 * antialias=False; OpenCV INTER_LINEAR), edges clamped; 'antialias' is PyTorch's antialias=True bilinear (PIL's
 * BILINEAR), what a 1080p -> 128 downscale wants. Letterbox placement is the CPU path's (src/preprocess/cpu.ts).
 */

export type FrameFormat = 'RGB' | 'BGR' | 'RGBA' | 'BGRA' | 'NV12';
export const FRAME_FORMATS: readonly FrameFormat[] = ['RGB', 'BGR', 'RGBA', 'BGRA', 'NV12'];
export type ResizeFilter = 'bilinear' | 'antialias';

interface FrameShape {
  width: number;
  height: number;
  /** Default RGB. NV12: the Y plane (height rows) then the interleaved UV plane (ceil(height / 2) rows). */
  format?: FrameFormat;
  /** Bytes between rows; default width x bytes per pixel (NV12: width). */
  pitch?: number;
}

/** A frame in host memory. */
export interface HostFrame extends FrameShape {
  data: Uint8Array;
}

/** Where device output goes: a device pointer and its size (a core DeviceBuffer has both: ptr, size). */
export interface DeviceOutput {
  ptr: bigint;
  bytes?: number;
  size?: number;
}

/** A frame already in GPU memory (a device pointer from the CUDA core's pool, a ring slot, an IPC mapping). */
export interface DeviceFrame extends FrameShape {
  ptr: bigint;
  /** NV12: where the UV plane starts; default ptr + pitch * height. */
  uvPtr?: bigint;
}

// ---- native interface (trt/kernels/kernels_binding.cc) -------------------------------------------------------

export interface NativeOutputSpec {
  width: number;
  height: number;
  nchw: boolean;
  fp16: boolean;
  bgr: boolean;
  filter: 0 | 1;
  border: 0 | 1;
  a: number[];
  b: number[];
  padValue: number;
}

export interface NativeItem {
  frame: number;
  width: number;
  height: number;
  format: number;
  pitch: number;
  uvOffset: number;
  uvPitch: number;
  outIndex: number;
  /** source (x, y) = (m0 u + m1 v + m2, m3 u + m4 v + m5) for the output pixel centre (u, v). */
  m: number[];
  /** Output pixels outside [x0, x1) x [y0, y1) are padding. */
  rect: [number, number, number, number];
}

export interface NativeJob<F, O> {
  spec: NativeOutputSpec;
  frames: F[];
  items: NativeItem[];
  out: O;
  outBytes?: number;
  stream?: bigint;
}

export type DeviceJob = NativeJob<bigint, bigint>;
export type HostJob = NativeJob<Uint8Array, Float32Array | Uint16Array>;

/** Where a host-path run spent its time: copy into pinned staging (host clock), H2D, kernel, D2H (CUDA events). */
export interface KernelTimings {
  stagingMs: number;
  uploadMs: number;
  kernelMs: number;
  downloadMs: number;
}

export interface NativeKernelSession {
  readonly stream: bigint;
  run(job: HostJob): Promise<KernelTimings>;
  close(): void;
}

export interface NativeKernels {
  maxItemsPerLaunch: number;
  deviceInfo(device?: number): {
    available: boolean;
    reason?: string;
    count?: number;
    name?: string;
    sm?: string;
    multiprocessors?: number;
    totalMemory?: number;
    runtimeVersion?: number;
    driverVersion?: number;
  };
  malloc(bytes: number): bigint;
  free(ptr: bigint): void;
  upload(ptr: bigint, data: ArrayBufferView): void;
  download(ptr: bigint, data: ArrayBufferView): void;
  memset(ptr: bigint, value: number, bytes: number): void;
  streamCreate(): bigint;
  streamDestroy(stream: bigint): void;
  streamSynchronize(stream: bigint): void;
  sample(job: DeviceJob): void;
  sampleOnHost(job: HostJob): void;
  done(stream: bigint): Promise<void>;
  timeSample(job: DeviceJob, options?: { iterations?: number; warmup?: number }): Promise<number[]>;
  benchChain(
    job: DeviceJob,
    options?: { stages?: number; iterations?: number },
  ): Promise<{
    eagerLaunchUs: number;
    eagerTotalUs: number;
    graphLaunchUs: number;
    graphTotalUs: number;
    graphNodes: number;
    sameResult: boolean;
    decodeCount: number;
  }>;
  Session: new (device?: number) => NativeKernelSession;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let loaded: { kernels?: NativeKernels; path?: string; reason?: string } | undefined;

/**
 * The kernels binding: exports.kernels of the full addon, else the kernels-only addon that
 * trt/kernels/standalone/build.sh makes ($YQP_KERNELS_ADDON or build/kernels/yqp_kernels.node). Never throws.
 */
export function loadKernels(): { kernels?: NativeKernels; path?: string; reason?: string } {
  if (loaded) return loaded;
  const reasons: string[] = [];
  const main = loadBinding();
  if (main.binding && typeof main.binding.kernels === 'object' && main.binding.kernels !== null) {
    loaded = { kernels: main.binding.kernels as NativeKernels, path: main.path };
    return loaded;
  }
  reasons.push(main.binding ? `${main.path} has no kernels` : main.errors.join('; '));
  const require = createRequire(import.meta.url);
  const candidates = [process.env.YQP_KERNELS_ADDON, join(ROOT, 'build', 'kernels', 'yqp_kernels.node')];
  for (const path of candidates) {
    if (!path || !existsSync(path)) continue;
    try {
      const addon = require(path) as { kernels?: NativeKernels };
      if (addon.kernels) {
        loaded = { kernels: addon.kernels, path };
        return loaded;
      }
      reasons.push(`${path} has no kernels`);
    } catch (e) {
      reasons.push(`${path}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  loaded = { reason: `the GPU kernels are not built (${reasons.join('; ')})` };
  return loaded;
}

/** Whether the kernels can run on a GPU here, and if not why (no addon, no driver, no device). */
export function gpuKernelsAvailability(device = 0): {
  available: boolean;
  reason?: string;
  name?: string;
  sm?: string;
} {
  const { kernels, reason } = loadKernels();
  if (!kernels) return { available: false, reason };
  const info = kernels.deviceInfo(device);
  if (!info.available) return { available: false, reason: `no usable NVIDIA GPU: ${info.reason}` };
  return { available: true, name: info.name, sm: info.sm };
}

export function requireKernels(): NativeKernels {
  const { kernels, reason } = loadKernels();
  if (!kernels) throw new YqpError('E_BACKEND_UNAVAILABLE', `GPU preprocessing is unavailable: ${reason}`);
  return kernels;
}

/** Native errors carry a code; they become YqpErrors here. */
export function nativeError(e: unknown): YqpError {
  if (e instanceof YqpError) return e;
  const err = e as { message?: string; code?: string };
  const code = err?.code === 'E_ARGUMENT' || err?.code === 'E_CLOSED' ? err.code : 'E_NATIVE';
  return new YqpError(code, err?.message ?? String(e), { cause: e });
}

// ---- spec and geometry ---------------------------------------------------------------------------------------

/** Checks the spec fields the kernel reads (the shared check of src/preprocess/spec.ts). */
export function validateSpec(spec: PreprocessingSpec, argument = 'spec'): void {
  validatePreprocessing(spec, argument);
}

/** The kernel's output description: value = pixel * a[c] + b[c], as normalizeInto in the CPU path. */
export function outputSpecOf(
  spec: PreprocessingSpec,
  filter: ResizeFilter = 'bilinear',
  border: 'clamp' | 'constant' = 'clamp',
): NativeOutputSpec {
  return {
    width: spec.width,
    height: spec.height,
    nchw: spec.layout === 'NCHW',
    fp16: spec.dtype === 'float16',
    bgr: spec.colorOrder === 'BGR',
    filter: filter === 'antialias' ? 1 : 0,
    border: border === 'constant' ? 1 : 0,
    ...normalization(spec),
    padValue: spec.padValue ?? 0,
  };
}

/** Where a srcWidth x srcHeight frame lands in the model input: the shared placement (src/preprocess/spec.ts). */
export const resizePlacement = placeImage;

const FORMAT_CODE: Record<FrameFormat, number> = { RGB: 0, BGR: 1, RGBA: 2, BGRA: 3, NV12: 4 };
const BYTES_PER_PIXEL: Record<FrameFormat, number> = { RGB: 3, BGR: 3, RGBA: 4, BGRA: 4, NV12: 1 };

export interface FrameLayout {
  format: FrameFormat;
  pitch: number;
  uvOffset: number;
  uvPitch: number;
  /** Bytes the kernel may read from the frame's start. */
  bytes: number;
}

/** Validates a frame's shape and returns its memory layout. */
export function frameLayout(frame: FrameShape, argument: string): FrameLayout {
  if (typeof frame !== 'object' || frame === null) throw invalidParameter(argument, 'a frame object', frame);
  expectPositiveInteger(`${argument}.width`, frame.width);
  expectPositiveInteger(`${argument}.height`, frame.height);
  const format = expectOneOf(`${argument}.format`, frame.format ?? 'RGB', FRAME_FORMATS);
  const row = frame.width * BYTES_PER_PIXEL[format];
  const pitch = frame.pitch ?? row;
  if (!Number.isInteger(pitch) || pitch < row)
    throw invalidParameter(
      `${argument}.pitch`,
      `an integer >= ${row} (width x bytes per pixel)`,
      frame.pitch,
    );
  if (format !== 'NV12')
    return { format, pitch, uvOffset: 0, uvPitch: 0, bytes: pitch * (frame.height - 1) + row };
  const uvRows = Math.ceil(frame.height / 2);
  const uvRow = Math.ceil(frame.width / 2) * 2;
  if (pitch < uvRow) throw invalidParameter(`${argument}.pitch`, `an integer >= ${uvRow}`, pitch);
  const uvOffset = pitch * frame.height;
  return { format, pitch, uvOffset, uvPitch: pitch, bytes: uvOffset + pitch * (uvRows - 1) + uvRow };
}

export function itemFor(
  frameIndex: number,
  frame: FrameShape,
  layout: FrameLayout,
  outIndex: number,
  m: number[],
  rect: [number, number, number, number],
): NativeItem {
  return {
    frame: frameIndex,
    width: frame.width,
    height: frame.height,
    format: FORMAT_CODE[layout.format],
    pitch: layout.pitch,
    uvOffset: layout.uvOffset,
    uvPitch: layout.uvPitch,
    outIndex,
    m,
    rect,
  };
}

export function outputElements(spec: Pick<PreprocessingSpec, 'width' | 'height'>, images: number): number {
  return images * elementsPerImage(spec);
}

/** Dims of the model input the kernel writes for `n` images. */
export function outputDims(spec: PreprocessingSpec, n: number): number[] {
  return inputDims(spec, n);
}

/** One item per frame, image i from frame i (offset by firstIndex). */
export function preprocessItems(
  spec: PreprocessingSpec,
  frames: readonly FrameShape[],
  firstIndex = 0,
  argument = 'frames',
): { items: NativeItem[]; layouts: FrameLayout[]; transforms: ImageTransform[] } {
  if (!Array.isArray(frames) || frames.length === 0)
    throw invalidParameter(argument, 'a non-empty array of frames', frames);
  const items: NativeItem[] = [];
  const layouts: FrameLayout[] = [];
  const transforms: ImageTransform[] = [];
  frames.forEach((frame, i) => {
    const layout = frameLayout(frame, `${argument}[${i}]`);
    const { m, rect, transform } = resizePlacement(spec, frame.width, frame.height);
    items.push(itemFor(i, frame, layout, firstIndex + i, m, rect));
    layouts.push(layout);
    transforms.push(transform);
  });
  return { items, layouts, transforms };
}

export function checkHostFrames(
  frames: readonly HostFrame[],
  layouts: readonly FrameLayout[],
  argument: string,
) {
  frames.forEach((f, i) => {
    if (!(f.data instanceof Uint8Array))
      throw invalidParameter(`${argument}[${i}].data`, 'a Uint8Array', f.data, 'E_IMAGE');
    if (f.data.length < layouts[i].bytes)
      throw invalidParameter(
        `${argument}[${i}].data`,
        `at least ${layouts[i].bytes} bytes`,
        f.data,
        'E_IMAGE',
      );
  });
}

// ---- the CPU reference (same convention, float64 arithmetic, float32 sample positions) ----------------------

const f32 = Math.fround;

function fetchRgb(data: Uint8Array, item: NativeItem, x: number, y: number, out: number[]): void {
  const row = y * item.pitch;
  if (item.format <= 3) {
    const bpp = item.format >= 2 ? 4 : 3;
    const p = row + x * bpp;
    const bgr = item.format === 1 || item.format === 3;
    out[0] = data[bgr ? p + 2 : p];
    out[1] = data[p + 1];
    out[2] = data[bgr ? p : p + 2];
    return;
  }
  const Y = data[row + x];
  const q = item.uvOffset + (y >> 1) * item.uvPitch + (x >> 1) * 2;
  const U = data[q] - 128;
  const V = data[q + 1] - 128;
  const yy = 1.164383 * (Y - 16);
  const clamp = (v: number) => Math.min(255, Math.max(0, v));
  out[0] = clamp(yy + 1.596027 * V);
  out[1] = clamp(yy - 0.391762 * U - 0.812968 * V);
  out[2] = clamp(yy + 2.017232 * U);
}

function window(center: number, scale: number, size: number) {
  const support = scale >= 1 ? scale : 1;
  const inv = scale >= 1 ? f32(1 / scale) : 1;
  const lo = Math.max(0, Math.trunc(f32(f32(center - support) + 0.5)));
  const hi = Math.min(size, Math.trunc(f32(f32(center + support) + 0.5)));
  return { lo, hi, inv };
}

const tri = (x: number) => Math.max(0, 1 - Math.abs(x));

/**
 * The kernel's function in plain TypeScript: sample positions, windows and tap indices are computed in float32
 * exactly as the kernel does; interpolation is float64. The GPU suite holds the kernel to it (max abs diff
 * ~1e-5 of the output range). Slow (a reference, not a CPU backend).
 */
export function referenceSample(job: HostJob): void {
  const { spec, items, frames, out } = job;
  const plane = spec.width * spec.height;
  const half = out instanceof Uint16Array;
  const px = [0, 0, 0];
  const rgb = [0, 0, 0];
  for (const item of items) {
    const data = frames[item.frame];
    const m = item.m.map(f32);
    const W = item.width;
    const H = item.height;
    const fetchOrPad = (x: number, y: number, o: number[]) => {
      if (x < 0 || y < 0 || x >= W || y >= H) o[0] = o[1] = o[2] = f32(spec.padValue);
      else fetchRgb(data, item, x, y, o);
    };
    for (let oy = 0; oy < spec.height; oy++) {
      for (let ox = 0; ox < spec.width; ox++) {
        if (ox < item.rect[0] || ox >= item.rect[2] || oy < item.rect[1] || oy >= item.rect[3]) {
          rgb[0] = rgb[1] = rgb[2] = f32(spec.padValue);
        } else {
          const u = ox + 0.5;
          const v = oy + 0.5;
          const sx = f32(f32(f32(m[0] * u) + f32(m[1] * v)) + m[2]);
          const sy = f32(f32(f32(m[3] * u) + f32(m[4] * v)) + m[5]);
          if (spec.filter === 1) {
            const wx = window(sx, m[0], W);
            const wy = window(sy, m[4], H);
            let totx = 0;
            let toty = 0;
            for (let x = wx.lo; x < wx.hi; x++) totx += tri((x - sx + 0.5) * wx.inv);
            for (let y = wy.lo; y < wy.hi; y++) toty += tri((y - sy + 0.5) * wy.inv);
            rgb[0] = rgb[1] = rgb[2] = 0;
            for (let y = wy.lo; y < wy.hi; y++) {
              const wyv = tri((y - sy + 0.5) * wy.inv) / toty;
              for (let x = wx.lo; x < wx.hi; x++) {
                const w = (wyv * tri((x - sx + 0.5) * wx.inv)) / totx;
                fetchRgb(data, item, x, y, px);
                for (let c = 0; c < 3; c++) rgb[c] += w * px[c];
              }
            }
          } else {
            let fx = f32(sx - 0.5);
            let fy = f32(sy - 0.5);
            let x0: number, y0: number, x1: number, y1: number;
            let outside = false;
            if (spec.border === 0) {
              fx = Math.min(Math.max(fx, 0), W - 1);
              fy = Math.min(Math.max(fy, 0), H - 1);
              x0 = Math.floor(fx);
              y0 = Math.floor(fy);
              x1 = Math.min(x0 + 1, W - 1);
              y1 = Math.min(y0 + 1, H - 1);
            } else {
              outside = !(fx > -1 && fy > -1 && fx < W && fy < H);
              x0 = Math.floor(fx);
              y0 = Math.floor(fy);
              x1 = x0 + 1;
              y1 = y0 + 1;
            }
            if (outside) {
              rgb[0] = rgb[1] = rgb[2] = f32(spec.padValue);
            } else {
              const lx = fx - x0;
              const ly = fy - y0;
              rgb[0] = rgb[1] = rgb[2] = 0;
              const taps: [number, number, number][] = [
                [x0, y0, (1 - lx) * (1 - ly)],
                [x1, y0, lx * (1 - ly)],
                [x0, y1, (1 - lx) * ly],
                [x1, y1, lx * ly],
              ];
              for (const [x, y, w] of taps) {
                fetchOrPad(x, y, px);
                for (let c = 0; c < 3; c++) rgb[c] += w * px[c];
              }
            }
          }
        }
        const base = item.outIndex * plane * 3;
        const pix = oy * spec.width + ox;
        for (let c = 0; c < 3; c++) {
          const value = rgb[spec.bgr ? 2 - c : c] * f32(spec.a[c]) + f32(spec.b[c]);
          const o = spec.nchw ? base + c * plane + pix : base + pix * 3 + c;
          out[o] = half ? toHalfBits(value) : value;
        }
      }
    }
  }
}

// ---- the preprocessor ----------------------------------------------------------------------------------------

export interface GpuPreprocessOptions {
  /** 'bilinear' (default) or 'antialias' (for large downscale factors, e.g. 1080p -> 128). */
  filter?: ResizeFilter;
  device?: number;
}

/**
 * Frames to model input on the GPU with the model's preprocessing spec.
 *  - run(hostFrames): host frames in, a host Tensor out (pinned staging; copies and wait off the event loop);
 *  - enqueue(deviceFrames, out, stream): frames already on the GPU, output into a device buffer, enqueued on the
 *    caller's stream; await done(stream) (or the core's completion) before reading it.
 */
export class GpuPreprocessor {
  readonly spec: PreprocessingSpec;
  readonly filter: ResizeFilter;
  private readonly kernels: NativeKernels;
  private readonly device: number;
  private session?: NativeKernelSession;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  /**
   * The preprocessor of a model, from its config.json's `preprocessing` (what the sharp path and the calibration
   * loader read too): a config, a loaded entry or Model (anything with `.config`).
   */
  static fromConfig(
    source: ModelConfig | { config: ModelConfig },
    options: GpuPreprocessOptions = {},
  ): GpuPreprocessor {
    const config = 'config' in source ? source.config : source;
    if (!config?.preprocessing)
      throw new YqpError(
        'E_CONFIG',
        `Model ${config?.name ?? '(unnamed)'} has no preprocessing spec in config.json`,
        { argument: 'preprocessing' },
      );
    return new GpuPreprocessor(config.preprocessing, options);
  }

  constructor(spec: PreprocessingSpec, options: GpuPreprocessOptions = {}) {
    validateSpec(spec);
    this.spec = spec;
    this.filter = expectOneOf('options.filter', options.filter ?? 'bilinear', [
      'bilinear',
      'antialias',
    ] as const);
    this.device = options.device ?? 0;
    this.kernels = requireKernels();
  }

  /** Host frames -> { tensor, transforms }; calls are queued, one job at a time per preprocessor. */
  run(frames: readonly HostFrame[]): Promise<{
    tensor: Tensor;
    transforms: ImageTransform[];
    timings: KernelTimings;
  }> {
    if (this.closed) return Promise.reject(new YqpError('E_CLOSED', 'GpuPreprocessor is closed'));
    let job: HostJob;
    let transforms: ImageTransform[];
    try {
      const built = preprocessItems(this.spec, frames);
      checkHostFrames(frames, built.layouts, 'frames');
      transforms = built.transforms;
      const n = frames.length;
      const out =
        this.spec.dtype === 'float16'
          ? new Uint16Array(outputElements(this.spec, n))
          : new Float32Array(outputElements(this.spec, n));
      job = {
        spec: outputSpecOf(this.spec, this.filter),
        frames: frames.map((f) => f.data),
        items: built.items,
        out,
      };
    } catch (e) {
      return Promise.reject(e);
    }
    const result = this.queue.then(async () => {
      try {
        this.session ??= new this.kernels.Session(this.device);
        const timings = await this.session.run(job);
        return {
          tensor: tensor(this.spec.dtype, job.out, outputDims(this.spec, frames.length)),
          transforms,
          timings,
        };
      } catch (e) {
        throw nativeError(e);
      }
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Enqueues the preprocessing of device frames into out (a device buffer holding images firstIndex ..
   * firstIndex + frames.length - 1 of the model input) on stream. Returns where each frame landed.
   */
  enqueue(
    frames: readonly DeviceFrame[],
    out: DeviceOutput,
    stream: bigint,
    firstIndex = 0,
  ): ImageTransform[] {
    if (this.closed) throw new YqpError('E_CLOSED', 'GpuPreprocessor is closed');
    const job = deviceJob(this.spec, this.filter, frames, out, stream, firstIndex);
    try {
      this.kernels.sample(job.job);
    } catch (e) {
      throw nativeError(e);
    }
    return job.transforms;
  }

  /** Resolves when the work enqueued so far on stream has finished (never blocks the event loop). */
  done(stream: bigint): Promise<void> {
    return this.kernels.done(stream).catch((e) => Promise.reject(nativeError(e)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.session?.close();
    this.session = undefined;
  }
}

/** The device job of a preprocessing call (also what the benchmarks time). */
export function deviceJob(
  spec: PreprocessingSpec,
  filter: ResizeFilter,
  frames: readonly DeviceFrame[],
  out: DeviceOutput,
  stream: bigint,
  firstIndex = 0,
): { job: DeviceJob; transforms: ImageTransform[] } {
  validateSpec(spec);
  const { items, transforms } = preprocessItems(spec, frames, firstIndex);
  const bases: bigint[] = [];
  frames.forEach((f, i) => {
    if (typeof f.ptr !== 'bigint' || f.ptr === 0n)
      throw invalidParameter(`frames[${i}].ptr`, 'a device pointer (non-zero BigInt)', f.ptr);
    bases.push(f.ptr);
    if (f.uvPtr !== undefined) items[i].uvOffset = Number(f.uvPtr - f.ptr);
  });
  if (typeof out?.ptr !== 'bigint' || out.ptr === 0n)
    throw invalidParameter('out.ptr', 'a device pointer (non-zero BigInt)', out?.ptr);
  const needed = outputElements(spec, firstIndex + frames.length) * (spec.dtype === 'float16' ? 2 : 4);
  const outBytes = out.bytes ?? out.size;
  if (outBytes !== undefined && outBytes < needed)
    throw invalidParameter(
      'out.bytes',
      `at least ${needed} (images 0..${firstIndex + frames.length - 1})`,
      outBytes,
    );
  return {
    job: {
      spec: outputSpecOf(spec, filter),
      frames: bases,
      items,
      out: out.ptr,
      outBytes,
      stream,
    },
    transforms,
  };
}
