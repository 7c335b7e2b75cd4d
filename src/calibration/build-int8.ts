import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { YqpError, expectNonNegativeInteger } from '../errors.js';
import { encodeOnnx, type ModelProto, type OnnxModel } from '../onnx/model.js';
import { cloneModel, equalizeConvPairs } from './equalize.js';
import { planQdq } from '../onnx/qdq.js';
import { ortExtraTensors } from '../onnx/qdq-ort.js';
import { ORT_MODEL_FILE, writeOrtForm, type OrtRange } from './ort-form.js';
import { AccuracyProbe, describeAccuracy, type AccuracyResult } from './accuracy.js';
import { fallbackUntilTarget, qdqModel, type FallbackResult } from './fallback.js';
import { splitFrames } from './split.js';
import type { ModelConfig, TensorSpec } from '../repository/config.js';
import { listVersions } from '../repository/repository.js';
import { DEFAULT_TRT_VERSION, formatCalibrationCache } from './cache.js';
import {
  calibrate,
  calibrationBatch,
  validateCalibrateOptions,
  type CalibrateOptions,
  type CalibrationResult,
} from './calibrate.js';
import { outlierFrames, type CalibrationMethod } from './calibrators.js';
import { listCalibrationFiles, prepareFrames, type CalibrationFile } from './loader.js';
import { clippedShare, reportHtml, summarize, type ReportTensor, type ReportValidation } from './report.js';

/** What src/build.ts hands the INT8 branch. */
export interface BuildInt8Context {
  /** The FP32 ONNX file (already made dynamic-batch when asked). */
  modelPath: string;
  /** The same model, decoded. */
  model: OnnxModel;
  /** The entry's config: preprocessing spec, inputs, profiles. */
  config: ModelConfig;
  /** <repo>/<name>/<version>: model.onnx (Q/DQ), calibration.cache, calibration.json, calibration.html go here. */
  versionDir: string;
  options: Pick<
    CalibrateOptions,
    'dir' | 'count' | 'seed' | 'method' | 'tensorMethods' | 'percentile' | 'batch' | 'workers'
  > & {
    /** Held-out frames to validate on; without it every third frame (or folder) of dir is held out. */
    validate?: string;
    /** Write the model even when it misses the accuracy target on the validation frames. */
    allowAccuracyLoss?: boolean;
    /** Measure every tensor's sensitivity even when the target holds (for the report). */
    sensitivity?: boolean;
    /** At most this many tensors left unquantized (default: a quarter of them; 0: no fallback). */
    maxFallback?: number;
    recalibrate?: boolean;
    /** Header version of calibration.cache (NV_TENSORRT_VERSION, default 101600). */
    trtVersion?: number;
    /** Cross-layer equalization of Conv -> Conv pairs before calibration (default true). */
    equalize?: boolean;
  };
  /** Stage messages (fraction undefined) and the progress line (fraction in [0, 1]). */
  onProgress?: (message: string, fraction?: number) => void;
}

export interface BuildInt8Result {
  /** The onnxruntime form (model.ort.onnx) when written and within the target: what the onnxruntime backend loads. */
  onnxruntimeModelFile?: string;
  /** The Q/DQ model written into versionDir (model.onnx). */
  modelPath: string;
  precision: 'int8';
  /** Goes to config.metadata.calibration. */
  metadata: Record<string, unknown>;
  notes: string[];
}

export const CALIBRATION_FORMAT = 'yqp-trt-calibration/1';

interface CalibrationJson {
  format: string;
  key: string;
  keyInputs: Record<string, unknown>;
  method: CalibrationMethod;
  percentile: number;
  tensors: ReportTensor[];
  [k: string]: unknown;
}

/** The reuse key: model hash, preprocessing spec, frame list, sampling and method. */
export function calibrationKey(inputs: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex');
}

/** Finds a calibration.json with this key in any version folder of the entry. */
async function findReusable(
  versionDir: string,
  key: string,
): Promise<{ dir: string; json: CalibrationJson } | undefined> {
  const entryDir = dirname(versionDir);
  const dirs = [versionDir, ...listVersions(entryDir).map((v) => join(entryDir, String(v)))];
  for (const d of dirs) {
    const p = join(d, 'calibration.json');
    if (!existsSync(p)) continue;
    try {
      const json = JSON.parse(await readFile(p, 'utf8')) as CalibrationJson;
      if (json.format === CALIBRATION_FORMAT && json.key === key) return { dir: d, json };
    } catch {
      // A damaged report is not reusable; calibrate again.
    }
  }
  return undefined;
}

function describeRate(done: number, total: number, started: number): string {
  const s = (performance.now() - started) / 1000;
  const rate = s > 0 ? done / s : 0;
  const eta = rate > 0 ? (total - done) / rate : 0;
  return `calibrating ${done}/${total} frames ${rate.toFixed(1)}/s eta ${eta.toFixed(0)}s`;
}

/**
 * The INT8 branch of build: calibrates (or reuses a calibration with the same key), writes the Q/DQ model, the
 * TensorRT calibration cache and the report into versionDir.
 */
export async function buildInt8(ctx: BuildInt8Context): Promise<BuildInt8Result> {
  const o = ctx.options;
  const v = validateCalibrateOptions(o);
  if (o.maxFallback !== undefined) expectNonNegativeInteger('--calib-max-fallback', o.maxFallback);
  const progress = ctx.onProgress ?? (() => {});
  const spec = ctx.config.preprocessing;
  if (!spec)
    throw new YqpError(
      'E_CALIBRATION',
      'INT8 calibration needs a preprocessing spec (a preset or --preprocess)',
      {
        argument: 'preprocessing',
        expected: 'config.preprocessing',
        received: 'none',
      },
    );
  const input =
    ctx.config.inputs.find((i) => i.name === spec.input) ??
    ctx.model.inputs.find((i) => i.name === spec.input);
  if (!input)
    throw new YqpError('E_PROFILE', `preprocessing.input ${spec.input} is not an input of the model`, {
      argument: 'preprocessing.input',
    });
  const profileRange = ctx.config.profiles[0]?.[input.name];
  const batch = calibrationBatch(input, spec, profileRange, v.batch);
  planQdq(ctx.model.proto); // fails early when there is nothing to quantize
  const equalize = o.equalize ?? true;
  // Calibration, Q/DQ and the cache all work on the equalized copy (the same FP32 function).
  const fp32 = cloneModel(ctx.model.proto);
  const equalized = equalize ? equalizeConvPairs(fp32) : { pairs: 0, tensors: [] };
  const listing = await listCalibrationFiles(o.dir);
  const keyInputs = {
    modelSha256: ctx.model.sha256,
    preprocessing: spec,
    frames: [...listing.images, ...listing.videos].map((f) => [f.name, f.size, f.mtimeMs]),
    count: v.count ?? null,
    seed: v.seed,
    method: v.method,
    tensorMethods: o.tensorMethods ?? null,
    percentile: v.percentile,
    batch,
    equalize,
    // Without --calib-validate a third of the frames is held out, so the calibrated set differs.
    heldOut: !o.validate,
    // What the onnxruntime form takes of the extra tensors (2: the heads' ranges and entropy thresholds too).
    ortForm: 2,
  };
  const key = calibrationKey(keyInputs);
  const trtVersion = o.trtVersion ?? DEFAULT_TRT_VERSION;
  await mkdir(ctx.versionDir, { recursive: true });
  const notes: string[] = [];

  const source = await prepareFrames(o.dir, v.count, v.seed);
  const validateSource = o.validate ? await prepareFrames(o.validate, undefined, 0) : undefined;
  try {
    if (source.videosSkipped)
      progress(
        `${source.videosSkipped.count} video file(s) in ${o.dir} skipped: ${source.videosSkipped.reason}`,
      );
    const split = o.validate
      ? { calibrate: source.files, validate: validateSource!.files, by: 'none' as const, folders: undefined }
      : splitFrames(source.files);
    const reuse = o.recalibrate ? undefined : await findReusable(ctx.versionDir, key);
    let json: CalibrationJson;
    if (reuse) {
      json = reuse.json;
      notes.push(
        `calibration reused from ${join(reuse.dir, 'calibration.json')} (same model, preprocessing, frames and method; --recalibrate forces a new one)`,
      );
      progress(`skipping calibration: ${join(reuse.dir, 'calibration.json')} has the same key`);
    } else {
      json = await runCalibration(ctx, fp32, input, profileRange, batch, split.calibrate, key, keyInputs);
      notes.push(
        `calibrated ${(json.frames as { used: number }).used} frames (${json.method}) in ${(json.timing as { seconds: number }).seconds.toFixed(1)} s`,
      );
    }

    const amax = new Map(json.tensors.map((t) => [t.name, t.chosen]));
    const plan = planQdq(cloneModel(fp32));
    const missing = plan.activations.filter((t) => !amax.has(t));
    if (missing.length > 0)
      throw new YqpError(
        'E_INTERNAL',
        `calibration.json lacks ${missing.length} tensors of the Q/DQ plan (${missing[0]})`,
      );

    // Validation on frames calibration did not see, and the fallback when the target is missed.
    const validateFrom = o.validate
      ? `--calib-validate ${o.validate}`
      : split.by === 'folder'
        ? `held out by folder from ${o.dir} (${split.folders!.join(', ')})`
        : `held out by file from ${o.dir} (every third frame)`;
    let fb: FallbackResult | undefined;
    let probe: AccuracyProbe | undefined;
    if (split.validate.length > 0) {
      progress(`validating on ${split.validate.length} frames (${validateFrom})`);
      probe = await AccuracyProbe.open(
        fp32,
        split.validate,
        spec,
        ctx.config.postprocessing,
        undefined,
        (f, e) => progress(`validation frame ${f} skipped: ${e.message.split('\n')[0]}`),
      );
      fb = await fallbackUntilTarget(fp32, amax, probe, {
        onProgress: progress,
        sensitivity: o.sensitivity,
        maxFallback: o.maxFallback,
      });
      notes.push(
        `validation (${validateFrom}): ${describeAccuracy(fb.final)}${fb.fallback.length ? `; left unquantized: ${fb.fallback.map((f) => f.name).join(', ')}` : ''} (${fb.seconds.toFixed(1)} s)`,
      );
    } else {
      notes.push(
        `not validated: ${source.files.length} frame(s) leave none to hold out; give --calib-validate <dir> to check INT8 on other scenes`,
      );
    }
    const excluded = fb?.fallback.map((f) => f.name) ?? [];
    const validation: ReportValidation | undefined = fb && {
      source: `${fb.final.frames} frames ${validateFrom}`,
      initial: describeAccuracy(fb.initial),
      final: fb.fallback.length > 0 ? describeAccuracy(fb.final) : undefined,
      pass: fb.final.pass,
      fallback: fb.fallback.map((f) => ({ name: f.name, cost: f.cost, after: describeAccuracy(f.result) })),
      sensitivity: fb.sensitivity.map((x) => ({
        name: x.name,
        gain: x.gain,
        result: describeAccuracy(x.result),
      })),
      mismatches: fb.final.mismatches ?? [],
    };
    json.validation = validation
      ? { ...validation, initialResult: fb!.initial, finalResult: fb!.final }
      : { skipped: 'no held-out frames' };
    json.fallback = excluded;
    await writeFile(join(ctx.versionDir, 'calibration.json'), JSON.stringify(json, null, 2) + '\n');
    await writeFile(
      join(ctx.versionDir, 'calibration.html'),
      reportHtml(
        `INT8 calibration of ${ctx.config.name}`,
        json.percentile,
        json.tensors,
        [
          `method ${json.method}, ${(json.frames as { used: number }).used} frames from ${o.dir} (batch ${batch})`,
          `model sha256 ${ctx.model.sha256}`,
          `${json.tensors.length} activation tensors, ${plan.weights.length} weights`,
        ],
        validation,
      ),
    );
    if (fb && !fb.final.pass && !o.allowAccuracyLoss)
      throw accuracyError(fb.final, validateFrom, join(ctx.versionDir, 'calibration.html'), excluded);

    const written = Object.fromEntries([...amax].filter(([n]) => !excluded.includes(n)));
    const { proto, qdq } = qdqModel(fp32, amax, excluded);
    const modelPath = join(ctx.versionDir, 'model.onnx');
    await writeFile(modelPath, encodeOnnx(proto));
    const extra = json.ortExtra as Record<string, OrtRange> | undefined;
    // A calibration.json from before the onnxruntime form has no ortExtra: no such form then.
    const ort = extra
      ? await writeOrtForm(
          ctx.versionDir,
          {
            fp32,
            amax,
            mins: new Map(json.tensors.map((t) => [t.name, t.histogram.min])),
            extra,
            excluded,
          },
          probe,
          summaryOf,
        )
      : undefined;
    if (ort) notes.push(ort.note);
    await writeFile(
      join(ctx.versionDir, 'calibration.cache'),
      formatCalibrationCache(new Map(Object.entries(written)), json.method, trtVersion),
    );
    // The cache's scales belong to the equalized FP32 model: keep it beside the cache for TensorRT 10's implicit path.
    if (equalized.pairs > 0) await writeFile(join(ctx.versionDir, 'calibration.fp32.onnx'), encodeOnnx(fp32));
    if (equalized.pairs > 0)
      notes.push(
        `cross-layer equalization of ${equalized.pairs} Conv -> Conv pairs (same FP32 function; calibration.fp32.onnx is the model calibration.cache belongs to)`,
      );
    if (qdq.opsetFrom !== qdq.opsetTo)
      notes.push(
        `Q/DQ model: opset ${qdq.opsetFrom} -> ${qdq.opsetTo} (per-channel DequantizeLinear needs 13; every op of the model keeps its meaning)`,
      );
    notes.push(
      `Q/DQ model: ${qdq.activations} activations per tensor, ${qdq.weights} weights per channel; calibration.cache, calibration.json, calibration.html written`,
    );
    return {
      modelPath,
      onnxruntimeModelFile: ort?.usable ? ORT_MODEL_FILE : undefined,
      precision: 'int8',
      metadata: {
        method: json.method,
        ...(json.method === 'percentile' ? { percentile: json.percentile } : {}),
        key,
        reused: Boolean(reuse),
        frames: (json.frames as { used: number } | undefined)?.used,
        cache: 'calibration.cache',
        report: 'calibration.json',
        picture: 'calibration.html',
        equalizedPairs: equalized.pairs,
        validation: fb ? summaryOf(fb.final, validateFrom) : null,
        onnxruntimeForm: ort?.metadata ?? null,
        fallback: excluded,
        qdq: {
          opsetFrom: qdq.opsetFrom,
          opsetTo: qdq.opsetTo,
          activations: qdq.activations,
          weights: qdq.weights,
        },
      },
      notes,
    };
  } finally {
    await source.cleanup();
    await validateSource?.cleanup();
  }
}

function summaryOf(r: AccuracyResult, from: string): Record<string, unknown> {
  return {
    from,
    pass: r.pass,
    frames: r.frames,
    metric: r.metric,
    ...(r.metric === 'faces'
      ? { facesFp32: r.facesFp32, matched: r.matched, recall: r.recall, falseFaces: r.falseFaces }
      : {}),
    cosine: r.cosine,
  };
}

function accuracyError(r: AccuracyResult, from: string, report: string, excluded: string[]): YqpError {
  return new YqpError(
    'E_ACCURACY',
    `INT8 misses the accuracy target on the validation frames (${from}): ${describeAccuracy(r)}${
      excluded.length ? `, even with ${excluded.length} tensors left unquantized` : ''
    }; see ${report}`,
    {
      argument: '--int8',
      expected: 'INT8 within the target of FP32 on held-out frames',
      received: describeAccuracy(r),
      solutions: [
        'calibrate on frames from more scenes (cameras, rooms, people)',
        'try --calib-method max, or --calib-tensor-method <tensor>=max for the tensors the report ranks first',
        '--allow-accuracy-loss writes the model anyway',
      ],
    },
  );
}

/** Calibrates on `files` and builds calibration.json's content (written by the caller with the validation). */
async function runCalibration(
  ctx: BuildInt8Context,
  fp32: ModelProto,
  input: TensorSpec,
  profileRange: { min: number[]; opt: number[]; max: number[] } | undefined,
  batch: number,
  files: CalibrationFile[],
  key: string,
  keyInputs: Record<string, unknown> & { frames: unknown[] },
): Promise<CalibrationJson> {
  const o = ctx.options;
  const progress = ctx.onProgress ?? (() => {});
  const started = performance.now();
  let last = 0;
  const result: CalibrationResult = await calibrate(fp32, input, ctx.config.preprocessing!, profileRange, {
    dir: o.dir,
    files,
    count: o.count,
    seed: o.seed,
    method: o.method,
    tensorMethods: o.tensorMethods,
    extraTensors: ortExtraTensors(fp32, planQdq(fp32)),
    percentile: o.percentile,
    batch,
    workers: o.workers,
    onFrames: (done, total) => {
      const now = performance.now();
      if (now - last < 100 && done < total) return;
      last = now;
      progress(describeRate(done, total, started), total > 0 ? done / total : 1);
    },
    onWarning: (m) => progress(m),
  });
  const tensors: ReportTensor[] = result.tensors.map((t) => ({
    name: t.name,
    residual: t.residual,
    amax: t.amax,
    chosen: result.amax.get(t.name)!,
    scale: result.amax.get(t.name)! / 127,
    method: t.choice?.method,
    reason: t.choice?.reason,
    clipped: clippedShare(t.histogram, result.amax.get(t.name)!),
    outlierFrames: outlierFrames(t.histogram),
    histogram: summarize(t.histogram),
  }));
  return {
    format: CALIBRATION_FORMAT,
    key,
    keyInputs: { ...keyInputs, frames: { files: keyInputs.frames.length } },
    method: result.method,
    percentile: result.percentile,
    createdAt: new Date().toISOString(),
    frames: {
      used: result.frames.used,
      sampled: result.frames.sampled,
      skipped: result.frames.skipped,
      videosSkipped: result.frames.videosSkipped ?? null,
      listHash: result.frames.listHash,
      names: result.frames.names,
    },
    batch: result.batch,
    timing: {
      seconds: result.stats.seconds,
      framesPerSecond: result.frames.used / result.stats.seconds,
      onnxruntimeMs: result.stats.runMs,
      histogramMs: result.stats.histogramMs,
      calibratorSeconds: result.stats.calibratorSeconds,
      workers: result.stats.workers,
      threadsPerWorker: result.stats.threadsPerWorker,
    },
    placement: {
      ops: result.plan.ops,
      activations: result.plan.activations.length,
      residuals: result.plan.residuals.length,
      weights: result.plan.weights.length,
    },
    cacheFile: 'calibration.cache',
    tensors,
    ortExtra: Object.fromEntries(
      [...result.extra].map(([n, e]) => [n, { max: e.max, min: e.min, hi: e.hi, entropy: e.entropy }]),
    ),
  };
}
