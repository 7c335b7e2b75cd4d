import { YqpError, expectOneOf, invalidParameter } from '../errors.js';
import type {
  DeviceJob,
  HostJob,
  KernelTimings,
  NativeKernelSession,
  NativeKernels,
} from '../native/kernels.js';
import { loadKernels } from '../native/binding.js';
import type { ImageTransform } from '../preprocess/spec.js';
import type { ModelConfig, PreprocessingSpec } from '../repository/config.js';
import { tensor, type Tensor } from '../tensor.js';
import {
  checkHostFrames,
  outputDims,
  outputElements,
  outputSpecOf,
  preprocessItems,
  validateSpec,
  type DeviceFrame,
  type DeviceOutput,
  type HostFrame,
  type ResizeFilter,
} from './frames.js';

/**
 * Fused GPU preprocessing (trt/kernels/sampler.cu): uint8 frames of any size to the model input in one pass.
 * Convention (README, "GPU preprocessing and face-ROI kernels"): bilinear with pixel centres at i + 0.5 (PyTorch align_corners=False,
 * antialias=False; OpenCV INTER_LINEAR), edges clamped; 'antialias' is PyTorch's antialias=True bilinear (PIL's
 * BILINEAR), what a 1080p -> 128 downscale wants. Letterbox placement is the CPU path's (src/preprocess/cpu.ts).
 */
// What this module offered before it was split (frames.ts: frames and jobs; reference-sampler.ts: the kernel in
// TypeScript; src/native: the addon's types and loader); importers keep their paths.
export * from './frames.js';
export { referenceSample } from './reference-sampler.js';
export type {
  NativeOutputSpec,
  NativeItem,
  NativeJob,
  DeviceJob,
  HostJob,
  KernelTimings,
  NativeKernelSession,
  NativeKernels,
} from '../native/kernels.js';
export { loadKernels } from '../native/binding.js';

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
