import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it as vitestIt } from 'vitest';
import { build } from '../src/build.js';
import { loadModel, type Model } from '../src/model.js';
import { nativeRunner } from '../src/backends/onnxruntime.js';
import { readEntry } from '../src/repository/repository.js';
import { BLAZEFACE_ONNX, MEDIA_DIR, OCR_CLS_ONNX, requireData } from './helpers/data.js';

// Both ways onnxruntime runs off the event loop: the addon's runner threads, and worker threads (the fallback).
const NATIVE_MISSING = nativeRunner().reason;
const RUNNERS = [
  {
    runner: 'native' as const,
    skip: NATIVE_MISSING,
    label: NATIVE_MISSING ? ` (skipped: ${NATIVE_MISSING})` : '',
  },
  { runner: 'worker' as const, skip: undefined, label: '' },
];

const repo = mkdtempSync(join(tmpdir(), 'yqp-repo-'));
const FRANCK = join(MEDIA_DIR, 'franck_02159.jpg');

/** A real photo region with no face: the top-left corner of a franck frame (wall behind him). */
async function noFacePhoto(): Promise<Buffer> {
  return sharp(FRANCK).extract({ left: 0, top: 0, width: 200, height: 200 }).jpeg().toBuffer();
}

describe.each(RUNNERS)('BlazeFace end to end on onnxruntime, $runner runner$label', ({ runner, skip }) => {
  let model: Model;
  beforeAll(async () => {
    if (skip) return;
    requireData();
    const result = await build(BLAZEFACE_ONNX, {
      name: `face-${runner}`,
      repo,
      dynamicBatch: true,
      backend: 'onnxruntime',
      profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [16, 128, 128, 3] } }],
    });
    expect(result.dynamicBatch!.verifiedBatch).toBe(16);
    expect(result.dynamicBatch!.maxAbsDiff).toBeLessThanOrEqual(1e-5);
    model = await loadModel(join(repo, `face-${runner}`), { contexts: 2, runner });
    expect(model.scheduler.session.runner).toBe(runner);
  });
  afterAll(async () => model?.close());
  const it = skip ? vitestIt.skip : vitestIt;

  it('writes a valid repository entry with dynamic batch and the BlazeFace preset', async () => {
    const entry = await readEntry(join(repo, `face-${runner}`));
    expect(entry.config.maxBatchSize).toBe(16);
    expect(entry.config.inputs[0].dims).toEqual([-1, 128, 128, 3]);
    expect(entry.config.preprocessing?.layout).toBe('NHWC');
    expect(entry.config.postprocessing?.type).toBe('blazeface');
    expect(readdirSync(entry.versionDir)).toContain('model.onnx');
  });

  it('finds one face on each face photo, inside the image, with six keypoints', async () => {
    const photos = readdirSync(MEDIA_DIR)
      .filter((f) => /^franck_0\d+\.jpg$/.test(f))
      .slice(0, 6)
      .map((f) => join(MEDIA_DIR, f));
    const { faces, transforms } = await model.inferImages(photos);
    expect(faces).toHaveLength(photos.length);
    for (const [i, list] of faces!.entries()) {
      expect(list).toHaveLength(1);
      const [x0, y0, x1, y1] = list[0].box;
      expect(x0).toBeGreaterThanOrEqual(0);
      expect(x1).toBeLessThanOrEqual(transforms[i].width);
      expect(x1 - x0).toBeGreaterThan(50);
      expect(y1 - y0).toBeGreaterThan(50);
      expect(list[0].score).toBeGreaterThan(0.75);
      expect(list[0].keypoints).toHaveLength(6);
      // Eyes above the mouth.
      expect(list[0].keypoints[0][1]).toBeLessThan(list[0].keypoints[3][1]);
    }
  });

  it('finds no face on a photo without one', async () => {
    const { faces } = await model.inferImages([await noFacePhoto()]);
    expect(faces![0]).toEqual([]);
  });

  it('batch of 16 through infer equals 16 single infers', async () => {
    const one = new Float32Array(128 * 128 * 3).map((_, i) => Math.cos(i * 0.01));
    const batch = new Float32Array(16 * one.length);
    for (let b = 0; b < 16; b++)
      batch.set(
        one.map((v) => v * (b / 16)),
        b * one.length,
      );
    const big = await model.infer({ 'input:0': { dtype: 'float32', dims: [16, 128, 128, 3], data: batch } });
    const row = await model.infer({
      'input:0': {
        dtype: 'float32',
        dims: [1, 128, 128, 3],
        data: batch.slice(5 * one.length, 6 * one.length),
      },
    });
    const a = big['Identity_2:0'].data as Float32Array;
    const b = row['Identity_2:0'].data as Float32Array;
    let max = 0;
    for (let i = 0; i < b.length; i++) max = Math.max(max, Math.abs(a[5 * b.length + i] - b[i]));
    expect(max).toBeLessThanOrEqual(1e-5);
  });

  it('takes SharedArrayBuffer-backed inputs with the same outputs', async () => {
    const plain = new Float32Array(128 * 128 * 3).map((_, i) => Math.sin(i * 0.05));
    const shared = new Float32Array(new SharedArrayBuffer(plain.byteLength));
    shared.set(plain);
    const a = await model.infer({ 'input:0': { dtype: 'float32', dims: [1, 128, 128, 3], data: plain } });
    const b = await model.infer({ 'input:0': { dtype: 'float32', dims: [1, 128, 128, 3], data: shared } });
    expect(Array.from(b['Identity:0'].data as Float32Array)).toEqual(
      Array.from(a['Identity:0'].data as Float32Array),
    );
  });

  it('rejects a wrong shape, dtype, missing and unknown input with typed errors before running', async () => {
    const data = new Float32Array(128 * 128 * 3);
    await expect(
      model.infer({ 'input:0': { dtype: 'float32', dims: [1, 3, 128, 128], data } }),
    ).rejects.toMatchObject({
      code: 'E_SHAPE',
      argument: 'input:0',
      expected: '[-1,128,128,3]',
      received: '[1,3,128,128]',
    });
    await expect(
      model.infer({
        'input:0': { dtype: 'int32', dims: [1, 128, 128, 3], data: new Int32Array(data.length) },
      }),
    ).rejects.toMatchObject({
      code: 'E_DTYPE',
      argument: 'input:0',
    });
    await expect(model.infer({})).rejects.toMatchObject({ code: 'E_INPUT_MISSING', argument: 'input:0' });
    await expect(
      model.infer({
        'input:0': { dtype: 'float32', dims: [1, 128, 128, 3], data },
        extra: { dtype: 'float32', dims: [1], data: new Float32Array(1) },
      }),
    ).rejects.toMatchObject({
      code: 'E_INPUT_UNKNOWN',
    });
    const big = new Float32Array(17 * data.length);
    await expect(
      model.infer({ 'input:0': { dtype: 'float32', dims: [17, 128, 128, 3], data: big } }),
    ).rejects.toMatchObject({
      code: 'E_SHAPE',
      message: expect.stringMatching(/fits no optimization profile/),
    });
    await expect(
      model.infer({ 'input:0': { dtype: 'float32', dims: [2, 128, 128, 3], data } }),
    ).rejects.toMatchObject({
      code: 'E_SHAPE',
      message: expect.stringMatching(/data holds/),
    });
  });

  it('rejects a missing image and a file that is not an image', async () => {
    await expect(model.inferImages([join(MEDIA_DIR, 'nope.jpg')])).rejects.toMatchObject({ code: 'E_IMAGE' });
    await expect(model.inferImages([BLAZEFACE_ONNX])).rejects.toMatchObject({
      code: 'E_IMAGE',
      message: expect.stringMatching(/cannot be decoded/),
    });
  });

  it('never blocks the event loop while inferring', async () => {
    const data = new Float32Array(16 * 128 * 128 * 3).fill(0.1);
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 1);
    const started = performance.now();
    for (let i = 0; i < 6; i++)
      await model.infer({ 'input:0': { dtype: 'float32', dims: [16, 128, 128, 3], data } });
    const elapsed = performance.now() - started;
    clearInterval(timer);
    // A blocked loop would tick about once per run; a free one ticks through the whole span.
    expect(ticks).toBeGreaterThan(Math.min(30, elapsed / 4));
  });

  it('spreads concurrent requests over both contexts', async () => {
    const seen = new Set<number>();
    const listener = (e: { context: number }) => seen.add(e.context);
    model.scheduler.on('batch', listener);
    const data = new Float32Array(128 * 128 * 3);
    await Promise.all(
      Array.from({ length: 8 }, () =>
        model.infer({ 'input:0': { dtype: 'float32', dims: [1, 128, 128, 3], data } }),
      ),
    );
    model.scheduler.off('batch', listener);
    expect([...seen].sort()).toEqual([0, 1]);
  });
});

describe('repository errors', () => {
  const it = vitestIt;
  it('a missing entry is E_NOT_FOUND', async () => {
    await expect(loadModel(join(repo, 'missing'))).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });
  it('bad options are argument errors', async () => {
    await expect(loadModel(join(repo, 'face'), { contexts: 0 })).rejects.toThrow(
      'Expected positive integer for contexts but received 0 of type number',
    );
    await expect(loadModel(join(repo, 'face'), { runner: 'fast' as 'native' })).rejects.toMatchObject({
      code: 'E_ARGUMENT',
      argument: 'runner',
    });
  });
  it('a model with dynamic inputs needs a profile; a static one builds as is', async () => {
    await expect(build(OCR_CLS_ONNX, { name: 'cls', repo, backend: 'onnxruntime' })).rejects.toMatchObject({
      code: 'E_PROFILE',
    });
  });
});
