import { availableParallelism } from 'node:os';
import { YqpError, expectOneOf, expectPositiveInteger, invalidParameter } from '../errors.js';
import type { ModelProto } from '../onnx/model.js';
import { planQdq, type QdqPlan } from '../onnx/qdq.js';
import { inputDims } from '../preprocess/spec.js';
import type { PreprocessingSpec, TensorSpec } from '../repository/config.js';
import {
  CALIBRATION_METHODS,
  DEFAULT_PERCENTILE,
  entropyAmax,
  maxAmax,
  percentileAmax,
  TENSOR_METHODS,
  type CalibrationMethod,
  type TensorMethod,
} from './calibrators.js';
import { chooseMethods, type TensorChoice } from './methods.js';
import { ActivationCollector, type CollectorStats } from './collect.js';
import type { HistogramState } from './histogram.js';
import { frameListHash, prepareFrames, streamBatches, type CalibrationFile } from './loader.js';

export interface CalibrateOptions {
  /** Folder of calibration images (and videos, when ffmpeg is on PATH). */
  dir: string;
  /** The frames to use instead of listing dir (already prepared and sampled: the caller's held-out split). */
  files?: readonly CalibrationFile[];
  /** Frames sampled (default: all). */
  count?: number;
  /** Sampling seed (default 0). */
  seed?: number;
  /** One method for every tensor, or auto (default): a method per tensor class (methods.ts). */
  method?: CalibrationMethod;
  /** Tensors to collect besides the plan's (the onnxruntime form's Conv outputs); max calibration. */
  extraTensors?: readonly string[];
  /** Per-tensor overrides, by tensor name (over --calib-method). */
  tensorMethods?: Readonly<Record<string, TensorMethod>>;
  /** Percentile of |x| for method percentile, in (0, 100] (default 99.99). */
  percentile?: number;
  /** Frames per run (default: the profile's opt batch, or the model's fixed batch). */
  batch?: number;
  /** onnxruntime worker threads (default: cores / 2, at most 8). */
  workers?: number;
  threadsPerWorker?: number;
  /** Decodes in flight (default: 2 x cores). */
  decodeConcurrency?: number;
  /** Called after each batch with the frames done and the frames planned. */
  onFrames?: (done: number, total: number) => void;
  /** One-line warnings (skipped files, skipped videos). */
  onWarning?: (message: string) => void;
}

export interface ValidatedCalibrateOptions {
  method: CalibrationMethod;
  percentile: number;
  seed: number;
  count?: number;
  batch?: number;
}

/** Checks the calibration options alone (before any file is read). */
export function validateCalibrateOptions(o: Partial<CalibrateOptions>): ValidatedCalibrateOptions {
  const method = expectOneOf('--calib-method', o.method ?? 'auto', CALIBRATION_METHODS);
  const percentile = o.percentile ?? DEFAULT_PERCENTILE;
  if (typeof percentile !== 'number' || !(percentile > 0 && percentile <= 100))
    throw invalidParameter('--calib-percentile', 'a number in (0, 100]', percentile);
  const seed = o.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0)
    throw invalidParameter('--calib-seed', 'non-negative integer', seed);
  if (o.count !== undefined) expectPositiveInteger('--calib-count', o.count);
  if (o.batch !== undefined) expectPositiveInteger('--calib-batch', o.batch);
  for (const [name, m] of Object.entries(o.tensorMethods ?? {}))
    expectOneOf(`--calib-tensor-method ${name}`, m, TENSOR_METHODS);
  return { method, percentile, seed, count: o.count, batch: o.batch };
}

/** The batch size calibration runs at, checked against the model input and the profile. */
export function calibrationBatch(
  input: TensorSpec,
  spec: PreprocessingSpec,
  profileRange: { min: number[]; opt: number[]; max: number[] } | undefined,
  requested: number | undefined,
): number {
  const expected = inputDims(spec, 1).slice(1);
  const fixed = input.dims.slice(1);
  if (fixed.length !== 3 || fixed.some((d, i) => d !== -1 && d !== expected[i]))
    throw new YqpError(
      'E_PROFILE',
      `Calibration frames [N,${expected.join(',')}] do not fit model input ${input.name} [${input.dims.join(',')}]`,
      {
        argument: 'preprocessing',
        expected: `[N,${fixed.join(',')}]`,
        received: `[N,${expected.join(',')}]`,
      },
    );
  if (input.dtype !== 'float32' || spec.dtype !== 'float32')
    throw new YqpError(
      'E_CALIBRATION',
      `Calibration needs the FP32 model; input ${input.name} is ${input.dtype}`,
      {
        argument: 'model',
        expected: 'float32 input',
        received: input.dtype,
      },
    );
  const batchDim = input.dims[0];
  const batch = requested ?? (batchDim > 0 ? batchDim : (profileRange?.opt[0] ?? 1));
  if (batchDim > 0 && batch !== batchDim)
    throw new YqpError(
      'E_PROFILE',
      `Calibration batch ${batch} does not fit model input ${input.name}, whose batch is fixed at ${batchDim}`,
      {
        argument: '--calib-batch',
        expected: String(batchDim),
        received: String(batch),
        solutions: ['build with --dynamic-batch to calibrate in larger batches'],
      },
    );
  if (profileRange && (batch < profileRange.min[0] || batch > profileRange.max[0]))
    throw new YqpError(
      'E_PROFILE',
      `Calibration batch ${batch} is outside the profile's batch range ${profileRange.min[0]}..${profileRange.max[0]}`,
      {
        argument: '--calib-batch',
        expected: `${profileRange.min[0]}..${profileRange.max[0]}`,
        received: String(batch),
      },
    );
  return batch;
}

export interface TensorCalibration {
  name: string;
  /** Residual Add input rather than a Conv/MatMul/Gemm input. */
  residual: boolean;
  amax: { entropy: number; percentile: number; max: number };
  histogram: HistogramState;
  /** The method this tensor's amax comes from, and why. */
  choice?: TensorChoice;
}

export interface CalibrationResult {
  method: CalibrationMethod;
  percentile: number;
  plan: QdqPlan;
  tensors: TensorCalibration[];
  /** The extraTensors' largest |x|, smallest and largest value, entropy threshold (the onnxruntime form's scales). */
  extra: Map<string, { max: number; min: number; hi: number; entropy: number; histogram: HistogramState }>;
  /** amax of each tensor's chosen method, in plan order. */
  amax: Map<string, number>;
  frames: {
    used: number;
    sampled: number;
    skipped: { name: string; reason: string }[];
    videosSkipped?: { count: number; reason: string };
    listHash: string;
    names: string[];
  };
  batch: number;
  stats: CollectorStats & { seconds: number; calibratorSeconds: number };
}

/** Streams the frames through the FP32 model and computes every tensor's amax under the three methods. */
export async function calibrate(
  proto: ModelProto,
  input: TensorSpec,
  spec: PreprocessingSpec,
  profileRange: { min: number[]; opt: number[]; max: number[] } | undefined,
  options: CalibrateOptions,
): Promise<CalibrationResult> {
  const v = validateCalibrateOptions(options);
  const batch = calibrationBatch(input, spec, profileRange, v.batch);
  const plan = planQdq(proto);
  const started = performance.now();
  const source = options.files
    ? { files: [...options.files], videosSkipped: undefined, cleanup: async () => {} }
    : await prepareFrames(options.dir, v.count, v.seed);
  if (source.videosSkipped)
    options.onWarning?.(
      `${source.videosSkipped.count} video file(s) in ${options.dir} skipped: ${source.videosSkipped.reason}`,
    );
  const skipped: { name: string; reason: string }[] = [];
  const total = source.files.length;
  let collector: ActivationCollector | undefined;
  try {
    const extras = (options.extraTensors ?? []).filter((t) => !plan.activations.includes(t));
    collector = await ActivationCollector.open(proto, input.name, [...plan.activations, ...extras], {
      workers: options.workers,
      threadsPerWorker: options.threadsPerWorker,
      onFrames: (done) => options.onFrames?.(done + skipped.length, total),
    });
    const dims = inputDims(spec, 1).slice(1);
    const concurrency = options.decodeConcurrency ?? Math.max(4, 2 * availableParallelism());
    for await (const b of streamBatches(
      source.files,
      spec,
      batch,
      concurrency,
      (f: CalibrationFile, e: Error) => skipped.push({ name: f.name, reason: e.message.split('\n')[0] }),
    ))
      await collector.push(b.data, [b.count, ...dims], b.count);
    const collectorStats = collector.stats;
    const histograms = await collector.finish();
    collector = undefined;
    const used = total - skipped.length;
    if (skipped.length > 0)
      options.onWarning?.(
        `${skipped.length} of ${total} calibration file(s) could not be decoded and were skipped (first: ${skipped[0].name}: ${skipped[0].reason})`,
      );
    if (used === 0)
      throw new YqpError(
        'E_CALIBRATION',
        `None of the ${total} file(s)${options.files ? ' left for calibration (the others are held out for validation)' : ''} in ${options.dir} could be decoded as an image (first: ${skipped[0]?.name}: ${skipped[0]?.reason})`,
        {
          argument: '--calib',
          expected: 'readable jpg, png or webp images',
          received: `${total} unreadable files`,
        },
      );
    const cal0 = performance.now();
    const residuals = new Set(plan.residuals);
    const tensors: TensorCalibration[] = plan.activations.map((name) => {
      const h = histograms.get(name)!;
      return {
        name,
        residual: residuals.has(name),
        // No threshold beyond the outlier-robust max: the values above it are an outlier frame's.
        amax: {
          entropy: Math.min(entropyAmax(h), maxAmax(h)),
          percentile: Math.min(percentileAmax(h, v.percentile), maxAmax(h)),
          max: maxAmax(h),
        },
        histogram: h,
      };
    });
    const extra = new Map(
      extras.map((name) => {
        const h = histograms.get(name)!;
        // min and hi within the outlier-robust max, as max is.
        const max = maxAmax(h);
        return [
          name,
          {
            max,
            min: Math.max(h.min, -max),
            hi: Math.min(h.max, max),
            entropy: entropyAmax(h),
            histogram: h,
          },
        ] as const;
      }),
    );
    const choices = chooseMethods(proto, tensors, v.method, options.tensorMethods);
    for (const t of tensors) t.choice = choices.get(t.name)!;
    const amax = new Map(tensors.map((t) => [t.name, t.amax[t.choice!.method]]));
    const now = performance.now();
    return {
      method: v.method,
      percentile: v.percentile,
      plan,
      tensors,
      amax,
      extra,
      frames: {
        used,
        sampled: total,
        skipped,
        videosSkipped: source.videosSkipped,
        listHash: frameListHash(source.files),
        names: source.files.map((f) => f.name),
      },
      batch,
      stats: { ...collectorStats, seconds: (now - started) / 1000, calibratorSeconds: (now - cal0) / 1000 },
    };
  } finally {
    await collector?.close();
    await source.cleanup();
  }
}
