import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build.js';
import { loadModel, type LoadModelOptions, type Model } from '../../src/model.js';
import { BLAZEFACE_ONNX, MEDIA_DIR, ROOT, requireData } from '../helpers/data.js';
import { expectFacesMatch } from '../helpers/faces.js';

/**
 * Why FP16 on onnxruntime's CUDA provider cannot run here (undefined when it can): the checkout's GPU onnxruntime
 * support (src/backends/onnxruntime-gpu.ts) and a usable CUDA provider (staged by `npm run data:gpu` or
 * YQP_ORT_GPU_DIR, with a driver and a GPU).
 */
async function cudaUnavailable(): Promise<string | undefined> {
  const module = join(ROOT, 'src', 'backends', 'onnxruntime-gpu.ts');
  if (!existsSync(module))
    return 'this checkout has no CUDA onnxruntime support (src/backends/onnxruntime-gpu.ts)';
  const specifier = '../../src/backends/onnxruntime-gpu.js';
  const gpu = (await import(/* @vite-ignore */ specifier)) as {
    gpuOnnxruntimeStatus(): Promise<{ providers: { name: string; usable: boolean; reason?: string }[] }>;
  };
  const cuda = (await gpu.gpuOnnxruntimeStatus()).providers.find((p) => p.name === 'CUDAExecutionProvider');
  return cuda?.usable ? undefined : `CUDA execution provider unusable: ${cuda?.reason ?? 'not reported'}`;
}

const NO_CUDA = await cudaUnavailable();
const skipNote = NO_CUDA ? ` (skipped: ${NO_CUDA})` : '';
const PROFILE = [{ 'input:0': { min: [1, 128, 128, 3], opt: [16, 128, 128, 3], max: [16, 128, 128, 3] } }];
// loadModel's `device` takes 'cuda' once the GPU branch is in; typed loosely so this file also compiles before.
const CUDA = { device: 'cuda', contexts: 1 } as unknown as LoadModelOptions;

describe.skipIf(NO_CUDA)(`FP16 BlazeFace on the CUDA provider matches FP32${skipNote}`, () => {
  const repo = mkdtempSync(join(tmpdir(), 'yqp-gpu-fp16-'));
  let fp32: Model;
  let fp16: Model;
  beforeAll(async () => {
    requireData();
    const common = {
      repo,
      dynamicBatch: true,
      backend: 'onnxruntime' as const,
      profiles: PROFILE,
      device: 'cuda',
    };
    await build(BLAZEFACE_ONNX, { ...common, name: 'face32' });
    const { entry } = await build(BLAZEFACE_ONNX, { ...common, name: 'face16', precision: 'fp16' });
    expect(entry.config.precision).toBe('fp16');
    fp32 = await loadModel(join(repo, 'face32'), CUDA);
    fp16 = await loadModel(join(repo, 'face16'), CUDA);
  });
  afterAll(async () => {
    await fp32?.close();
    await fp16?.close();
  });

  it('runs both on the GPU; same faces on real photos (count, IoU >= 0.9, score within 0.02)', async () => {
    // Not a silent CPU run: the model says where its contexts are.
    for (const m of [fp32, fp16]) expect((m as unknown as { device?: string }).device).toMatch(/^cuda/);
    const photos = readdirSync(MEDIA_DIR)
      .filter((f) => /\.(jpg|png)$/.test(f))
      .sort()
      .slice(0, 32);
    expect(photos.length).toBeGreaterThanOrEqual(16);
    const paths = photos.map((p) => join(MEDIA_DIR, p));
    // Batches of 16 (the profile's max) and single images: both batch shapes run in FP16.
    const a = await fp32.inferImages(paths);
    const b = await fp16.inferImages(paths);
    const single = await Promise.all(paths.slice(0, 4).map((p) => fp16.inferImages([p])));
    const seen = expectFacesMatch(a.faces!, b.faces!, photos);
    expectFacesMatch(
      a.faces!.slice(0, 4),
      single.map((s) => s.faces![0]),
      photos.slice(0, 4),
    );
    expect(seen.faces).toBeGreaterThanOrEqual(16);
    let maxAbs = 0;
    for (const [name, t] of Object.entries(a.outputs)) {
      const x = t.data as Float32Array;
      const y = b.outputs[name].data as Float32Array;
      expect(b.outputs[name].dtype).toBe('float32');
      for (let i = 0; i < x.length; i++) maxAbs = Math.max(maxAbs, Math.abs(x[i] - y[i]));
    }
    console.log(
      `fp16 vs fp32 on CUDA, ${photos.length} photos: ${seen.faces} faces, worst IoU ${seen.worstIou.toFixed(4)}, ` +
        `worst score diff ${seen.worstScoreDiff.toFixed(5)}, raw outputs max abs diff ${maxAbs.toExponential(2)}`,
    );
  });
});
