import { YqpError, expectOneOf, invalidParameter } from '../errors.js';

export type TensorRTPrecision = 'fp32' | 'fp16' | 'bf16' | 'int8';
export type HardwareCompatibility = 'none' | 'ampere-plus' | 'same-compute-capability';
export type MemoryStrategy = 'static' | 'on-profile-change' | 'user-managed';

/** Builder options as the library and the CLI give them (units people use: MiB, booleans, paths). */
export interface TensorRTBuildOptions {
  precision?: TensorRTPrecision;
  /**
   * TensorRT 10.x only: INT8 by IInt8EntropyCalibrator2 over `calibrationBatches` instead of the Q/DQ model.
   * TensorRT 11 removed implicit calibration and refuses it.
   */
  int8Calibrator?: boolean;
  /** Pulls one calibration batch (one typed array per input at the calibration profile's opt shape), null at the end. */
  calibrationBatches?: () => Promise<ArrayBufferView[] | null>;
  /** Index of the profile whose opt shapes the calibration batches have (10.x calibrator). */
  calibrationProfile?: number;
  /** TensorRT calibration cache file: read when present, written after calibration. */
  calibrationCache?: string;
  /** 10.x: build a strongly typed network (precisions come from the ONNX only). Always true on 11. */
  stronglyTyped?: boolean;
  /** Timing cache file, read before and written after the build; false: none. Default: in the engine cache. */
  timingCache?: string | false;
  /** Builder optimization level 0..5 (TensorRT's default 3). */
  optimizationLevel?: number;
  /** Same as optimizationLevel (the CLI's --builder-optimization-level). */
  builderOptimizationLevel?: number;
  /** Workspace memory pool limit in MiB. */
  workspaceMiB?: number;
  /** Tactic shared memory pool limit in KiB. */
  tacticSharedMemoryKiB?: number;
  /** Plans that newer TensorRT versions can run (lean runtime embedded unless excludeLeanRuntime). */
  versionCompatible?: boolean;
  excludeLeanRuntime?: boolean;
  hardwareCompatibility?: HardwareCompatibility;
  maxAuxStreams?: number;
  tf32?: boolean;
  sparseWeights?: boolean;
  /** Builder threads (IBuilder::setMaxThreads). */
  builderThreads?: number;
  device?: number;
  /** Engine cache folder; false: always build. Default $YQP_TRT_ENGINE_CACHE or ~/.cache/yqp-trt/engines. */
  engineCache?: string | false;
  /** Aborting cancels the build at TensorRT's next progress step (Ctrl-C in the CLI). */
  signal?: AbortSignal;
}

/** Options that always have a value after normalization. */
type DefaultedKey =
  | 'precision'
  | 'int8Calibrator'
  | 'calibrationProfile'
  | 'stronglyTyped'
  | 'versionCompatible'
  | 'excludeLeanRuntime'
  | 'hardwareCompatibility'
  | 'tf32'
  | 'sparseWeights'
  | 'device';

export type NormalizedBuildOptions = Required<Pick<TensorRTBuildOptions, DefaultedKey>> &
  Omit<TensorRTBuildOptions, DefaultedKey>;

const KEYS = [
  'precision',
  'int8Calibrator',
  'calibrationBatches',
  'calibrationProfile',
  'calibrationCache',
  'stronglyTyped',
  'timingCache',
  'optimizationLevel',
  'builderOptimizationLevel',
  'workspaceMiB',
  'tacticSharedMemoryKiB',
  'versionCompatible',
  'excludeLeanRuntime',
  'hardwareCompatibility',
  'maxAuxStreams',
  'tf32',
  'sparseWeights',
  'builderThreads',
  'device',
  'engineCache',
  'signal',
] as const;

function optBool(name: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw invalidParameter(`tensorrt.${name}`, 'boolean', v);
  return v;
}

function optInt(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalidParameter(`tensorrt.${name}`, `integer between ${min} and ${max}`, v);
  return v;
}

function optPositive(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw invalidParameter(`tensorrt.${name}`, 'positive number', v);
  return v;
}

function optPath(name: string, v: unknown, allowFalse: boolean): string | false | undefined {
  if (v === undefined) return undefined;
  if (allowFalse && v === false) return false;
  if (typeof v !== 'string' || v.length === 0)
    throw invalidParameter(`tensorrt.${name}`, allowFalse ? 'non-empty path or false' : 'non-empty path', v);
  return v;
}

/**
 * Checks every builder option before anything native runs, so a typo is a one-line error naming the option.
 * `major` is the TensorRT major version the addon was compiled against (options only one version has fail here).
 */
export function validateBuildOptions(raw: Record<string, unknown>, major?: number): NormalizedBuildOptions {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw invalidParameter('tensorrt options', 'object', raw);
  for (const key of Object.keys(raw)) {
    if (!(KEYS as readonly string[]).includes(key) && raw[key] !== undefined)
      throw invalidParameter('tensorrt option name', `one of ${KEYS.join(', ')}`, key);
  }
  const precision = expectOneOf('tensorrt.precision', raw.precision ?? 'fp32', [
    'fp32',
    'fp16',
    'bf16',
    'int8',
  ] as const);
  const int8Calibrator = optBool('int8Calibrator', raw.int8Calibrator, false);
  if (int8Calibrator) {
    if (precision !== 'int8')
      throw invalidParameter('tensorrt.int8Calibrator', 'precision int8 with the calibrator', precision);
    if (major !== undefined && major >= 11)
      throw new YqpError(
        'E_ARGUMENT',
        `Expected TensorRT 10.x for tensorrt.int8Calibrator but received TensorRT ${major}: TensorRT 11 removed implicit INT8 calibration`,
        {
          argument: 'tensorrt.int8Calibrator',
          expected: 'TensorRT 10.x',
          received: `TensorRT ${major}`,
          solutions: ['build INT8 from the Q/DQ model: yqp-trt build --int8 --calib <dir>'],
        },
      );
    if (typeof raw.calibrationBatches !== 'function' && raw.calibrationCache === undefined)
      throw invalidParameter(
        'tensorrt.calibrationBatches',
        'a batch source function (or an existing calibrationCache) with int8Calibrator',
        raw.calibrationBatches,
      );
  }
  if (raw.calibrationBatches !== undefined && typeof raw.calibrationBatches !== 'function')
    throw invalidParameter(
      'tensorrt.calibrationBatches',
      'function returning a Promise of a batch or null',
      raw.calibrationBatches,
    );
  const stronglyTyped = optBool('stronglyTyped', raw.stronglyTyped, major !== undefined && major >= 11);
  if (major !== undefined && major >= 11 && !stronglyTyped)
    throw invalidParameter(
      'tensorrt.stronglyTyped',
      'true (TensorRT 11 builds strongly typed networks only)',
      false,
    );
  if (stronglyTyped && int8Calibrator)
    throw invalidParameter(
      'tensorrt.stronglyTyped',
      'false with int8Calibrator (calibration needs a weakly typed network)',
      true,
    );
  const hardwareCompatibility = expectOneOf(
    'tensorrt.hardwareCompatibility',
    raw.hardwareCompatibility ?? 'none',
    ['none', 'ampere-plus', 'same-compute-capability'] as const,
  );
  if (raw.signal !== undefined && !(raw.signal instanceof AbortSignal))
    throw invalidParameter('tensorrt.signal', 'AbortSignal', raw.signal);
  const out: NormalizedBuildOptions = {
    precision,
    int8Calibrator,
    calibrationProfile: optInt('calibrationProfile', raw.calibrationProfile, 0, 1023) ?? 0,
    stronglyTyped,
    versionCompatible: optBool('versionCompatible', raw.versionCompatible, false),
    excludeLeanRuntime: optBool('excludeLeanRuntime', raw.excludeLeanRuntime, false),
    hardwareCompatibility,
    tf32: optBool('tf32', raw.tf32, true),
    sparseWeights: optBool('sparseWeights', raw.sparseWeights, false),
    device: optInt('device', raw.device, 0, 63) ?? 0,
    calibrationBatches: raw.calibrationBatches as TensorRTBuildOptions['calibrationBatches'],
    calibrationCache: optPath('calibrationCache', raw.calibrationCache, false) as string | undefined,
    timingCache: optPath('timingCache', raw.timingCache, true),
    optimizationLevel:
      optInt('optimizationLevel', raw.optimizationLevel, 0, 5) ??
      optInt('builderOptimizationLevel', raw.builderOptimizationLevel, 0, 5),
    workspaceMiB: optPositive('workspaceMiB', raw.workspaceMiB),
    tacticSharedMemoryKiB: optPositive('tacticSharedMemoryKiB', raw.tacticSharedMemoryKiB),
    maxAuxStreams: optInt('maxAuxStreams', raw.maxAuxStreams, 0, 64),
    builderThreads: optInt('builderThreads', raw.builderThreads, 1, 1024),
    engineCache: optPath('engineCache', raw.engineCache, true),
    signal: raw.signal as AbortSignal | undefined,
  };
  if (out.excludeLeanRuntime && !out.versionCompatible)
    throw invalidParameter('tensorrt.excludeLeanRuntime', 'versionCompatible: true alongside it', true);
  return out;
}

/** The options that change the plan's bytes; the engine cache key and config.json's buildOptions hold exactly these. */
export function planAffectingOptions(o: NormalizedBuildOptions): Record<string, unknown> {
  return {
    precision: o.precision,
    int8Calibrator: o.int8Calibrator,
    ...(o.int8Calibrator ? { calibrationProfile: o.calibrationProfile } : {}),
    stronglyTyped: o.stronglyTyped,
    optimizationLevel: o.optimizationLevel ?? null,
    workspaceMiB: o.workspaceMiB ?? null,
    tacticSharedMemoryKiB: o.tacticSharedMemoryKiB ?? null,
    versionCompatible: o.versionCompatible,
    excludeLeanRuntime: o.excludeLeanRuntime,
    hardwareCompatibility: o.hardwareCompatibility,
    maxAuxStreams: o.maxAuxStreams ?? null,
    tf32: o.tf32,
    sparseWeights: o.sparseWeights,
  };
}

export function validateMemoryStrategy(v: unknown): MemoryStrategy {
  return expectOneOf('tensorrt.memoryStrategy', v ?? 'static', [
    'static',
    'on-profile-change',
    'user-managed',
  ] as const);
}
