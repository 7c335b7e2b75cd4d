import { YqpError, invalidParameter } from '../errors.js';
import { type FaceRoi, roiMatrix } from '../preprocess/rotated-crop.js';
import type { PreprocessingSpec } from '../repository/config.js';
import { tensor, type Tensor } from '../tensor.js';
import {
  type DeviceFrame,
  type DeviceOutput,
  type DeviceJob,
  type HostFrame,
  type HostJob,
  type NativeItem,
  type NativeKernelSession,
  type NativeKernels,
  checkHostFrames,
  frameLayout,
  itemFor,
  nativeError,
  outputDims,
  outputElements,
  outputSpecOf,
  requireKernels,
  validateSpec,
} from './preprocess.js';

// The ROI placement (faceRoi, landmarksRoi, roiMatrix) is the preprocessing module's rotated-crop spec, shared with
// the CPU sampler (src/preprocess/rotated-crop.ts); this file runs it on the GPU (trt/kernels/sampler.cu).
export {
  type FaceRoi,
  type RoiOptions,
  faceRoi,
  landmarksRoi,
  normalizeRadians,
  roiMatrix,
  roiToFrame,
} from '../preprocess/rotated-crop.js';

function roiItems(
  spec: PreprocessingSpec,
  frames: readonly { width: number; height: number; format?: HostFrame['format']; pitch?: number }[],
  rois: readonly FaceRoi[],
  firstIndex: number,
): { items: NativeItem[]; layouts: ReturnType<typeof frameLayout>[] } {
  if (!Array.isArray(frames) || frames.length === 0)
    throw invalidParameter('frames', 'a non-empty array of frames', frames);
  if (!Array.isArray(rois) || rois.length === 0)
    throw invalidParameter('rois', 'a non-empty array of ROIs', rois);
  const layouts = frames.map((f, i) => frameLayout(f, `frames[${i}]`));
  const items = rois.map((roi, i) => {
    if (!Number.isInteger(roi.frame) || roi.frame < 0 || roi.frame >= frames.length)
      throw invalidParameter(`rois[${i}].frame`, `an integer in 0..${frames.length - 1}`, roi.frame);
    if (![roi.cx, roi.cy, roi.angle].every(Number.isFinite) || !(roi.size > 0))
      throw invalidParameter(`rois[${i}]`, 'finite cx, cy, angle and a positive size', roi);
    return itemFor(
      roi.frame,
      frames[roi.frame],
      layouts[roi.frame],
      firstIndex + i,
      roiMatrix(roi, spec.width, spec.height),
      [0, 0, spec.width, spec.height],
    );
  });
  return { items, layouts };
}

/** The host job for ROI crops (also what the reference and the tests use). */
export function roiHostJob(
  spec: PreprocessingSpec,
  frames: readonly HostFrame[],
  rois: readonly FaceRoi[],
): HostJob {
  validateSpec(spec);
  const { items, layouts } = roiItems(spec, frames, rois, 0);
  checkHostFrames(frames, layouts, 'frames');
  const n = rois.length;
  return {
    spec: outputSpecOf(spec, 'bilinear', 'constant'),
    frames: frames.map((f) => f.data),
    items,
    out:
      spec.dtype === 'float16'
        ? new Uint16Array(outputElements(spec, n))
        : new Float32Array(outputElements(spec, n)),
  };
}

export function roiDeviceJob(
  spec: PreprocessingSpec,
  frames: readonly DeviceFrame[],
  rois: readonly FaceRoi[],
  out: DeviceOutput,
  stream: bigint,
  firstIndex = 0,
): DeviceJob {
  validateSpec(spec);
  const { items } = roiItems(spec, frames, rois, firstIndex);
  frames.forEach((f, i) => {
    if (typeof f.ptr !== 'bigint' || f.ptr === 0n)
      throw invalidParameter(`frames[${i}].ptr`, 'a device pointer (non-zero BigInt)', f.ptr);
  });
  items.forEach((it) => {
    const f = frames[it.frame];
    if (f.uvPtr !== undefined) it.uvOffset = Number(f.uvPtr - f.ptr);
  });
  if (typeof out?.ptr !== 'bigint' || out.ptr === 0n)
    throw invalidParameter('out.ptr', 'a device pointer (non-zero BigInt)', out?.ptr);
  const needed = outputElements(spec, firstIndex + rois.length) * (spec.dtype === 'float16' ? 2 : 4);
  const outBytes = out.bytes ?? out.size;
  if (outBytes !== undefined && outBytes < needed)
    throw invalidParameter('out.bytes', `at least ${needed}`, outBytes);
  return {
    spec: outputSpecOf(spec, 'bilinear', 'constant'),
    frames: frames.map((f) => f.ptr),
    items,
    out: out.ptr,
    outBytes,
    stream,
  };
}

/**
 * Batched face crops into a landmark model's input (e.g. 256x256 NHWC), straight from frames in GPU memory
 * (enqueue) or from host frames (run).
 */
export class GpuRoiCropper {
  readonly spec: PreprocessingSpec;
  private readonly kernels: NativeKernels;
  private readonly device: number;
  private session?: NativeKernelSession;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(spec: PreprocessingSpec, options: { device?: number } = {}) {
    validateSpec(spec);
    this.spec = spec;
    this.device = options.device ?? 0;
    this.kernels = requireKernels();
  }

  run(frames: readonly HostFrame[], rois: readonly FaceRoi[]): Promise<Tensor> {
    if (this.closed) return Promise.reject(new YqpError('E_CLOSED', 'GpuRoiCropper is closed'));
    let job: HostJob;
    try {
      job = roiHostJob(this.spec, frames, rois);
    } catch (e) {
      return Promise.reject(e);
    }
    const result = this.queue.then(async () => {
      try {
        this.session ??= new this.kernels.Session(this.device);
        await this.session.run(job);
      } catch (e) {
        throw nativeError(e);
      }
      return tensor(this.spec.dtype, job.out, outputDims(this.spec, rois.length));
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Enqueues crops of device frames into out (images firstIndex..) on stream; await done(stream) to read. */
  enqueue(
    frames: readonly DeviceFrame[],
    rois: readonly FaceRoi[],
    out: DeviceOutput,
    stream: bigint,
    firstIndex = 0,
  ): void {
    if (this.closed) throw new YqpError('E_CLOSED', 'GpuRoiCropper is closed');
    const job = roiDeviceJob(this.spec, frames, rois, out, stream, firstIndex);
    try {
      this.kernels.sample(job);
    } catch (e) {
      throw nativeError(e);
    }
  }

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
