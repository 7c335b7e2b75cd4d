import { stat } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import { YqpError, invalidParameter } from '../errors.js';
import type { PreprocessingSpec } from '../repository/config.js';
import { tensor, type Tensor } from '../tensor.js';
import { toHalfBits } from './half.js';
import {
  elementsPerImage,
  inputDims,
  normalization,
  placeImage,
  validatePreprocessing,
  type ImageTransform,
} from './spec.js';

export type { ImageTransform } from './spec.js';

/** Decoded pixels handed in directly (a camera frame): interleaved uint8, 3 (RGB) or 4 (RGBA) channels. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

export type ImageInput = string | Buffer | Uint8Array | RawImage;

/** Sharp's linear kernel is the closest to the bilinear sampling of the GPU kernel (README, "GPU preprocessing and face-ROI kernels"). */
export const CPU_RESIZE_KERNEL = 'linear' as const;

export function isRawImage(x: unknown): x is RawImage {
  return (
    typeof x === 'object' && x !== null && 'data' in x && 'width' in x && 'height' in x && !Buffer.isBuffer(x)
  );
}

function describeImage(image: ImageInput): string {
  if (typeof image === 'string') return image;
  if (isRawImage(image)) return `raw ${image.width}x${image.height}x${image.channels}`;
  return `buffer of ${image.length} bytes`;
}

async function openImage(image: ImageInput, argument: string): Promise<Sharp> {
  if (typeof image === 'string') {
    try {
      const s = await stat(image);
      if (!s.isFile()) throw new Error('not a file');
    } catch {
      throw new YqpError('E_IMAGE', `Image ${image} does not exist or is not a file`, {
        argument,
        expected: 'an image file (jpg, png, webp)',
        received: image,
      });
    }
    return sharp(image, { failOn: 'error' }).rotate();
  }
  if (isRawImage(image)) {
    const { width, height, channels, data } = image;
    if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1)
      throw invalidParameter(
        `${argument}.width/height`,
        'positive integers',
        `${width}x${height}`,
        'E_IMAGE',
      );
    if (channels !== 3 && channels !== 4)
      throw invalidParameter(`${argument}.channels`, '3 or 4', channels, 'E_IMAGE');
    if (data.length !== width * height * channels)
      throw invalidParameter(`${argument}.data`, `${width * height * channels} bytes`, data, 'E_IMAGE');
    return sharp(data, { raw: { width, height, channels } });
  }
  if (Buffer.isBuffer(image) || image instanceof Uint8Array)
    return sharp(image, { failOn: 'error' }).rotate();
  throw invalidParameter(argument, 'a path, an encoded image Buffer or a raw image', image, 'E_IMAGE');
}

/** Decodes and resizes one image to the spec's size as interleaved RGB uint8. */
export async function resizeToRgb(
  image: ImageInput,
  spec: PreprocessingSpec,
  argument = 'image',
): Promise<{ pixels: Buffer; transform: ImageTransform }> {
  const pipeline = await openImage(image, argument);
  try {
    const meta = await pipeline.metadata();
    // EXIF orientations 5-8 swap width and height after rotate().
    const swapped = typeof image !== 'object' || !isRawImage(image) ? (meta.orientation ?? 1) >= 5 : false;
    const width = swapped ? meta.height! : meta.width!;
    const height = swapped ? meta.width! : meta.height!;
    // The placement (spec.ts) says where the image goes; sharp resizes into that rectangle and pads the rest.
    const { rect, transform } = placeImage(spec, width, height);
    const [left, top, right, bottom] = rect;
    let p = pipeline
      .removeAlpha()
      .toColourspace('srgb')
      .resize(right - left, bottom - top, { fit: 'fill', kernel: CPU_RESIZE_KERNEL });
    if (left > 0 || top > 0 || right < spec.width || bottom < spec.height) {
      const pad = spec.padValue ?? 0;
      p = p.extend({
        left,
        top,
        right: spec.width - right,
        bottom: spec.height - bottom,
        background: { r: pad, g: pad, b: pad, alpha: 1 },
      });
    }
    const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width !== spec.width || info.height !== spec.height)
      throw new YqpError('E_INTERNAL', `resize produced ${info.width}x${info.height}x${info.channels}`);
    return { pixels: data, transform };
  } catch (e) {
    if (e instanceof YqpError) throw e;
    throw new YqpError(
      'E_IMAGE',
      `Image ${describeImage(image)} cannot be decoded: ${(e as Error).message}`,
      {
        argument,
        expected: 'a jpg, png or webp image',
        received: describeImage(image),
        cause: e,
      },
    );
  }
}

/**
 * Writes interleaved RGB uint8 pixels into a model input at batch index `index`, applying
 * value = ((pixel * scale) - mean[c]) / std[c] with channel order and layout from the spec.
 */
export function normalizeInto(
  pixels: Uint8Array,
  spec: PreprocessingSpec,
  out: Float32Array | Uint16Array,
  index: number,
): void {
  const { width, height, layout } = spec;
  const plane = width * height;
  const base = index * plane * 3;
  const bgr = spec.colorOrder === 'BGR';
  const { a, b } = normalization(spec);
  const half = out instanceof Uint16Array;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const src = pixels[i * 3 + (bgr ? 2 - c : c)];
      const v = src * a[c] + b[c];
      const o = layout === 'NHWC' ? base + i * 3 + c : base + c * plane + i;
      out[o] = half ? toHalfBits(v) : v;
    }
  }
}

export async function preprocessInto(
  image: ImageInput,
  spec: PreprocessingSpec,
  out: Float32Array | Uint16Array,
  index: number,
  argument = 'image',
): Promise<ImageTransform> {
  const { pixels, transform } = await resizeToRgb(image, spec, argument);
  normalizeInto(pixels, spec, out, index);
  return transform;
}

/** Dims of a batch of `n` preprocessed images. */
export function preprocessedDims(spec: PreprocessingSpec, n: number): number[] {
  return inputDims(spec, n);
}

/** Decodes (in parallel: sharp runs on libuv's pool) and preprocesses a batch into one tensor. */
export async function preprocessImages(
  images: readonly ImageInput[],
  spec: PreprocessingSpec,
): Promise<{ tensor: Tensor; transforms: ImageTransform[] }> {
  if (!Array.isArray(images) || images.length === 0)
    throw invalidParameter('images', 'a non-empty array of images', images);
  validatePreprocessing(spec, 'spec');
  const n = images.length;
  const size = elementsPerImage(spec);
  const out = spec.dtype === 'float16' ? new Uint16Array(n * size) : new Float32Array(n * size);
  const transforms = await Promise.all(
    images.map((img, i) => preprocessInto(img, spec, out, i, `images[${i}]`)),
  );
  return { tensor: tensor(spec.dtype, out, preprocessedDims(spec, n)), transforms };
}
