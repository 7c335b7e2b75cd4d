import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { YqpError, expectOneOf, expectPositiveInteger, invalidParameter } from './errors.js';
import { backendAvailability, resolveBackend, type BackendName } from './backends/index.js';
import { onnxruntimeBackend } from './backends/onnxruntime.js';
import { makeBatchDynamic, type DynamicBatchReport } from './onnx/dynamic-batch.js';
import { describeModel, encodeOnnx, loadOnnx, type OnnxModel } from './onnx/model.js';
import { detectPreset, presetFor } from './presets.js';
import { checkProfiles, maxBatchOf, staticProfile } from './profiles.js';
import type {
  DynamicBatchingConfig,
  ModelConfig,
  OptimizationProfile,
  PostprocessingSpec,
  PreprocessingSpec,
} from './repository/config.js';
import { entryPath, listVersions, writeEntry, type RepositoryEntry } from './repository/repository.js';
import { DTYPE_ARRAY, elementCount, type TensorMap } from './tensor.js';

export interface BuildOptions {
  name: string;
  repo: string;
  profiles?: OptimizationProfile[];
  dynamicBatch?: boolean;
  backend?: 'auto' | BackendName;
  instances?: number;
  /** Version folder to write; default: one above the highest there (1 for a new entry). */
  version?: number;
  /** Overwrite an existing version folder named by `version` (without it, that is refused). */
  force?: boolean;
  /** auto: recognize known models (BlazeFace); none: no pre/postprocessing. */
  preset?: 'auto' | 'blazeface' | 'none';
  preprocessing?: PreprocessingSpec;
  postprocessing?: PostprocessingSpec;
  dynamicBatching?: DynamicBatchingConfig;
  precision?: 'fp32' | 'fp16' | 'bf16' | 'int8';
  /** INT8 calibration options (precision int8). */
  calibration?: {
    dir: string;
    count?: number;
    seed?: number;
    method?: 'entropy' | 'percentile' | 'max';
    percentile?: number;
    batch?: number;
    recalibrate?: boolean;
  };
  /** TensorRT builder options, passed through to the TensorRT backend. */
  tensorrt?: Record<string, unknown>;
  onProgress?: (event: BuildProgress) => void;
}

export interface BuildProgress {
  stage: 'read' | 'dynamic-batch' | 'verify' | 'calibrate' | 'engine' | 'write';
  message: string;
  fraction?: number;
}

export interface BuildResult {
  entry: RepositoryEntry;
  dynamicBatch?: DynamicBatchReport & { verifiedBatch: number; maxAbsDiff: number };
  notes: string[];
}

/** Deterministic inputs for the dynamic-batch proof (values in [-1, 1] for floats). */
function syntheticFeeds(
  model: OnnxModel,
  profile: OptimizationProfile,
  batch: number,
  seed: number,
): TensorMap {
  let state = seed >>> 0 || 1;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 0x100000000;
  };
  const feeds: TensorMap = {};
  for (const spec of model.inputs) {
    const dims = [batch, ...(profile[spec.name]?.opt ?? spec.dims).slice(1)];
    const data = new DTYPE_ARRAY[spec.dtype](elementCount(dims));
    if (data instanceof Float32Array || data instanceof Float64Array)
      for (let i = 0; i < data.length; i++) data[i] = next() * 2 - 1;
    feeds[spec.name] = { dtype: spec.dtype, dims, data };
  }
  return feeds;
}

/**
 * Proves a dynamic-batch rewrite: one run at batch N equals N runs at batch 1 (max abs diff <= 1e-5),
 * on the embedded onnxruntime backend.
 */
export async function verifyDynamicBatch(
  modelPath: string,
  model: OnnxModel,
  profile: OptimizationProfile,
  batch: number,
): Promise<number> {
  const config = { inputs: model.inputs, outputs: model.outputs } as ModelConfig;
  const session = await onnxruntimeBackend.open(modelPath, config, { contexts: 1 });
  try {
    const feeds = syntheticFeeds(model, profile, batch, 12345);
    const whole = await session.run(0, feeds);
    let maxAbsDiff = 0;
    for (let b = 0; b < batch; b++) {
      const single: TensorMap = {};
      for (const [name, t] of Object.entries(feeds)) {
        const per = t.data.length / batch;
        single[name] = {
          dtype: t.dtype,
          dims: [1, ...t.dims.slice(1)],
          data: t.data.slice(b * per, (b + 1) * per),
        };
      }
      const one = await session.run(0, single);
      for (const [name, t] of Object.entries(one)) {
        const big = whole[name].data as Float32Array;
        const small = t.data as Float32Array;
        if (big.length !== small.length * batch)
          throw new YqpError(
            'E_MODEL_FILE',
            `Dynamic batch rewrite: output ${name} has ${big.length} values at batch ${batch}, ${small.length} at batch 1`,
          );
        for (let i = 0; i < small.length; i++)
          maxAbsDiff = Math.max(maxAbsDiff, Math.abs(Number(big[b * small.length + i]) - Number(small[i])));
      }
    }
    return maxAbsDiff;
  } finally {
    await session.close();
  }
}

export const DYNAMIC_BATCH_TOLERANCE = 1e-5;

/** Builds a repository entry from an ONNX model: checks profiles, optional dynamic batch, calibration, engine. */
export async function build(onnxPath: string, options: BuildOptions): Promise<BuildResult> {
  if (typeof onnxPath !== 'string' || !onnxPath)
    throw invalidParameter('model', 'a path to an .onnx file', onnxPath);
  const entryDir = entryPath(options.repo, options.name); // validates the name before any work
  if (options.instances !== undefined) expectPositiveInteger('instances', options.instances);
  if (options.version !== undefined) expectPositiveInteger('version', options.version);
  // An existing entry gets a new version (Triton's way: the old one stays, serve and infer load the highest);
  // an existing version is overwritten only when asked, checked before any work.
  const existingVersions = listVersions(entryDir);
  const version =
    options.version ?? (existingVersions.length > 0 ? existingVersions[existingVersions.length - 1] + 1 : 1);
  if (options.version !== undefined && existingVersions.includes(version) && !options.force)
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a new version for --model-version but ${join(entryDir, String(version))} exists: pass --force to overwrite it, or leave --model-version out to write version ${existingVersions[existingVersions.length - 1] + 1}`,
      { argument: '--model-version', expected: 'a version not in the entry', received: String(version) },
    );
  const backendChoice = expectOneOf('backend', options.backend ?? 'auto', [
    'auto',
    'onnxruntime',
    'tensorrt',
  ] as const);
  const precision = expectOneOf('precision', options.precision ?? 'fp32', [
    'fp32',
    'fp16',
    'bf16',
    'int8',
  ] as const);
  const progress = options.onProgress ?? (() => {});
  const notes: string[] = [];

  progress({ stage: 'read', message: `reading ${onnxPath}` });
  let model = await loadOnnx(onnxPath);
  const sourceSha256 = model.sha256;
  let report: DynamicBatchReport | undefined;
  if (options.dynamicBatch) {
    progress({ stage: 'dynamic-batch', message: 'making the batch dimension dynamic' });
    report = makeBatchDynamic(model.proto);
    const bytes = encodeOnnx(model.proto);
    model = describeModel(onnxPath, model.proto, bytes);
    notes.push(
      `dynamic batch: ${report.tensors.length} I/O tensors, ${report.reshapes.length} Reshape targets, ${report.constantOfShapes.length} ConstantOfShape shapes rewritten`,
    );
  }
  // describeModel already read the (possibly rewritten) graph's inputs and outputs.
  const io = { inputs: model.inputs, outputs: model.outputs };
  let profiles = options.profiles ?? [];
  if (profiles.length === 0) {
    const fixed = staticProfile(io.inputs);
    if (!fixed) {
      const dynamic = io.inputs
        .filter((i) => i.dims.includes(-1))
        .map((i) => `${i.name} [${i.dims.join(',')}]`);
      throw new YqpError(
        'E_PROFILE',
        `The model has dynamic inputs (${dynamic.join(', ')}): give --profile '<input>=<min>,<opt>,<max>'`,
        {
          argument: '--profile',
          expected: 'a range for every dynamic input',
        },
      );
    }
    profiles = [fixed];
  }
  checkProfiles(profiles, io.inputs);
  const maxBatchSize = io.inputs.every((i) => i.dims[0] === -1)
    ? maxBatchOf(profiles)
    : (io.inputs[0]?.dims[0] ?? 0);

  const work = await mkdtemp(join(tmpdir(), 'yqp-build-'));
  try {
    const fp32Path = join(work, 'model.onnx');
    await writeFile(fp32Path, model.bytes);
    let verified: BuildResult['dynamicBatch'];
    if (report) {
      const batch = Math.min(16, maxBatchSize);
      progress({ stage: 'verify', message: `checking batch ${batch} against ${batch} single runs` });
      const diff = await verifyDynamicBatch(fp32Path, model, profiles[0], batch);
      if (!(diff <= DYNAMIC_BATCH_TOLERANCE))
        throw new YqpError(
          'E_MODEL_FILE',
          `Dynamic batch rewrite changed results: batch ${batch} differs from ${batch} single runs by ${diff}`,
          {
            argument: '--dynamic-batch',
            expected: `max abs diff <= ${DYNAMIC_BATCH_TOLERANCE}`,
            received: String(diff),
          },
        );
      verified = { ...report, verifiedBatch: batch, maxAbsDiff: diff };
      notes.push(`dynamic batch verified: batch ${batch} equals ${batch} single runs (max abs diff ${diff})`);
    }

    let preprocessing = options.preprocessing;
    let postprocessing = options.postprocessing;
    const presetName = options.preset ?? 'auto';
    const preset =
      presetName === 'auto'
        ? detectPreset(io.inputs, io.outputs)
        : presetName === 'none'
          ? undefined
          : presetName;
    if (preset) {
      const p = presetFor(preset, io.inputs, io.outputs);
      preprocessing ??= p.preprocessing;
      postprocessing ??= p.postprocessing;
      notes.push(`preset ${preset}: preprocessing and postprocessing set`);
    }

    const backend = await resolveBackend(backendChoice);
    if (backendChoice === 'auto' && backend !== 'tensorrt') {
      // Say why auto did not pick TensorRT, in one line (the reason's first line: dlopen errors run long).
      const why = (await backendAvailability('tensorrt')).reason?.split('\n')[0] ?? 'unavailable';
      notes.push(`backend auto: ${backend}, since TensorRT is unavailable (${why})`);
    }
    const config: ModelConfig = {
      name: options.name,
      backend,
      modelFile: backend === 'tensorrt' ? 'model.plan' : 'model.onnx',
      precision,
      maxBatchSize,
      inputs: io.inputs,
      outputs: io.outputs,
      profiles,
      instances: options.instances ?? 2,
      ...(options.dynamicBatching ? { dynamicBatching: options.dynamicBatching } : {}),
      scheduler: { maxQueueSize: 1024 },
      ...(preprocessing ? { preprocessing } : {}),
      ...(postprocessing ? { postprocessing } : {}),
      metadata: {
        sourceModel: onnxPath,
        sourceSha256,
        createdBy: 'yqp-trt build',
        createdAt: new Date().toISOString(),
        opset: model.opset,
        ...(verified ? { dynamicBatch: verified } : {}),
      },
    };

    const versionDir = join(entryDir, String(version));
    const files: Record<string, Uint8Array> = {};
    let onnxForEngine = fp32Path;
    if (precision === 'int8') {
      if (!options.calibration)
        throw new YqpError('E_ARGUMENT', 'Expected --calib <dir> with --int8 but received nothing', {
          argument: '--calib',
          expected: 'a folder of calibration images',
        });
      progress({ stage: 'calibrate', message: `calibrating from ${options.calibration.dir}` });
      const { buildInt8 } = await import('./calibration/build-int8.js');
      const result = await buildInt8({
        modelPath: fp32Path,
        model,
        config,
        versionDir,
        options: options.calibration,
        onProgress: (message: string, fraction?: number) =>
          progress({ stage: 'calibrate', message, fraction }),
      });
      onnxForEngine = result.modelPath;
      config.metadata = { ...config.metadata, calibration: result.metadata };
      notes.push(...result.notes);
    }
    if (backend === 'tensorrt') {
      progress({ stage: 'engine', message: 'building the TensorRT engine' });
      const { buildEngine } = await import('./tensorrt/index.js');
      const engine = await buildEngine(
        onnxForEngine,
        config,
        { precision, ...(options.tensorrt ?? {}) },
        (message: string, fraction?: number) => progress({ stage: 'engine', message, fraction }),
      );
      files['model.plan'] = engine.plan;
      config.metadata = { ...config.metadata, tensorrt: engine.metadata };
      notes.push(...(engine.notes ?? []));
    } else if (onnxForEngine === fp32Path) {
      files['model.onnx'] = model.bytes;
    }
    progress({ stage: 'write', message: `writing ${versionDir}` });
    const entry = await writeEntry(options.repo, config, files, version);
    if (existingVersions.length > 0 && !existingVersions.includes(version))
      notes.push(
        `${entryDir} had version ${existingVersions.join(', ')}: wrote version ${version} (infer and serve load the highest; --model-version N --force overwrites one)`,
      );
    else if (existingVersions.includes(version)) notes.push(`overwrote ${versionDir} (--force)`);
    return { entry, dynamicBatch: verified, notes };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
