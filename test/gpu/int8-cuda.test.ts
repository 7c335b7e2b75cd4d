import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build.js';
import { isYqpError } from '../../src/errors.js';
import { loadModel, type LoadModelOptions, type Model } from '../../src/model.js';
import { iou, type Face } from '../../src/postprocess/blazeface.js';
import { BLAZEFACE_ONNX, MEDIA_DIR, requireData } from '../helpers/data.js';

/**
 * Issue 18 item 6: the INT8 Q/DQ models on onnxruntime's CUDA provider find the same faces as on the CPU
 * provider, at batch 1 and 16 (faces, not raw logits: the CUDA provider's scores move between batch sizes).
 * Needs an NVIDIA driver and onnxruntime-node's CUDA provider library; the lead's `gpu` branch adds
 * loadModel(dir, { device: 'cuda' }): until then the test skips, saying so.
 */
function cudaOnnxruntime(): string | undefined {
  if (!existsSync('/proc/driver/nvidia/version')) return 'no NVIDIA driver (/proc/driver/nvidia/version)';
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('onnxruntime-node/package.json'));
  const bin = join(root, 'bin');
  const found = existsSync(bin)
    ? readdirSync(bin, { recursive: true }).some((f) =>
        String(f).endsWith('libonnxruntime_providers_cuda.so'),
      )
    : false;
  return found ? undefined : `onnxruntime-node has no CUDA provider library under ${bin}`;
}

const reason = cudaOnnxruntime();
const note = reason ? ` (skipped: ${reason})` : '';
const OTHERS = readdirSync(MEDIA_DIR)
  .filter((f) => /\.(jpg|png)$/.test(f) && !f.startsWith('franck_'))
  .sort()
  .map((f) => join(MEDIA_DIR, f));

function sameFaces(a: readonly Face[], b: readonly Face[]): boolean {
  return a.length === b.length && a.every((x) => b.some((y) => iou(x.box, y.box) >= 0.85));
}

describe.skipIf(Boolean(reason))(`INT8 Q/DQ on onnxruntime's CUDA provider${note}`, () => {
  let work: string;
  let repo: string;

  beforeAll(async () => {
    requireData();
    work = mkdtempSync(join(tmpdir(), 'yqp-int8-cuda-'));
    repo = join(work, 'repo');
    const franck = join(work, 'franck');
    mkdirSync(franck);
    for (const f of readdirSync(MEDIA_DIR).filter((x) => x.startsWith('franck_')))
      symlinkSync(join(MEDIA_DIR, f), join(franck, f));
    const profiles = [
      { 'input:0': { min: [1, 128, 128, 3], opt: [16, 128, 128, 3], max: [16, 128, 128, 3] } },
    ];
    await build(BLAZEFACE_ONNX, {
      name: 'ort-form',
      repo,
      backend: 'onnxruntime',
      dynamicBatch: true,
      profiles,
      precision: 'int8',
      calibration: { dir: franck },
    });
    // The same calibration, the TensorRT form (Q/DQ on inputs only) as the entry's model.
    const src = join(repo, 'ort-form');
    const trt = join(repo, 'trt-form');
    mkdirSync(join(trt, '1'), { recursive: true });
    for (const f of readdirSync(join(src, '1'))) symlinkSync(join(src, '1', f), join(trt, '1', f));
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    writeFileSync(
      join(trt, 'config.json'),
      JSON.stringify({ ...config, name: 'trt-form', modelFile: 'model.onnx' }),
    );
  }, 300_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  for (const entry of ['ort-form', 'trt-form'])
    it(`${entry}: the CUDA provider finds the CPU provider's faces at batch 1 and 16`, async (ctx) => {
      let gpu: Model;
      try {
        gpu = await loadModel(join(repo, entry), { contexts: 1, device: 'cuda' } as LoadModelOptions);
      } catch (e) {
        if (isYqpError(e) && /device/.test(e.message)) return ctx.skip('loadModel has no device option yet');
        throw e;
      }
      // A loadModel that ignores the option would compare the CPU with itself.
      if ((gpu as unknown as { device?: string }).device !== 'cuda') {
        await gpu.close();
        return ctx.skip('loadModel has no device option yet');
      }
      const cpu = await loadModel(join(repo, entry), { contexts: 1 });
      try {
        let faces = 0;
        const cpu1 = [];
        for (const img of OTHERS) cpu1.push((await cpu.inferImages([img])).faces![0]);
        for (let i = 0; i < OTHERS.length; i += 16) {
          const slice = OTHERS.slice(i, i + 16);
          const g16 = (await gpu.inferImages(slice)).faces!;
          for (const [k, img] of slice.entries()) {
            const g1 = (await gpu.inferImages([img])).faces![0];
            expect(sameFaces(cpu1[i + k], g1), `${img} batch 1`).toBe(true);
            expect(sameFaces(cpu1[i + k], g16[k]), `${img} batch 16`).toBe(true);
            faces += cpu1[i + k].length;
          }
        }
        expect(faces).toBeGreaterThanOrEqual(20);
      } finally {
        await cpu.close();
        await gpu.close();
      }
    });
});
