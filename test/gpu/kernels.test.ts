import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { YqpError } from '../../src/errors.js';
import {
  type FrameFormat,
  GpuPreprocessor,
  type HostFrame,
  type HostJob,
  type ResizeFilter,
  deviceJob,
  gpuKernelsAvailability,
  loadKernels,
  outputElements,
  outputSpecOf,
  preprocessItems,
  referenceSample,
} from '../../src/gpu/preprocess.js';
import { type FaceRoi, GpuRoiCropper, faceRoi, roiHostJob, roiToFrame } from '../../src/gpu/roi.js';
import { fromHalfBits } from '../../src/preprocess/half.js';
import { preprocessImages } from '../../src/preprocess/cpu.js';
import type { PreprocessingSpec } from '../../src/repository/config.js';
import { MEDIA_DIR } from '../helpers/data.js';

const { kernels, reason: addonReason, path: addonPath } = loadKernels();
/** The CUDA core's exports (trt/core/runtime.cc), when the loaded addon has them. */
interface CoreRuntime {
  allocDevice(bytes: number, device?: number): { ptr: bigint; size: number; dispose(): void };
  StreamPool: new (device: number, count: number) => { handle(i: number): bigint; dispose(): void };
}
const runtime = addonPath
  ? ((createRequire(import.meta.url)(addonPath) as { runtime?: CoreRuntime }).runtime ?? undefined)
  : undefined;
const gpu = gpuKernelsAvailability();
const noAddon = !kernels;
const noGpu = !gpu.available;
const gpuReason = gpu.reason ?? '';
/** The skip note of a test title: empty when the test runs. */
const skipNote = (skip: boolean, reason?: string) => (skip ? ` (skipped: ${reason})` : '');
// Measured sharp differences go here for README, "GPU preprocessing and face-ROI kernels" (set on the GPU machine to a folder under $OUT).
const REPORT_DIR = process.env.YQP_KERNELS_REPORT;
const report: Record<string, unknown> = { device: gpu };

const seed = (Date.now() ^ (process.pid << 8)) >>> 0;
function rng(s: number) {
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(seed);

const BPP: Record<FrameFormat, number> = { RGB: 3, BGR: 3, RGBA: 4, BGRA: 4, NV12: 1 };

/** A random frame; pitch padding when `padded` so pitch handling is exercised. */
function randomFrame(width: number, height: number, format: FrameFormat = 'RGB', padded = false): HostFrame {
  const row = width * BPP[format];
  const pitch = padded ? row + 64 : row;
  const bytes = format === 'NV12' ? pitch * height + pitch * Math.ceil(height / 2) : pitch * height;
  const data = new Uint8Array(bytes);
  // Smooth gradients plus noise: bilinear errors show on edges, and the noise catches wrong indexing.
  for (let i = 0; i < bytes; i++) data[i] = (((i * 7) % 251) + Math.floor(random() * 5)) & 255;
  return { data, width, height, format, pitch: padded ? pitch : undefined };
}

function spec(over: Partial<PreprocessingSpec> = {}): PreprocessingSpec {
  return {
    input: 'input',
    layout: 'NHWC',
    width: 64,
    height: 48,
    resize: 'stretch',
    colorOrder: 'RGB',
    scale: 1 / 127.5,
    mean: [1, 1, 1],
    std: [1, 1, 1],
    dtype: 'float32',
    ...over,
  };
}

function values(a: Float32Array | Uint16Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a instanceof Uint16Array ? fromHalfBits(a[i]) : a[i];
  return out;
}

function maxAbsDiff(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): number {
  const x = values(a);
  const y = values(b);
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]) || !Number.isFinite(y[i])) return Infinity;
    m = Math.max(m, Math.abs(x[i] - y[i]));
  }
  return m;
}

/** Output range of a spec: |value| bound, to turn absolute differences into relative ones. */
function range(s: PreprocessingSpec): number {
  const o = outputSpecOf(s);
  return Math.max(...[0, 1, 2].map((c) => Math.abs(255 * o.a[c]) + Math.abs(o.b[c])));
}

function hostJob(s: PreprocessingSpec, frames: HostFrame[], filter: ResizeFilter = 'bilinear'): HostJob {
  const { items } = preprocessItems(s, frames);
  const n = frames.length;
  return {
    spec: outputSpecOf(s, filter),
    frames: frames.map((f) => f.data),
    items,
    out:
      s.dtype === 'float16' ? new Uint16Array(outputElements(s, n)) : new Float32Array(outputElements(s, n)),
  };
}

function cloneOut(job: HostJob): HostJob {
  const out =
    job.out instanceof Uint16Array ? new Uint16Array(job.out.length) : new Float32Array(job.out.length);
  return { ...job, out };
}

// The configurations both the host emulation and the GPU are held to the TypeScript reference with.
const CASES: {
  name: string;
  spec: Partial<PreprocessingSpec>;
  frames: () => HostFrame[];
  filter?: ResizeFilter;
}[] = [
  { name: 'RGB stretch NHWC fp32, downscale', spec: {}, frames: () => [randomFrame(200, 150)] },
  {
    name: 'BGR input, BGR model, NCHW, mean/std',
    spec: { layout: 'NCHW', colorOrder: 'BGR', scale: 1, mean: [104, 117, 123], std: [1, 1, 1] },
    frames: () => [randomFrame(97, 61, 'BGR')],
  },
  {
    name: 'RGBA padded pitch, letterbox pad 114, upscale',
    spec: { resize: 'letterbox', padValue: 114, width: 80, height: 80, scale: 1 / 255, mean: [0, 0, 0] },
    frames: () => [randomFrame(37, 23, 'RGBA', true)],
  },
  {
    name: 'BGRA, NHWC fp16',
    spec: { dtype: 'float16', scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
    frames: () => [randomFrame(130, 70, 'BGRA')],
  },
  {
    name: 'NV12 (BT.601 limited), NCHW fp16 letterbox',
    spec: { layout: 'NCHW', dtype: 'float16', resize: 'letterbox', padValue: 0 },
    frames: () => [randomFrame(90, 50, 'NV12')],
  },
  {
    name: 'batch of frames of different sizes and formats',
    spec: { resize: 'letterbox', padValue: 127.5 },
    frames: () => [
      randomFrame(120, 90),
      randomFrame(45, 140, 'BGR'),
      randomFrame(64, 48, 'RGBA'),
      randomFrame(31, 17),
    ],
  },
  {
    name: 'antialias 1920x1080 -> 128x128 (triangle filter, PyTorch antialias=True)',
    spec: { width: 128, height: 128 },
    frames: () => [randomFrame(1920, 1080)],
    filter: 'antialias',
  },
  {
    name: 'antialias letterbox NCHW, non-integer factor',
    spec: { width: 50, height: 40, resize: 'letterbox', layout: 'NCHW', padValue: 0 },
    frames: () => [randomFrame(333, 211, 'BGR')],
    filter: 'antialias',
  },
];

describe.skipIf(noAddon)(
  `kernel code on the CPU (host emulation) vs the TypeScript reference${skipNote(noAddon, addonReason)}`,
  () => {
    it.each(CASES)('$name', ({ spec: over, frames, filter }) => {
      const s = spec(over);
      const job = hostJob(s, frames(), filter);
      const ref = cloneOut(job);
      kernels!.sampleOnHost(job);
      referenceSample(ref);
      const tol = (s.dtype === 'float16' ? 2e-3 : 1e-5) * range(s);
      expect(maxAbsDiff(job.out, ref.out), `seed ${seed}`).toBeLessThanOrEqual(tol);
    });
  },
);

describe.skipIf(noAddon)(`sharp CPU path vs the kernel${skipNote(noAddon, addonReason)}`, () => {
  it(`${noGpu ? 'kernel code (host emulation)' : 'GPU'} agrees with the sharp CPU path within the measured tolerance (real photos)`, async () => {
    const photo = join(MEDIA_DIR, 'franck_02159.jpg');
    const measure = async (frame: HostFrame, s: PreprocessingSpec, filter: ResizeFilter) => {
      let gpuOut: Float32Array;
      if (noGpu) {
        // The kernel's own code on the CPU (bit-identical to the GPU, see the GPU tests).
        const job = hostJob(s, [frame], filter);
        kernels!.sampleOnHost(job);
        gpuOut = job.out as Float32Array;
      } else {
        const p = new GpuPreprocessor(s, { filter });
        gpuOut = (await p.run([frame])).tensor.data as Float32Array;
        await p.close();
      }
      const cpu = (
        await preprocessImages(
          [{ data: frame.data, width: frame.width, height: frame.height, channels: 3 }],
          s,
        )
      ).tensor.data as Float32Array;
      let max = 0;
      let sum = 0;
      const k = outputSpecOf(s).a[0];
      for (let i = 0; i < cpu.length; i++) {
        const d = Math.abs(gpuOut[i] - cpu[i]) / k; // in 0..255 pixel levels
        max = Math.max(max, d);
        sum += d;
      }
      return { maxLevels: +max.toFixed(2), meanLevels: +(sum / cpu.length).toFixed(3) };
    };
    const decode = async (w?: number, h?: number): Promise<HostFrame> => {
      let img = sharp(photo).removeAlpha();
      if (w && h) img = img.resize(w, h, { fit: 'fill' });
      const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
      return {
        data: new Uint8Array(data.buffer, data.byteOffset, data.length),
        width: info.width,
        height: info.height,
      };
    };
    const native = await decode();
    const hd = await decode(1920, 1080);
    const s128 = spec({ width: 128, height: 128, scale: 1, mean: [0, 0, 0] });
    const results = {
      [`${native.width}x${native.height} -> 320x240 bilinear`]: await measure(
        native,
        spec({ width: 320, height: 240, scale: 1, mean: [0, 0, 0] }),
        'bilinear',
      ),
      [`${native.width}x${native.height} -> 320x240 antialias`]: await measure(
        native,
        spec({ width: 320, height: 240, scale: 1, mean: [0, 0, 0] }),
        'antialias',
      ),
      [`${native.width}x${native.height} -> 600x500 upscale bilinear`]: await measure(
        native,
        spec({ width: 600, height: 500, scale: 1, mean: [0, 0, 0] }),
        'bilinear',
      ),
      '1920x1080 -> 128x128 bilinear': await measure(hd, s128, 'bilinear'),
      '1920x1080 -> 128x128 antialias': await measure(hd, s128, 'antialias'),
      '1920x1080 -> 256x256 letterbox antialias': await measure(
        hd,
        spec({ width: 256, height: 256, resize: 'letterbox', scale: 1, mean: [0, 0, 0] }),
        'antialias',
      ),
    };
    report.sharp = results;
    console.log('GPU vs sharp (pixel levels 0..255):', JSON.stringify(results, null, 1));
    const r = Object.values(results);
    // Measured here and on the H100 (identical: the GPU is bit-identical to the host emulation), photo
    // franck_02159.jpg 720x576, its 1920x1080 version an upscale of it: README, "GPU preprocessing and face-ROI kernels". Antialias follows
    // sharp's (antialiased) downscale to a fraction of a level on average; bilinear aliases at 1080p -> 128.
    expect(r[4].meanLevels).toBeLessThan(r[3].meanLevels / 3);
    for (const i of [1, 2, 4, 5]) expect(r[i].meanLevels).toBeLessThan(0.6);
    for (const i of [1, 4, 5]) expect(r[i].maxLevels).toBeLessThan(8);
  });
});

describe('validation (no GPU needed)', () => {
  it('names the bad field of the spec and of the frames', () => {
    expect(() => deviceJob(spec({ layout: 'NCWH' as 'NCHW' }), 'bilinear', [], { ptr: 1n }, 0n)).toThrow(
      /Expected one of NHWC, NCHW for spec.layout but received "NCWH" of type string/,
    );
    expect(() => preprocessItems(spec(), [{ width: 3, height: -1 }])).toThrow(/frames\[0\].height/);
    expect(() => preprocessItems(spec(), [{ width: 3, height: 2, format: 'YUY2' as FrameFormat }])).toThrow(
      /frames\[0\].format/,
    );
    expect(() => preprocessItems(spec(), [{ width: 10, height: 2, pitch: 20 }])).toThrow(/pitch/);
    expect(() =>
      roiHostJob(spec(), [randomFrame(8, 8)], [{ frame: 1, cx: 1, cy: 1, size: 2, angle: 0 }]),
    ).toThrow(/rois\[0\].frame/);
    try {
      roiHostJob(
        spec(),
        [{ data: new Uint8Array(10), width: 8, height: 8 }],
        [{ frame: 0, cx: 4, cy: 4, size: 4, angle: 0 }],
      );
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(YqpError);
      expect((e as YqpError).code).toBe('E_IMAGE');
      expect((e as YqpError).message).toMatch(/frames\[0\].data/);
    }
  });

  it('computes the MediaPipe face ROI: centre, 1.5x side, eye-line angle', () => {
    const level = faceRoi({
      box: [100, 50, 180, 150],
      keypoints: [
        [120, 90],
        [160, 90],
      ],
    });
    expect(level).toMatchObject({ cx: 140, cy: 100, size: 150, angle: 0 });
    // Left eye 40 px lower than the right: the head is tilted by atan(40/40) = 45 degrees.
    const tilted = faceRoi({
      box: [0, 0, 100, 100],
      keypoints: [
        [30, 30],
        [70, 70],
      ],
    });
    expect(tilted.angle).toBeCloseTo(Math.PI / 4, 12);
    // The crop's centre maps to the ROI centre, its x axis runs along the eye line.
    const [cx, cy] = roiToFrame(tilted, 256, 256, 128, 128);
    expect([cx, cy]).toEqual([expect.closeTo(50, 9), expect.closeTo(50, 9)]);
    const [ex, ey] = roiToFrame(tilted, 256, 256, 256, 128);
    expect(ey - cy).toBeCloseTo(ex - cx, 9);
  });
});

describe.skipIf(noGpu)(`fused kernels on the GPU${skipNote(noGpu, gpuReason)}`, () => {
  let pre: GpuPreprocessor | undefined;
  beforeAll(() => {
    report.seed = seed;
  });
  afterAll(async () => {
    await pre?.close();
    if (REPORT_DIR) {
      mkdirSync(REPORT_DIR, { recursive: true });
      writeFileSync(join(REPORT_DIR, 'kernels-report.json'), JSON.stringify(report, null, 2));
    }
  });

  it.each(CASES)(
    'GPU = TypeScript reference and = host emulation: $name',
    async ({ spec: over, frames, filter }) => {
      const s = spec(over);
      const fr = frames();
      pre = new GpuPreprocessor(s, { filter });
      const { tensor, transforms } = await pre.run(fr);
      await pre.close();
      const job = hostJob(s, fr, filter);
      const ref = cloneOut(job);
      referenceSample(ref);
      kernels!.sampleOnHost(job);
      const out = tensor.data as Float32Array | Uint16Array;
      expect(tensor.dims).toEqual(
        s.layout === 'NHWC' ? [fr.length, s.height, s.width, 3] : [fr.length, 3, s.height, s.width],
      );
      expect(transforms).toHaveLength(fr.length);
      const tol = (s.dtype === 'float16' ? 2e-3 : 1e-5) * range(s);
      expect(maxAbsDiff(out, ref.out), `seed ${seed}`).toBeLessThanOrEqual(tol);
      // Same code, same float32 operations with no FMA contraction: GPU and CPU agree to the last bit.
      expect(maxAbsDiff(out, job.out), `seed ${seed}`).toBe(0);
    },
  );

  it('device path: frames in GPU memory, output poisoned first, completion via done(stream)', async () => {
    const s = spec({ width: 96, height: 64, layout: 'NCHW', resize: 'letterbox', padValue: 0 });
    // 40 frames: more than one launch (32 items per launch), each its own size.
    const frames = Array.from({ length: 40 }, (_, i) =>
      randomFrame(50 + i * 7, 40 + ((i * 13) % 50), i % 2 ? 'BGR' : 'RGB'),
    );
    const k = kernels!;
    const stream = k.streamCreate();
    const ptrs = frames.map((f) => {
      const p = k.malloc(f.data.length);
      k.upload(p, f.data);
      return p;
    });
    const bytes = outputElements(s, frames.length) * 4;
    const out = k.malloc(bytes);
    try {
      k.memset(out, 0xff, bytes); // NaN everywhere: an unwritten element fails the comparison
      const p = new GpuPreprocessor(s);
      const transforms = p.enqueue(
        frames.map((f, i) => ({ ptr: ptrs[i], width: f.width, height: f.height, format: f.format })),
        { ptr: out, bytes },
        stream,
      );
      await p.done(stream);
      await p.close();
      const host = new Float32Array(bytes / 4);
      k.download(out, host);
      const ref = hostJob(s, frames);
      referenceSample(ref);
      expect(maxAbsDiff(host, ref.out)).toBeLessThanOrEqual(1e-5 * range(s));
      expect(transforms[0]).toMatchObject({ width: 50, height: 40 });
    } finally {
      for (const p of ptrs) k.free(p);
      k.free(out);
      k.streamDestroy(stream);
    }
  });

  it.skipIf(!runtime)(
    `core interop: the core's DeviceBuffers and StreamPool stream in, the core's completion out${skipNote(!runtime, 'the addon has no CUDA core runtime')}`,
    async () => {
      const rt = runtime!;
      const k = kernels!;
      const s = spec({ width: 40, height: 30, layout: 'NCHW', resize: 'letterbox', padValue: 3 });
      const frames = [randomFrame(123, 77), randomFrame(64, 64, 'BGRA')];
      const bufs = frames.map((f) => {
        const b = rt.allocDevice(f.data.length);
        k.upload(b.ptr, f.data);
        return b;
      });
      const bytes = outputElements(s, 2) * 4;
      const out = rt.allocDevice(bytes);
      const pool = new rt.StreamPool(0, 2);
      const stream = pool.handle(1);
      try {
        const ref = hostJob(s, frames);
        referenceSample(ref);
        // 1. through the TypeScript wrapper: buffer.ptr and buffer.size
        k.memset(out.ptr, 0xff, bytes);
        const p = new GpuPreprocessor(s);
        p.enqueue(
          frames.map((f, i) => ({ ptr: bufs[i].ptr, width: f.width, height: f.height, format: f.format })),
          out,
          stream,
        );
        await p.done(stream);
        await p.close();
        const host = new Float32Array(bytes / 4);
        k.download(out.ptr, host);
        expect(maxAbsDiff(host, ref.out)).toBeLessThanOrEqual(1e-5 * range(s));
        // 2. the DeviceBuffer objects themselves handed to the native binding
        k.memset(out.ptr, 0xff, bytes);
        const { job } = deviceJob(
          s,
          'bilinear',
          frames.map((f, i) => ({ ptr: bufs[i].ptr, width: f.width, height: f.height, format: f.format })),
          out,
          stream,
        );
        k.sample({ ...job, frames: bufs as unknown as bigint[], out: out as unknown as bigint });
        await k.done(stream);
        host.fill(0);
        k.download(out.ptr, host);
        expect(maxAbsDiff(host, ref.out)).toBeLessThanOrEqual(1e-5 * range(s));
      } finally {
        for (const b of bufs) b.dispose();
        out.dispose();
        pool.dispose();
      }
    },
  );

  it('keeps the event loop free while a large batch (16 x 1080p) is staged, copied and processed', async () => {
    const s = spec({ width: 256, height: 256 });
    const frame = randomFrame(1920, 1080);
    const frames = Array.from({ length: 16 }, () => frame);
    const p = new GpuPreprocessor(s);
    await p.run(frames.slice(0, 1)); // warm up (context creation, allocation)
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    const { tensor, timings } = await p.run(frames);
    const ms = performance.now() - started;
    clearInterval(timer);
    await p.close();
    report.hostPath16x1080p = { ms, ticks, ...timings };
    expect(tensor.dims).toEqual([16, 256, 256, 3]);
    // The timer ran during the run: the event loop was never blocked for the whole of it.
    expect(ticks).toBeGreaterThan(Math.min(3, ms / 4));
  });

  describe('face ROI crops', () => {
    const roiSpec = spec({ width: 32, height: 32, scale: 1, mean: [0, 0, 0] });

    it('angle 0, scale 1, integer centre: an exact crop of the frame', async () => {
      const frame = randomFrame(100, 80);
      const roi: FaceRoi = { frame: 0, cx: 40, cy: 30, size: 32, angle: 0 };
      const c = new GpuRoiCropper(roiSpec);
      const out = (await c.run([frame], [roi])).data as Float32Array;
      await c.close();
      for (let oy = 0; oy < 32; oy++)
        for (let ox = 0; ox < 32; ox++)
          for (let ch = 0; ch < 3; ch++)
            expect(out[(oy * 32 + ox) * 3 + ch]).toBe(
              frame.data[((30 - 16 + oy) * 100 + (40 - 16 + ox)) * 3 + ch],
            );
    });

    it('angle 90 degrees: the crop rotated exactly (row oy of the output is column cx + 15 - oy of the frame)', async () => {
      const frame = randomFrame(100, 80, 'BGR');
      const roi: FaceRoi = { frame: 0, cx: 50, cy: 40, size: 32, angle: Math.PI / 2 };
      const c = new GpuRoiCropper(roiSpec);
      const out = (await c.run([frame], [roi])).data as Float32Array;
      await c.close();
      let mismatches = 0;
      for (let oy = 0; oy < 32; oy++)
        for (let ox = 0; ox < 32; ox++) {
          const x = 50 + 16 - 1 - oy;
          const y = 40 - 16 + ox;
          for (let ch = 0; ch < 3; ch++)
            if (out[(oy * 32 + ox) * 3 + ch] !== frame.data[(y * 100 + x) * 3 + (2 - ch)]) mismatches++;
        }
      expect(mismatches).toBe(0);
    });

    it('batched rotated crops from several frames, partly outside the frame, NCHW fp16 = reference', async () => {
      const s = spec({ width: 64, height: 64, layout: 'NCHW', dtype: 'float16', padValue: 0 });
      const frames = [randomFrame(320, 240), randomFrame(200, 300, 'RGBA'), randomFrame(160, 120, 'NV12')];
      const rois: FaceRoi[] = [
        faceRoi(
          {
            box: [100, 60, 180, 150],
            keypoints: [
              [120, 95],
              [160, 80],
            ],
          },
          0,
        ),
        faceRoi(
          {
            box: [150, 250, 210, 310],
            keypoints: [
              [165, 270],
              [195, 285],
            ],
          },
          1,
        ), // crosses the bottom edge
        { frame: 2, cx: 80, cy: 60, size: 90.5, angle: -0.7 },
        faceRoi(
          {
            box: [0, 0, 40, 40],
            keypoints: [
              [10, 20],
              [30, 14],
            ],
          },
          0,
        ), // crosses the top-left corner
      ];
      const c = new GpuRoiCropper(s);
      const out = (await c.run(frames, rois)).data as Uint16Array;
      await c.close();
      const ref = roiHostJob(s, frames, rois);
      referenceSample(ref);
      expect(maxAbsDiff(out, ref.out), `seed ${seed}`).toBeLessThanOrEqual(2e-3 * range(s));
      const emu = roiHostJob(s, frames, rois);
      kernels!.sampleOnHost(emu);
      expect(maxAbsDiff(out, emu.out)).toBe(0);
    });
  });
});
