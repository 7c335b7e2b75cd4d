// Row selection on the GPU (loadModel's selectRows, trt/kernels/row_select.cu): the kernel keeps the anchors whose
// score may pass, only those come back, and they decode to the same faces as the full outputs of the same run.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpuOnnxruntimeStatus } from '../../src/backends/onnxruntime-gpu.js';
import type { OnnxruntimeSession } from '../../src/backends/onnxruntime.js';
import { DeviceFrameInference } from '../../src/gpu/device-frames.js';
import { FrameRing } from '../../src/gpu/frame-ring.js';
import { createStreamPool } from '../../src/gpu/runtime.js';
import { loadModel, type Model } from '../../src/model.js';
import { postprocess, postprocessorFor } from '../../src/postprocess/index.js';
import { preprocessImages } from '../../src/preprocess/cpu.js';
import type { TensorMap } from '../../src/tensor.js';
import { MEDIA_DIR, requireData } from '../helpers/data.js';
import { selectRowsLikeTheKernel } from '../helpers/select-rows.js';
import { tempRepo, writeBlazeFace } from '../serve-fixtures.js';
import { NO_GPU, skipNote } from './gpu-env.js';

const status = NO_GPU ? undefined : await gpuOnnxruntimeStatus();
const cuda = status?.providers.find((p) => p.name === 'CUDAExecutionProvider');
const SKIP = NO_GPU || !cuda?.usable;
const note = NO_GPU ? skipNote : cuda?.usable ? '' : ` (skipped: ${cuda?.reason})`;

type Stats = { runs: number; deviceToHostBytes: number; selectedRuns: number; selectionOverflows: number };
const statsOf = (m: Model): Stats =>
  (m.scheduler.session as OnnxruntimeSession).nativeSessions[0].copyStats() as unknown as Stats;

/** Records of a selected-rows tensor per image as sorted [index, score, ...row] lists (the kernel's order is free). */
function recordsOf(outputs: TensorMap, name: string): number[][][] {
  const t = outputs[name];
  const data = t.data as Float32Array;
  const header = new Int32Array(data.buffer, data.byteOffset, data.length);
  const [batch, perImage] = t.dims;
  const images: number[][][] = [];
  for (let b = 0; b < batch; b++) {
    const base = b * perImage;
    const width = header[base + 2];
    const records: number[][] = [];
    for (let k = 0; k < header[base]; k++) {
      const o = base + 4 + k * (2 + width);
      records.push(Array.from(data.subarray(o, o + 2 + width)));
    }
    images.push(records.sort((x, y) => x[0] - y[0]));
  }
  return images;
}

describe.skipIf(SKIP)(`row selection on the CUDA provider${note}`, () => {
  let dir: string;
  let images: string[];
  let full: Model;
  let selecting: Model;
  beforeAll(async () => {
    requireData(MEDIA_DIR);
    const repo = tempRepo('yqp-cuda-select-');
    await writeBlazeFace(repo);
    dir = join(repo, 'face');
    images = readdirSync(MEDIA_DIR)
      .filter((f) => f.endsWith('.jpg'))
      .sort()
      .map((f) => join(MEDIA_DIR, f));
    full = await loadModel(dir, { device: 'cuda', contexts: 1 });
    selecting = await loadModel(dir, { device: 'cuda', contexts: 1, selectRows: true });
  });
  afterAll(async () => {
    await full?.close();
    await selecting?.close();
  });

  it('selects exactly the rows the full outputs pass, and their faces are the same, batches 1 to 16', async () => {
    const spec = full.config.postprocessing!;
    const selection = postprocessorFor(spec.type).rowSelection!(spec as never);
    let faces = 0;
    for (const size of [1, 5, 16]) {
      for (let i = 0; i < images.length; i += size) {
        const files = images.slice(i, i + size);
        const { tensor, transforms } = await preprocessImages(files, full.config.preprocessing!);
        const a = await full.infer({ 'input:0': tensor });
        const before = statsOf(selecting);
        const b = await selecting.infer({ 'input:0': tensor });
        const after = statsOf(selecting);
        expect(Object.keys(b).sort()).toEqual(['selected:Identity:0', 'selected:Identity_1:0']);
        expect(after.selectedRuns - before.selectedRuns).toBe(1);
        // The bytes that crossed: the selections alone, a fraction of the full outputs.
        expect(after.deviceToHostBytes - before.deviceToHostBytes).toBeLessThan(files.length * 61_440 * 0.2);
        // The same GPU run's rows: the kernel's records are the reference's, value for value.
        const reference = selectRowsLikeTheKernel(a, selection.pairs, selection.minScore, 32);
        for (const name of Object.keys(b)) expect(recordsOf(b, name)).toEqual(recordsOf(reference, name));
        const want = postprocess(spec, a, transforms)!;
        expect(postprocess(spec, b, transforms)).toEqual(want);
        faces += want.images.flat().length;
      }
    }
    expect(faces).toBeGreaterThan(images.length);
  });

  it('copies the full outputs when an image passes more rows than are kept, and says so', async () => {
    const few = await loadModel(dir, { device: 'cuda', contexts: 1, selectRows: { maxRows: 1 } });
    try {
      const { tensor, transforms } = await preprocessImages(images.slice(0, 8), full.config.preprocessing!);
      const before = statsOf(few);
      const b = await few.infer({ 'input:0': tensor });
      expect(statsOf(few).selectionOverflows - before.selectionOverflows).toBe(1);
      expect(Object.keys(b).sort()).toEqual(['Identity:0', 'Identity_1:0', 'Identity_2:0', 'Identity_3:0']);
      const a = await full.infer({ 'input:0': tensor });
      const spec = full.config.postprocessing!;
      expect(postprocess(spec, b, transforms)).toEqual(postprocess(spec, a, transforms));
    } finally {
      await few.close();
    }
  });

  it('a ring frame through the preprocessing kernel and CUDA graphs: the same faces with and without selection', async () => {
    const graphs = await loadModel(dir, { device: 'cuda', contexts: 1, cudaGraph: true });
    const graphsSelecting = await loadModel(dir, {
      device: 'cuda',
      contexts: 1,
      cudaGraph: true,
      selectRows: true,
    });
    const ring = FrameRing.create({ slots: 2, slotBytes: 1920 * 1080 * 3 });
    const streams = createStreamPool(1);
    const plain = new DeviceFrameInference(graphs);
    const selected = new DeviceFrameInference(graphsSelecting);
    try {
      for (const photo of images.slice(0, 6)) {
        const { data } = await sharp(photo)
          .resize(1920, 1080, { fit: 'fill' })
          .removeAlpha()
          .raw()
          .toBuffer({ resolveWithObject: true });
        await ring.writeHost(new Uint8Array(data), { width: 1920, height: 1080 }, streams.handle(0));
        const held = ring.acquire()!;
        try {
          const frame = { ptr: held.ptr, width: 1920, height: 1080, format: 'RGB' as const };
          for (let k = 0; k < 3; k++) {
            const a = await plain.infer([frame]);
            const b = await selected.infer([frame]);
            expect(b.faces).toEqual(a.faces);
          }
        } finally {
          ring.release(held);
        }
      }
      expect(statsOf(graphsSelecting).selectedRuns).toBeGreaterThanOrEqual(18);
    } finally {
      await plain.close();
      await selected.close();
      ring.dispose();
      streams.dispose();
      await graphs.close();
      await graphsSelecting.close();
    }
  });
});
