import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { BackendAvailability } from '../backends/backend.js';
import { YqpError, isYqpError } from '../errors.js';
import { decodeOnnx, encodeOnnx } from '../onnx/model.js';
import type { ModelConfig } from '../repository/config.js';
import {
  engineCacheDir,
  engineCacheKey,
  readCachedEngine,
  timingCacheFile,
  writeCachedEngine,
} from './cache-key.js';
import { castOnnx } from './cast-onnx.js';
import type { TensorRTPlanMetadata } from './metadata.js';
import {
  loadAddon,
  type NativeBuildOptions,
  type NativeProgressEvent,
  type NativeTensorRT,
} from './native.js';
import { planAffectingOptions, validateBuildOptions, type TensorRTBuildOptions } from './options.js';

export { castOnnx, type CastReport, type CastTarget } from './cast-onnx.js';
export { canonicalJson, engineCacheDir, engineCacheKey, type EngineCacheKeyParts } from './cache-key.js';
export { planIncompatibility, planLoadError, type TensorRTPlanMetadata } from './metadata.js';
export {
  planAffectingOptions,
  validateBuildOptions,
  validateMemoryStrategy,
  type MemoryStrategy,
  type TensorRTBuildOptions,
} from './options.js';

export interface TensorRTBuildResult {
  /** The raw serialized plan (what trtexec --loadEngine and Triton's tensorrt backend read) for model.plan. */
  plan: Uint8Array;
  metadata: TensorRTPlanMetadata;
  notes: string[];
  /** True when the plan came from the engine cache without building. */
  cached: boolean;
}

/**
 * Adapts a stream of calibration batches (from the calibration image loader) to the 10.x calibrator's pull
 * function. Each item is one batch: a typed array per calibration input, in the profile's input order.
 * Pulls are served in order; the native side keeps at most its prefetch count outstanding.
 */
export function calibrationBatchesFrom(
  batches: AsyncIterable<ArrayBufferView[] | ArrayBufferView>,
): () => Promise<ArrayBufferView[] | null> {
  const it = batches[Symbol.asyncIterator]();
  let chain: Promise<unknown> = Promise.resolve();
  return () => {
    const next = chain.then(async () => {
      const r = await it.next();
      if (r.done) return null;
      return Array.isArray(r.value) ? r.value : [r.value as ArrayBufferView];
    });
    chain = next.catch(() => undefined);
    return next;
  };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The native TensorRT module, or a reason it cannot be used here. Never throws. */
export function loadTensorRT(): { trt?: NativeTensorRT; reason?: string; addonPath?: string } {
  const loaded = loadAddon();
  if (!loaded.addon) return { reason: loaded.error };
  const trt = loaded.addon.tensorrt;
  if (!trt)
    return {
      reason: `the native addon (${loaded.path}) was built without TensorRT: set TENSORRT_ROOT to a TensorRT install and run npm run build:native`,
      addonPath: loaded.path,
    };
  const lib = trt.load();
  if (!lib.loaded) return { reason: lib.error ?? 'libnvinfer did not load', addonPath: loaded.path };
  return { trt, addonPath: loaded.path };
}

/** Whether the tensorrt backend can run here: addon with TensorRT compiled in, libnvinfer loadable, a GPU. */
export function tensorrtAvailability(device = 0): BackendAvailability {
  const { trt, reason } = loadTensorRT();
  if (!trt) return { available: false, reason };
  const version = trt.load().version;
  try {
    trt.deviceInfo(device);
  } catch (e) {
    return {
      available: false,
      reason: `TensorRT ${version} loaded but no usable GPU ${device}: ${(e as Error).message}`,
      version,
    };
  }
  return { available: true, version };
}

export function requireTensorRT(): NativeTensorRT {
  const { trt, reason } = loadTensorRT();
  if (!trt)
    throw new YqpError('E_BACKEND_UNAVAILABLE', `TensorRT is unavailable: ${reason}`, {
      argument: 'backend',
      expected: 'TensorRT (libnvinfer) and an NVIDIA GPU',
      received: reason,
      solutions: ['run `yqp-trt doctor`', 'use --backend onnxruntime'],
    });
  return trt;
}

function majorOf(version: string): number {
  return Number.parseInt(version.split('.')[0], 10);
}

/** Turns TensorRT's phase events into the build command's (message, fraction) progress. */
function progressAdapter(onProgress?: (message: string, fraction?: number) => void) {
  if (!onProgress) return undefined;
  const steps = new Map<string, number>();
  let top: string | undefined;
  return (e: NativeProgressEvent) => {
    if (e.kind === 'start') {
      steps.set(e.phase, e.steps);
      if (!e.parent) top = e.phase;
      onProgress(`TensorRT: ${e.phase}`, e.parent ? undefined : 0);
    } else if (e.kind === 'step') {
      const n = steps.get(e.phase) ?? 0;
      onProgress(
        `TensorRT: ${e.phase} ${e.step + 1}/${n}`,
        e.phase === top && n > 0 ? (e.step + 1) / n : undefined,
      );
    } else {
      steps.delete(e.phase);
      if (e.phase === top) onProgress(`TensorRT: ${e.phase} done`, 1);
    }
  };
}

function hasQdq(bytes: Uint8Array, path: string): boolean {
  return (decodeOnnx(bytes, path).graph?.node ?? []).some((n) => n.opType === 'QuantizeLinear');
}

/**
 * ONNX -> TensorRT plan for a repository entry.
 * Precision: on TensorRT 10.x fp16/bf16 are builder flags and int8 is the Q/DQ model (INT8+FP16 flags) or, with
 * int8Calibrator, IInt8EntropyCalibrator2; on TensorRT 11 every network is strongly typed, so fp16/bf16 cast the
 * ONNX (castOnnx, I/O stays float32) and int8 needs the Q/DQ model.
 * The engine cache (model hash, profiles, plan-affecting options, TensorRT version, GPU) skips builds already done.
 */
export async function buildEngine(
  onnxPath: string,
  config: ModelConfig,
  options: TensorRTBuildOptions | Record<string, unknown> = {},
  onProgress?: (message: string, fraction?: number) => void,
): Promise<TensorRTBuildResult> {
  const trt = requireTensorRT();
  const major = majorOf(trt.compiledVersion);
  const o = validateBuildOptions(options as Record<string, unknown>, major);
  const notes: string[] = [];
  const lib = trt.load();
  const version = lib.version ?? trt.compiledVersion;
  const device = trt.deviceInfo(o.device);

  let onnxBytes: Uint8Array;
  try {
    onnxBytes = await readFile(onnxPath);
  } catch (e) {
    throw new YqpError(
      'E_MODEL_FILE',
      `Model file ${onnxPath} cannot be read (${(e as NodeJS.ErrnoException).code})`,
      {
        argument: 'model',
        cause: e,
      },
    );
  }
  if (o.precision === 'int8' && !o.int8Calibrator && !hasQdq(onnxBytes, onnxPath))
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a Q/DQ model for INT8 on TensorRT ${version} but received ${onnxPath}, which has no QuantizeLinear`,
      {
        argument: 'precision',
        expected: 'the Q/DQ model made by calibration',
        received: 'an unquantized model',
        solutions: ['yqp-trt build <model.onnx> --int8 --calib <dir>'],
      },
    );

  let precisionMode: string;
  if (o.precision === 'int8')
    precisionMode = o.int8Calibrator
      ? 'int8: IInt8EntropyCalibrator2 (implicit)'
      : 'int8: Q/DQ model (explicit)';
  else if (o.precision === 'fp32') precisionMode = 'fp32';
  else if (major >= 11)
    precisionMode = `${o.precision}: ONNX cast to ${o.precision === 'fp16' ? 'float16' : 'bfloat16'}, strongly typed`;
  else
    precisionMode = o.stronglyTyped
      ? `${o.precision}: strongly typed (as in the ONNX)`
      : `${o.precision}: builder flag`;

  const calibrationCache =
    o.calibrationCache && existsSync(o.calibrationCache) ? await readFile(o.calibrationCache) : undefined;
  const buildOptions = planAffectingOptions(o);
  const cacheKey = engineCacheKey({
    modelSha256: sha256(onnxBytes),
    profiles: config.profiles,
    buildOptions,
    tensorrtVersion: version,
    gpu: device.name,
    sm: device.sm,
    ...(calibrationCache && o.int8Calibrator ? { calibrationCacheSha256: sha256(calibrationCache) } : {}),
  });
  const cacheDir = engineCacheDir(o.engineCache);
  // The 10.x calibrator must run when it has no cache to read, so a cached plan would hide a requested calibration.
  if (cacheDir && !(o.int8Calibrator && !calibrationCache)) {
    const hit = await readCachedEngine(cacheDir, cacheKey);
    if (hit) {
      notes.push(`engine cache hit ${join(cacheDir, cacheKey)}.plan: build skipped`);
      return { plan: hit.plan, metadata: hit.metadata, notes, cached: true };
    }
  }

  const work = await mkdtemp(join(tmpdir(), 'yqp-trt-engine-'));
  try {
    let parsePath = onnxPath;
    if (major >= 11 && (o.precision === 'fp16' || o.precision === 'bf16')) {
      const proto = decodeOnnx(onnxBytes, onnxPath);
      const report = castOnnx(proto, o.precision === 'fp16' ? 'float16' : 'bfloat16');
      parsePath = join(work, 'model.cast.onnx');
      await writeFile(parsePath, encodeOnnx(proto));
      notes.push(
        `TensorRT ${major}: ${o.precision} by casting the ONNX (${report.initializers} initializers, ${report.constants} constants; I/O stays float32)`,
      );
    }
    const timingPath =
      o.timingCache === false
        ? undefined
        : (o.timingCache ?? (cacheDir ? timingCacheFile(cacheDir, version, device.name) : undefined));
    const timingCache = timingPath && existsSync(timingPath) ? await readFile(timingPath) : undefined;
    if (timingCache) notes.push(`timing cache read from ${timingPath}`);

    const native: NativeBuildOptions = {
      onnxPath: parsePath,
      profiles: config.profiles,
      precision: o.precision,
      stronglyTyped: major >= 11 ? true : o.stronglyTyped,
      int8Calibrator: o.int8Calibrator,
      calibrationProfile: o.calibrationProfile,
      ...(calibrationCache ? { calibrationCache } : {}),
      ...(timingCache ? { timingCache } : {}),
      ...(o.optimizationLevel !== undefined ? { optimizationLevel: o.optimizationLevel } : {}),
      ...(o.workspaceMiB !== undefined ? { workspaceBytes: Math.round(o.workspaceMiB * 2 ** 20) } : {}),
      ...(o.tacticSharedMemoryKiB !== undefined
        ? { tacticSharedMemoryBytes: Math.round(o.tacticSharedMemoryKiB * 1024) }
        : {}),
      versionCompatible: o.versionCompatible,
      excludeLeanRuntime: o.excludeLeanRuntime,
      hardwareCompatibility: o.hardwareCompatibility,
      ...(o.maxAuxStreams !== undefined ? { maxAuxStreams: o.maxAuxStreams } : {}),
      tf32: o.tf32,
      sparseWeights: o.sparseWeights,
      ...(o.builderThreads !== undefined ? { maxThreads: o.builderThreads } : {}),
      device: o.device,
    };
    if (o.signal?.aborted)
      throw new YqpError('E_CANCELLED', 'The TensorRT build was cancelled before it started', {
        argument: 'signal',
      });
    const handle = trt.build(native, {
      onProgress: progressAdapter(onProgress),
      ...(o.calibrationBatches ? { pullBatch: o.calibrationBatches } : {}),
    });
    const abort = () => handle.cancel();
    o.signal?.addEventListener('abort', abort, { once: true });
    let result;
    try {
      result = await handle.promise;
    } catch (e) {
      if (isYqpError(e)) throw e;
      const err = e as Error & { code?: string };
      if (err.code === 'E_CANCELLED')
        throw new YqpError('E_CANCELLED', 'The TensorRT build was cancelled', {
          argument: 'signal',
          cause: e,
        });
      throw new YqpError('E_BACKEND', `TensorRT could not build ${onnxPath}: ${err.message}`, {
        argument: 'model',
        cause: e,
        solutions: ['rerun with YQP_TRT_LOG_STDERR=1 to see every TensorRT message'],
      });
    } finally {
      o.signal?.removeEventListener('abort', abort);
    }
    notes.push(...result.log.filter((l) => l.startsWith('error')).map((l) => `TensorRT ${l}`));
    if (timingPath && result.timingCache.length > 0) {
      await mkdir(dirname(timingPath), { recursive: true });
      await writeFile(timingPath, result.timingCache);
      notes.push(`timing cache written to ${timingPath}`);
    }
    if (o.calibrationCache && result.calibrationCache) {
      await mkdir(dirname(o.calibrationCache), { recursive: true });
      await writeFile(o.calibrationCache, result.calibrationCache);
      notes.push(
        `TensorRT calibration cache written to ${o.calibrationCache} (${result.calibrationBatches} batches)`,
      );
    }
    const metadata: TensorRTPlanMetadata = {
      version: result.version,
      gpu: result.gpu,
      sm: result.sm,
      buildOptions,
      compiledWith: trt.compiledVersion,
      planSha256: sha256(result.plan),
      planBytes: result.plan.length,
      cacheKey,
      precisionMode,
      profiles: config.profiles,
      io: result.io,
    };
    if (cacheDir) {
      await writeCachedEngine(cacheDir, cacheKey, { plan: result.plan, metadata });
      notes.push(`engine cached as ${join(cacheDir, cacheKey)}.plan`);
    }
    return { plan: result.plan, metadata, notes, cached: false };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
