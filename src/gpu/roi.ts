import { YqpError, invalidParameter } from '../errors.js';
import type { Face } from '../postprocess/blazeface.js';
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

/**
 * Face-ROI crops (the same sampler as preprocessing, trt/kernels/sampler.cu): a rotated square around each face,
 * MediaPipe's convention (DetectionsToRects + RectTransformation): centre of the box, side = max(w, h) x scale
 * (1.5), rotation that levels the eyes: angle = targetAngle - atan2(-(ly - ry), lx - rx), keypoint 0 the right
 * eye, 1 the left. Output pixel centre (u, v) samples the frame at
 *   centre + R(angle) ((u / W - 0.5) side, (v / H - 0.5) side)
 * bilinear, taps outside the frame read padValue (cv2.warpAffine BORDER_CONSTANT).
 */
export interface FaceRoi {
  /** Frame the face was found in (index into the frames array). */
  frame: number;
  cx: number;
  cy: number;
  /** Side of the square in frame pixels. */
  size: number;
  /** Radians, clockwise in image coordinates (y down). */
  angle: number;
}

export interface RoiOptions {
  /** Side = max(box width, box height) x scale; MediaPipe's face landmark uses 1.5. */
  scale?: number;
  /** Shift of the centre along the rotated y axis, in sides (MediaPipe: 0 for face landmarks). */
  shiftY?: number;
  /** Angle the eye line should have after the crop (radians; default 0 = level). */
  targetAngle?: number;
}

/** The ROI of a detected face (box and eye keypoints in frame pixels). */
export function faceRoi(face: Pick<Face, 'box' | 'keypoints'>, frame = 0, options: RoiOptions = {}): FaceRoi {
  const [x0, y0, x1, y1] = face.box;
  if (![x0, y0, x1, y1].every(Number.isFinite) || x1 <= x0 || y1 <= y0)
    throw invalidParameter('face.box', '[x0, y0, x1, y1] with x1 > x0 and y1 > y0', face.box);
  const [re, le] = face.keypoints ?? [];
  if (!re || !le || ![...re, ...le].every(Number.isFinite))
    throw invalidParameter('face.keypoints', 'right and left eye [x, y] pairs first', face.keypoints);
  const scale = options.scale ?? 1.5;
  if (!(scale > 0)) throw invalidParameter('options.scale', 'a positive number', options.scale);
  const angle = normalizeRadians((options.targetAngle ?? 0) - Math.atan2(-(le[1] - re[1]), le[0] - re[0]));
  const size = Math.max(x1 - x0, y1 - y0) * scale;
  const shift = (options.shiftY ?? 0) * size;
  return {
    frame,
    cx: (x0 + x1) / 2 - Math.sin(angle) * shift,
    cy: (y0 + y1) / 2 + Math.cos(angle) * shift,
    size,
    angle,
  };
}

export function normalizeRadians(a: number): number {
  return a - 2 * Math.PI * Math.floor((a + Math.PI) / (2 * Math.PI));
}

/** cos/sin with multiples of 90 degrees exact, so axis-aligned crops sample pixel centres exactly. */
function cosSin(angle: number): [number, number] {
  let c = Math.cos(angle);
  let s = Math.sin(angle);
  if (Math.abs(c) < 1e-12) c = 0;
  if (Math.abs(s) < 1e-12) s = 0;
  if (Math.abs(Math.abs(c) - 1) < 1e-12) c = Math.sign(c);
  if (Math.abs(Math.abs(s) - 1) < 1e-12) s = Math.sign(s);
  return [c, s];
}

/** Matrix from output pixel centres (u, v) to frame positions, for an outWidth x outHeight crop. */
export function roiMatrix(roi: FaceRoi, outWidth: number, outHeight: number): number[] {
  const [c, s] = cosSin(roi.angle);
  const kx = roi.size / outWidth;
  const ky = roi.size / outHeight;
  const h = roi.size / 2;
  return [kx * c, -ky * s, roi.cx - h * c + h * s, kx * s, ky * c, roi.cy - h * s - h * c];
}

/** Maps a point of the crop (model-input pixels, e.g. a landmark) back to frame pixels. */
export function roiToFrame(
  roi: FaceRoi,
  outWidth: number,
  outHeight: number,
  x: number,
  y: number,
): [number, number] {
  const m = roiMatrix(roi, outWidth, outHeight);
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

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
