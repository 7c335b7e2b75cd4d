import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build.js';
import { loadModel, type Model } from '../../src/model.js';
import { readEntry } from '../../src/repository/repository.js';
import { tensorrtAvailability } from '../../src/tensorrt/index.js';
import type { TensorRTPlanMetadata } from '../../src/tensorrt/metadata.js';
import { BLAZEFACE_ONNX, MEDIA_DIR } from '../helpers/data.js';

/**
 * BlazeFace through real TensorRT: build (fp16, dynamic batch, two profiles), engine cache, load, infer against
 * onnxruntime, cancel. Needs libnvinfer and a GPU; on every machine this project was developed on it is skipped
 * with the reason tensorrtAvailability() gives (TensorRT is not installed there), so it has never run.
 */
const availability = tensorrtAvailability();
const skip = !availability.available;
const note = skip ? ` (skipped: ${availability.reason})` : '';

describe.skipIf(skip)(`BlazeFace on TensorRT${note}`, () => {
  const repo = mkdtempSync(join(tmpdir(), 'yqp-trt-repo-'));
  const engineCache = mkdtempSync(join(tmpdir(), 'yqp-trt-engines-'));
  const profiles = [
    { 'input:0': { min: [1, 128, 128, 3], opt: [1, 128, 128, 3], max: [4, 128, 128, 3] } },
    { 'input:0': { min: [5, 128, 128, 3], opt: [8, 128, 128, 3], max: [16, 128, 128, 3] } },
  ];
  let trt: Model;
  let ort: Model;
  const photos = readdirSync(MEDIA_DIR)
    .filter((f) => /^franck_0\d+\.jpg$/.test(f))
    .slice(0, 6)
    .map((f) => join(MEDIA_DIR, f));

  beforeAll(async () => {
    for (const backend of ['tensorrt', 'onnxruntime'] as const)
      await build(BLAZEFACE_ONNX, {
        name: backend,
        repo,
        backend,
        dynamicBatch: true,
        precision: backend === 'tensorrt' ? 'fp16' : 'fp32',
        profiles,
        tensorrt: { engineCache },
      });
    trt = await loadModel(join(repo, 'tensorrt'), { contexts: 2 });
    ort = await loadModel(join(repo, 'onnxruntime'), { contexts: 1 });
  });
  afterAll(async () => {
    await trt?.close();
    await ort?.close();
  });

  it('writes model.plan with TensorRT metadata in config.json', async () => {
    const entry = await readEntry(join(repo, 'tensorrt'));
    expect(entry.config.backend).toBe('tensorrt');
    expect(readdirSync(entry.versionDir)).toContain('model.plan');
    const meta = entry.config.metadata!.tensorrt as TensorRTPlanMetadata;
    expect(meta.version).toBe(availability.version);
    expect(meta.sm).toMatch(/^\d+\.\d+$/);
    expect(meta.profiles).toHaveLength(2);
    expect(meta.planBytes).toBe(readFileSync(join(entry.versionDir, 'model.plan')).length);
  });

  it('finds the same faces as onnxruntime fp32, at batch 1 and at batch 6 (second profile)', async () => {
    for (const batch of [photos.slice(0, 1), photos]) {
      const a = await ort.inferImages(batch);
      const b = await trt.inferImages(batch);
      for (let i = 0; i < batch.length; i++) {
        expect(b.faces![i]).toHaveLength(a.faces![i].length);
        for (let f = 0; f < a.faces![i].length; f++) {
          expect(Math.abs(b.faces![i][f].score - a.faces![i][f].score)).toBeLessThan(0.02);
          for (let k = 0; k < 4; k++)
            expect(Math.abs(b.faces![i][f].box[k] - a.faces![i][f].box[k])).toBeLessThan(3);
        }
      }
    }
  });

  it('skips the build when the engine cache has it', async () => {
    const again = await build(BLAZEFACE_ONNX, {
      name: 'again',
      repo,
      backend: 'tensorrt',
      dynamicBatch: true,
      precision: 'fp16',
      profiles,
      tensorrt: { engineCache },
    });
    expect(again.notes.join('\n')).toMatch(/engine cache hit/);
  });

  it('cancels a running TensorRT build on abort with E_CANCELLED', async () => {
    const controller = new AbortController();
    const pending = build(BLAZEFACE_ONNX, {
      // Abort at TensorRT's first progress event, so the native build (not the JS before it) is what stops.
      onProgress: (e) => {
        if (e.stage === 'engine' && e.message.startsWith('TensorRT:')) controller.abort();
      },
      name: 'cancelled',
      repo,
      backend: 'tensorrt',
      dynamicBatch: true,
      precision: 'fp32',
      profiles,
      tensorrt: { engineCache: false, signal: controller.signal, optimizationLevel: 5 },
    });
    await expect(pending).rejects.toMatchObject({ code: 'E_CANCELLED' });
  });
});
