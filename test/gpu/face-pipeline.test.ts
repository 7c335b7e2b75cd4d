// The face pipeline's GPU half: the ROI kernel against the CPU rotated-crop sampler (same spec), the ring as a
// source, and the pipeline on the CUDA provider against the CPU provider.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuRoiCropper } from '../../src/gpu/roi.js';
import { gpuKernelsAvailability } from '../../src/gpu/preprocess.js';
import { FrameRing } from '../../src/gpu/frame-ring.js';
import { createStreamPool } from '../../src/gpu/runtime.js';
import {
  createFacePipeline,
  cudaPipelineSupport,
  type FacePipeline,
  type FrameResult,
} from '../../src/pipeline/face-pipeline.js';
import { pumpRing } from '../../src/pipeline/ring-source.js';
import { readRawImage } from '../../src/pipeline/sources.js';
import { cropRois, faceRoi } from '../../src/preprocess/rotated-crop.js';
import { readEntry } from '../../src/repository/repository.js';
import { MEDIA_DIR } from '../helpers/data.js';
import { importFaceModels } from '../helpers/face-models.js';
import { NO_GPU, runtimeState } from './gpu-env.js';

const kernels = gpuKernelsAvailability();
const NO_KERNELS = kernels.available ? undefined : kernels.reason;
const cuda = cudaPipelineSupport();
let models: Awaited<ReturnType<typeof importFaceModels>>;
let cpu: FacePipeline;

beforeAll(async () => {
  models = await importFaceModels();
  cpu = await createFacePipeline({ detector: models.detector, landmarks: models.landmarks, tracking: false });
});
afterAll(async () => {
  await cpu?.close();
});

describe('face pipeline on the GPU', () => {
  it.skipIf(NO_KERNELS)(
    `the ROI kernel samples what the CPU rotated crop samples ${NO_KERNELS ? `(skipped: ${NO_KERNELS})` : ''}`,
    async () => {
      const image = await readRawImage(join(MEDIA_DIR, 'audrey.jpg'));
      const spec = (await readEntry(models.landmarks)).config.preprocessing!;
      const [r] = await cpu.process([{ camera: 0, image }]);
      const rois = [faceRoi(r.faces[0], 0), { frame: 0, cx: 20, cy: 30, size: 300, angle: 0.7 }];
      const host = cropRois(spec, [image], rois);
      const gpu = new GpuRoiCropper(spec);
      try {
        const t = await gpu.run(
          [{ data: image.data, width: image.width, height: image.height, format: 'rgb' }],
          rois,
        );
        const d = t.data as Float32Array;
        let max = 0;
        for (let i = 0; i < host.length; i++) max = Math.max(max, Math.abs(d[i] - host[i]));
        expect(max).toBeLessThan(2e-3); // float32 sample positions on the GPU vs float64 here, on a 0..1 range
      } finally {
        await gpu.close();
      }
    },
  );

  it.skipIf(NO_GPU)(
    `frames from the GPU ring run through the pipeline ${NO_GPU ? `(skipped: ${runtimeState.reason})` : ''}`,
    async () => {
      const image = await readRawImage(join(MEDIA_DIR, 'cage.jpg'));
      const ring = FrameRing.create({ slots: 4, slotBytes: image.data.length });
      const pool = createStreamPool(1);
      const stream = pool.handle(0);
      const controller = new AbortController();
      const got: FrameResult[] = [];
      cpu.on('result', (res: FrameResult) => got.push(res));
      try {
        const pump = pumpRing(ring, cpu, { stream, signal: controller.signal });
        for (let i = 0; i < 3; i++) {
          await ring.writeHost(
            image.data,
            { width: image.width, height: image.height, format: 'rgb', frameIndex: i },
            stream,
          );
          await new Promise((r) => setTimeout(r, 300));
        }
        await cpu.drain();
        controller.abort();
        const stats = await pump;
        expect(stats.frames).toBeGreaterThan(0);
        expect(got.length).toBe(stats.frames);
        expect(got.every((res) => res.faces.length === 1)).toBe(true);
      } finally {
        controller.abort();
        ring.dispose();
        pool.dispose();
      }
    },
  );

  it.skipIf(!cuda.ok)(
    `the CUDA provider's landmarks equal the CPU provider's ${cuda.ok ? '' : `(skipped: ${cuda.reason})`}`,
    async () => {
      const gpu = await createFacePipeline({
        detector: models.detector,
        landmarks: models.landmarks,
        device: 'cuda',
        tracking: false,
      });
      try {
        for (const file of ['audrey.jpg', 'cage.jpg', 'franck_01829.jpg']) {
          const image = await readRawImage(join(MEDIA_DIR, file));
          const [a] = await cpu.process([{ camera: 0, image }]);
          const [b] = await gpu.process([{ camera: 0, image }]);
          expect(b.faces.length).toBe(a.faces.length);
          const la = a.faces[0].landmarks;
          const lb = b.faces[0].landmarks;
          const io = Math.hypot(la[263][0] - la[33][0], la[263][1] - la[33][1]);
          let sum = 0;
          for (let i = 0; i < 468; i++) sum += Math.hypot(la[i][0] - lb[i][0], la[i][1] - lb[i][1]);
          expect(sum / 468 / io).toBeLessThan(0.005);
        }
      } finally {
        await gpu.close();
      }
    },
  );
});
