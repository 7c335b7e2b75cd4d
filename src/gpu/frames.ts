import { expectOneOf, expectPositiveInteger, invalidParameter } from '../errors.js';
import type { NativeItem, NativeOutputSpec } from '../native/kernels.js';
import {
  elementsPerImage,
  inputDims,
  normalization,
  placeImage,
  validatePreprocessing,
  type ImageTransform,
} from '../preprocess/spec.js';
import type { PreprocessingSpec } from '../repository/config.js';

/**
 * Frames and jobs of the GPU sampler (trt/kernels/sampler.cu): frame formats and memory layouts, the kernel's
 * output description from the preprocessing spec, and one job item per frame from the spec's placement.
 */

export type FrameFormat = 'RGB' | 'BGR' | 'RGBA' | 'BGRA' | 'NV12';
export const FRAME_FORMATS: readonly FrameFormat[] = ['RGB', 'BGR', 'RGBA', 'BGRA', 'NV12'];
export type ResizeFilter = 'bilinear' | 'antialias';

export interface FrameShape {
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
