import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { YqpError } from '../errors.js';
import { encodeOnnx, type OnnxModel } from '../onnx/model.js';
import { cloneModel, equalizeConvPairs } from './equalize.js';
import { insertQdq, planQdq } from '../onnx/qdq.js';
import type { ModelConfig } from '../repository/config.js';
import { listVersions } from '../repository/repository.js';
import { DEFAULT_TRT_VERSION, formatCalibrationCache } from './cache.js';
import {
  calibrate,
  calibrationBatch,
  validateCalibrateOptions,
  type CalibrateOptions,
  type CalibrationResult,
} from './calibrate.js';
import type { CalibrationMethod } from './calibrators.js';
import { listCalibrationFiles } from './loader.js';
import { reportHtml, summarize, type ReportTensor } from './report.js';

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
    'dir' | 'count' | 'seed' | 'method' | 'percentile' | 'batch' | 'workers'
  > & {
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
    percentile: v.method === 'percentile' ? v.percentile : null,
    batch,
    equalize,
  };
  const key = calibrationKey(keyInputs);
  const trtVersion = o.trtVersion ?? DEFAULT_TRT_VERSION;
  await mkdir(ctx.versionDir, { recursive: true });
  const notes: string[] = [];

  const reuse = o.recalibrate ? undefined : await findReusable(ctx.versionDir, key);
  let json: CalibrationJson;
  if (reuse) {
    json = reuse.json;
    notes.push(
      `calibration reused from ${join(reuse.dir, 'calibration.json')} (same model, preprocessing, frames and method; --recalibrate forces a new one)`,
    );
    progress(`skipping calibration: ${join(reuse.dir, 'calibration.json')} has the same key`);
    if (reuse.dir !== ctx.versionDir)
      for (const f of ['calibration.json', 'calibration.html'])
        if (existsSync(join(reuse.dir, f))) await copyFile(join(reuse.dir, f), join(ctx.versionDir, f));
  } else {
    const started = performance.now();
    let last = 0;
    const result: CalibrationResult = await calibrate(fp32, input, spec, profileRange, {
      dir: o.dir,
      count: v.count,
      seed: v.seed,
      method: v.method,
      percentile: v.percentile,
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
      chosen: t.amax[result.method],
      scale: t.amax[result.method] / 127,
      histogram: summarize(t.histogram),
    }));
    json = {
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
    };
    await writeFile(join(ctx.versionDir, 'calibration.json'), JSON.stringify(json, null, 2) + '\n');
    await writeFile(
      join(ctx.versionDir, 'calibration.html'),
      reportHtml(`INT8 calibration of ${ctx.config.name}`, result.method, result.percentile, tensors, [
        `method ${result.method}${result.method === 'percentile' ? ` ${result.percentile}` : ''}, ${result.frames.used} frames from ${o.dir} (batch ${result.batch})`,
        `model sha256 ${ctx.model.sha256}`,
        `${tensors.length} activation tensors, ${result.plan.weights.length} weights`,
      ]),
    );
    notes.push(
      `calibrated ${result.frames.used} frames (${result.method}) in ${result.stats.seconds.toFixed(1)} s, ${(result.frames.used / result.stats.seconds).toFixed(1)} frames/s${
        result.frames.skipped.length ? `; ${result.frames.skipped.length} unreadable files skipped` : ''
      }${result.frames.videosSkipped ? `; ${result.frames.videosSkipped.count} videos skipped (${result.frames.videosSkipped.reason})` : ''}`,
    );
  }

  const amax = new Map(json.tensors.map((t) => [t.name, t.chosen]));
  const proto = cloneModel(fp32);
  const plan = planQdq(proto);
  const missing = plan.activations.filter((t) => !amax.has(t));
  if (missing.length > 0)
    throw new YqpError(
      'E_INTERNAL',
      `calibration.json lacks ${missing.length} tensors of the Q/DQ plan (${missing[0]})`,
    );
  const qdq = insertQdq(proto, plan, amax);
  const modelPath = join(ctx.versionDir, 'model.onnx');
  await writeFile(modelPath, encodeOnnx(proto));
  await writeFile(
    join(ctx.versionDir, 'calibration.cache'),
    formatCalibrationCache(amax, json.method, trtVersion),
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
      qdq: {
        opsetFrom: qdq.opsetFrom,
        opsetTo: qdq.opsetTo,
        activations: qdq.activations,
        weights: qdq.weights,
      },
    },
    notes,
  };
}
