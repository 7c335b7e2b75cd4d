import { expectOneOf, expectPositiveInteger, invalidParameter } from '../errors.js';
import type { PreprocessingSpec } from '../repository/config.js';

/**
 * The preprocessing spec's one home: validation, placement (where an image lands in the model input), the model
 * input's dims and the transform back to original pixels. Its three consumers (the sharp CPU path,
 * src/preprocess/cpu.ts; the GPU kernels, src/gpu/preprocess*.ts; the calibration loader,
 * src/calibration/loader.ts) read it from config.json's `preprocessing` and do none of this arithmetic themselves.
 * test/preprocess-spec.test.ts holds the three to it.
 */

/**
 * Where the original image landed in the model input, to map model coordinates back to pixels:
 * x_image = (x_input - padX) / scaleX, with x_input in model-input pixels (toOriginal).
 */
export interface ImageTransform {
  width: number;
  height: number;
  scaleX: number;
  scaleY: number;
  padX: number;
  padY: number;
}

/** One image's placement in the model input. */
export interface ImagePlacement {
  /**
   * Output pixel centre (u, v) samples the source at (m0 u + m1 v + m2, m3 u + m4 v + m5): what the GPU sampler
   * reads (a rotated crop is the same affine with m1, m3 non-zero).
   */
  m: number[];
  /** Output pixels outside [x0, x1) x [y0, y1) are padding (padValue). */
  rect: [number, number, number, number];
  transform: ImageTransform;
}

export type PlacementMode = PreprocessingSpec['resize'];

type PlaceFn = (spec: PreprocessingSpec, srcWidth: number, srcHeight: number) => ImagePlacement;

/**
 * The placement modes, by config.json's `preprocessing.resize`. A landmark model's rotated crop (MediaPipe's
 * face ROI: centre, 1.5x side, eye-line angle; src/gpu/roi.ts computes its affine today) is the next entry: it
 * places a region of the source rather than the whole frame, so its function takes that region as well, and
 * ImageTransform grows the inverse affine that toOriginal then applies.
 */
const PLACEMENTS: Record<PlacementMode, PlaceFn> = {
  /** Resize to width x height, ignoring aspect. */
  stretch(spec, srcWidth, srcHeight) {
    return {
      m: [srcWidth / spec.width, 0, 0, 0, srcHeight / spec.height, 0],
      rect: [0, 0, spec.width, spec.height],
      transform: {
        width: srcWidth,
        height: srcHeight,
        scaleX: spec.width / srcWidth,
        scaleY: spec.height / srcHeight,
        padX: 0,
        padY: 0,
      },
    };
  },
  /** Keep aspect: the image scaled to fit, whole pixels, centred (floor), the rest padValue. */
  letterbox(spec, srcWidth, srcHeight) {
    const scale = Math.min(spec.width / srcWidth, spec.height / srcHeight);
    const w = Math.max(1, Math.round(srcWidth * scale));
    const h = Math.max(1, Math.round(srcHeight * scale));
    const left = Math.floor((spec.width - w) / 2);
    const top = Math.floor((spec.height - h) / 2);
    const sx = srcWidth / w;
    const sy = srcHeight / h;
    return {
      m: [sx, 0, -left * sx, 0, sy, -top * sy],
      rect: [left, top, left + w, top + h],
      transform: {
        width: srcWidth,
        height: srcHeight,
        scaleX: w / srcWidth,
        scaleY: h / srcHeight,
        padX: left,
        padY: top,
      },
    };
  },
};

export const PLACEMENT_MODES = Object.keys(PLACEMENTS) as PlacementMode[];

/** Where a srcWidth x srcHeight image lands in the model input under the spec's resize mode. */
export function placeImage(
  spec: Pick<PreprocessingSpec, 'width' | 'height' | 'resize'>,
  srcWidth: number,
  srcHeight: number,
): ImagePlacement {
  const place = PLACEMENTS[spec.resize];
  if (!place) throw invalidParameter('spec.resize', `one of ${PLACEMENT_MODES.join(', ')}`, spec.resize);
  return place(spec as PreprocessingSpec, srcWidth, srcHeight);
}

/** A point of the model input (model-input pixels) in pixels of the original image. */
export function toOriginal(t: ImageTransform, x: number, y: number): [number, number] {
  return [(x - t.padX) / t.scaleX, (y - t.padY) / t.scaleY];
}

/** Checks every field a consumer reads; throws one-line YqpErrors naming the field. */
export function validatePreprocessing(spec: PreprocessingSpec, argument = 'spec'): PreprocessingSpec {
  if (typeof spec !== 'object' || spec === null)
    throw invalidParameter(argument, 'a preprocessing spec', spec);
  expectPositiveInteger(`${argument}.width`, spec.width);
  expectPositiveInteger(`${argument}.height`, spec.height);
  expectOneOf(`${argument}.layout`, spec.layout, ['NHWC', 'NCHW'] as const);
  expectOneOf(`${argument}.resize`, spec.resize, PLACEMENT_MODES);
  expectOneOf(`${argument}.colorOrder`, spec.colorOrder, ['RGB', 'BGR'] as const);
  expectOneOf(`${argument}.dtype`, spec.dtype, ['float32', 'float16'] as const);
  if (typeof spec.scale !== 'number' || !Number.isFinite(spec.scale))
    throw invalidParameter(`${argument}.scale`, 'a finite number', spec.scale);
  for (const key of ['mean', 'std'] as const) {
    const v = spec[key];
    if (!Array.isArray(v) || v.length !== 3 || v.some((x) => typeof x !== 'number' || !Number.isFinite(x)))
      throw invalidParameter(`${argument}.${key}`, 'an array of 3 finite numbers', v);
  }
  if (spec.std.some((x) => x === 0)) throw invalidParameter(`${argument}.std`, 'non-zero values', spec.std);
  if (spec.padValue !== undefined && (typeof spec.padValue !== 'number' || !Number.isFinite(spec.padValue)))
    throw invalidParameter(`${argument}.padValue`, 'a number (0..255)', spec.padValue);
  return spec;
}

/** Dims of the model input holding `n` preprocessed images. */
export function inputDims(spec: Pick<PreprocessingSpec, 'layout' | 'width' | 'height'>, n: number): number[] {
  return spec.layout === 'NHWC' ? [n, spec.height, spec.width, 3] : [n, 3, spec.height, spec.width];
}

/** Values of one preprocessed image. */
export function elementsPerImage(spec: Pick<PreprocessingSpec, 'width' | 'height'>): number {
  return spec.width * spec.height * 3;
}

/**
 * value = pixel * a[c] + b[c] for output channel c, the spec's ((pixel * scale) - mean[c]) / std[c] folded into
 * one multiply-add (what normalizeInto and the kernel compute).
 */
export function normalization(spec: Pick<PreprocessingSpec, 'scale' | 'mean' | 'std'>): {
  a: [number, number, number];
  b: [number, number, number];
} {
  const { scale, mean, std } = spec;
  return {
    a: [scale / std[0], scale / std[1], scale / std[2]],
    b: [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]],
  };
}
