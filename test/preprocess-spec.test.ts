import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamBatches, type CalibrationFile } from '../src/calibration/loader.js';
import { outputSpecOf, preprocessItems, referenceSample, validateSpec } from '../src/gpu/preprocess.js';
import { normalizeInto, preprocessImages, resizeToRgb } from '../src/preprocess/cpu.js';
import {
  elementsPerImage,
  inputDims,
  normalization,
  placeImage,
  toOriginal,
  validatePreprocessing,
} from '../src/preprocess/spec.js';
import type { PreprocessingSpec } from '../src/repository/config.js';

/**
 * One preprocessing spec, three consumers: the sharp CPU path, the GPU kernel path (its job builder and its
 * function in TypeScript, referenceSample, which the GPU suite holds the kernel to) and the calibration loader.
 * Each is held here to src/preprocess/spec.ts and so to the others.
 */

function spec(over: Partial<PreprocessingSpec>): PreprocessingSpec {
  return {
    input: 'x',
    layout: 'NHWC',
    width: 64,
    height: 48,
    resize: 'letterbox',
    colorOrder: 'RGB',
    scale: 1 / 255,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    dtype: 'float32',
    padValue: 0,
    ...over,
  };
}

/**
 * Smooth RGB gradients in 60..219: never the padding value 0, so the padding of an output is exactly where it is
 * 0; and smooth, so any two resampling filters agree on them up to rounding (sharp's linear and the kernel's
 * bilinear differ on detail, which test/gpu/kernels.test.ts measures on photos).
 */
function image(width: number, height: number): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const u = x / Math.max(1, width - 1);
      const v = y / Math.max(1, height - 1);
      const rgb = [u * 0.7 + v * 0.3, 1 - u * 0.5 - v * 0.5, v];
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = 60 + Math.round(159 * rgb[c]);
    }
  return data;
}

/** Pixels of the model input (NHWC or NCHW) that hold padding (all three channels 0). */
function padMask(out: Float32Array, s: PreprocessingSpec, index = 0): boolean[] {
  const plane = s.width * s.height;
  const base = index * plane * 3;
  return Array.from({ length: plane }, (_, p) =>
    [0, 1, 2].every((c) => out[s.layout === 'NHWC' ? base + p * 3 + c : base + c * plane + p] === 0),
  );
}

/** Measured 2.4 levels of 255 at most (stretch; sharp rounds to uint8 before normalizing, the reference does not). */
const WORST = 4 / 255;

const CASES: [string, PreprocessingSpec, number, number][] = [
  ['letterbox, wide image: bands top and bottom', spec({}), 200, 100],
  ['letterbox, tall image: bands left and right (odd split)', spec({ layout: 'NCHW' }), 101, 257],
  ['letterbox, same aspect: no padding', spec({ width: 32, height: 32 }), 96, 96],
  ['stretch', spec({ resize: 'stretch', colorOrder: 'BGR' }), 150, 40],
];

describe('preprocessing spec: one geometry for sharp, GPU kernels and calibration', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'yqp-spec-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [name, s, w, h] of CASES) {
    it(`${name}: same transform, same padded pixels, same tensor`, async () => {
      const placed = placeImage(s, w, h);
      const raw = { data: image(w, h), width: w, height: h, channels: 3 as const };

      // sharp CPU path: the placement's transform, and padding exactly outside the placement's rectangle.
      const cpu = await preprocessImages([raw], s);
      expect(cpu.transforms[0]).toEqual(placed.transform);
      expect(cpu.tensor.dims).toEqual(inputDims(s, 1));
      const [x0, y0, x1, y1] = placed.rect;
      const expectedMask = Array.from({ length: s.width * s.height }, (_, p) => {
        const x = p % s.width;
        const y = Math.floor(p / s.width);
        return x < x0 || x >= x1 || y < y0 || y >= y1;
      });
      expect(padMask(cpu.tensor.data as Float32Array, s)).toEqual(expectedMask);

      // GPU kernel path: the job's affine, rectangle and transform are the placement's; the kernel's reference
      // pads the same pixels and agrees with sharp inside (bilinear vs sharp's linear: a few levels of 255).
      const built = preprocessItems(s, [{ width: w, height: h, format: 'RGB' }]);
      expect(built.items[0].m).toEqual(placed.m);
      expect(built.items[0].rect).toEqual(placed.rect);
      expect(built.transforms[0]).toEqual(placed.transform);
      const native = outputSpecOf(s);
      const { a, b } = normalization(s);
      expect(native.a).toEqual(a);
      expect(native.b).toEqual(b);
      const gpu = new Float32Array(elementsPerImage(s));
      referenceSample({ spec: native, frames: [raw.data], items: built.items, out: gpu });
      expect(padMask(gpu, s)).toEqual(expectedMask);
      const cpuData = cpu.tensor.data as Float32Array;
      let worst = 0;
      for (let i = 0; i < gpu.length; i++) worst = Math.max(worst, Math.abs(gpu[i] - cpuData[i]));
      expect(worst).toBeLessThan(WORST);

      // Calibration loader: the same file through the loader is the sharp path's tensor, value for value.
      const path = join(dir, `${w}x${h}.png`);
      await sharp(raw.data, { raw: { width: w, height: h, channels: 3 } })
        .png()
        .toFile(path);
      const file: CalibrationFile = { path, name: `${w}x${h}.png`, size: 0, mtimeMs: 0 };
      const batches = [];
      for await (const batch of streamBatches([file], s, 1, 1, (f, e) => {
        throw e;
      }))
        batches.push(batch);
      expect(batches).toHaveLength(1);
      const fromFile = await preprocessImages([path], s);
      expect(batches[0].data).toEqual(fromFile.tensor.data);
      expect(fromFile.tensor.data).toEqual(cpu.tensor.data);
    });
  }

  it('maps model-input points back to original pixels through the transform', () => {
    const t = placeImage(spec({}), 200, 100).transform; // 64x32 image in a 64x48 input, 8 px band on top
    expect(t).toMatchObject({ scaleX: 64 / 200, scaleY: 32 / 100, padX: 0, padY: 8 });
    expect(toOriginal(t, 32, 24)).toEqual([100, 50]);
    expect(toOriginal(t, 0, 8)).toEqual([0, 0]);
  });

  it('one validation: every consumer names the same bad field', async () => {
    const bad = spec({ resize: 'crop' as never });
    expect(() => validatePreprocessing(bad)).toThrow(/spec\.resize/);
    expect(() => validateSpec(bad)).toThrow(/spec\.resize/);
    await expect(
      preprocessImages([{ data: image(4, 4), width: 4, height: 4, channels: 3 }], bad),
    ).rejects.toThrow(/spec\.resize/);
    const stream = streamBatches([], bad, 1, 1, () => {});
    await expect(stream.next()).rejects.toThrow(/preprocessing\.resize/);
  });

  it('normalizeInto applies the folded multiply-add of normalization()', async () => {
    const s = spec({ scale: 1 / 127.5, mean: [1, 1, 1], std: [0.5, 1, 2], width: 2, height: 1 });
    const { pixels } = await resizeToRgb({ data: image(2, 1), width: 2, height: 1, channels: 3 }, s);
    const out = new Float32Array(6);
    normalizeInto(pixels, s, out, 0);
    const { a, b } = normalization(s);
    for (let i = 0; i < 6; i++) expect(out[i]).toBeCloseTo(pixels[i] * a[i % 3] + b[i % 3], 5);
  });
});
