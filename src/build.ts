import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { YqpError, expectOneOf, expectPositiveInteger, invalidParameter } from './errors.js';
import {
  backendAvailability,
  backendEntries,
  backendEntry,
  backendNames,
  embeddedBackend,
  resolveBackend,
  type BackendName,
} from './backends/index.js';
import { cudaFp32Form, describeCudaForm } from './cuda-form.js';
import { makeBatchDynamic, type DynamicBatchReport } from './onnx/dynamic-batch.js';
import { convertToFp16, describeFp16, type Fp16Report } from './onnx/fp16.js';
import { describeModel, encodeOnnx, loadOnnx, onnx, type OnnxModel } from './onnx/model.js';
import { detectPreset, presetFor, presetNames } from './presets.js';
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
  /** auto: recognize known models (presetNames(): BlazeFace); none: no pre/postprocessing. */
  preset?: string;
  preprocessing?: PreprocessingSpec;
  postprocessing?: PostprocessingSpec;
  dynamicBatching?: DynamicBatchingConfig;
  precision?: 'fp32' | 'fp16' | 'bf16' | 'int8';
  /**
   * Where the entry runs: 'cpu', 'cuda' or 'cuda:N', written to config.json `device`. precision fp16 on the
   * onnxruntime backend needs a CUDA device: FP16 runs on onnxruntime's CUDA execution provider.
   */
  device?: string;
  /** INT8 calibration options (precision int8). */
  calibration?: {
    dir: string;
    count?: number;
    seed?: number;
    /** auto (default): a method per tensor class; or one method for every tensor. */
    method?: 'auto' | 'entropy' | 'percentile' | 'max';
    /** Per-tensor method overrides by tensor name. */
    tensorMethods?: Record<string, 'entropy' | 'percentile' | 'max'>;
    percentile?: number;
    batch?: number;
    recalibrate?: boolean;
    /** Folder of held-out frames (default: every third frame or folder of dir is held out). */
    validate?: string;
    /** Measure each tensor's sensitivity even when the target holds. */
    sensitivity?: boolean;
    /** At most this many tensors left unquantized by the fallback (default: a quarter; 0 disables it). */
    maxFallback?: number;
    /** Write the model even when it misses the accuracy target (otherwise the build fails, E_ACCURACY). */
    allowAccuracyLoss?: boolean;
  };
  /**
   * TensorRT builder options, passed through to the TensorRT backend. Any backend's build options live under its
   * name (BuildOptions[<backend>]): the build step of the chosen backend gets them.
   */
  tensorrt?: Record<string, unknown>;
  onProgress?: (event: BuildProgress) => void;
}

export interface BuildProgress {
  stage: 'read' | 'dynamic-batch' | 'verify' | 'calibrate' | 'fp16' | 'cuda-form' | 'engine' | 'write';
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
 * on the embedded backend (onnxruntime).
 */
export async function verifyDynamicBatch(
  modelPath: string,
  model: OnnxModel,
  profile: OptimizationProfile,
  batch: number,
): Promise<number> {
  const config = { inputs: model.inputs, outputs: model.outputs } as ModelConfig;
  const backend = await embeddedBackend().load();
  const session = await backend.open(modelPath, config, { contexts: 1 });
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

/** 'cpu', 'cuda' or 'cuda:N', as config.json's `device` (schemas/config.schema.json) takes it. */
export function expectDevice(name: string, value: unknown): string {
  if (typeof value !== 'string' || !/^(cpu|cuda(:[0-9]{1,3})?)$/.test(value))
    throw invalidParameter(name, "'cpu', 'cuda' or 'cuda:N'", value);
  return value;
}

/** FP16 is for onnxruntime's CUDA provider: on its CPU provider it would be slower than FP32, or not run. */
function checkFp16Device(device: string | undefined): void {
  if (device?.startsWith('cuda')) return;
  throw new YqpError(
    'E_ARGUMENT',
    `--fp16 needs --device cuda: FP16 runs on onnxruntime's CUDA execution provider; pass --device cuda (or cuda:N). ` +
      `On the CPU provider (device ${device ?? 'cpu, the default'}) an FP16 model would run slower than FP32 or not at all`,
    {
      argument: '--fp16',
      expected: '--device cuda or cuda:N',
      received: device ?? 'no --device (cpu)',
      solutions: [
        'yqp-trt build <model.onnx> --name <name> --fp16 --device cuda',
        'or build FP32 (drop --fp16) for the CPU',
      ],
    },
  );
}

/**
 * The FP16 model (inputs and outputs stay float32 behind Casts, so config.json's tensors do not change), checked
 * to load in onnxruntime: a type error in the conversion fails here, not at serve time on the GPU. The CPU
 * provider runs float16 nodes it has no kernel for through inserted casts, so loading it here proves the graph.
 */
async function fp16Model(
  model: OnnxModel,
  path: string,
  config: ModelConfig,
): Promise<{ bytes: Uint8Array; report: Fp16Report }> {
  const proto = onnx.ModelProto.decode(model.bytes); // a copy: the FP32 proto stays as it was
  const report = convertToFp16(proto);
  const bytes = encodeOnnx(proto);
  await writeFile(path, bytes);
  try {
    const session = await (await embeddedBackend().load()).open(path, config, { contexts: 1 });
    await session.close();
  } catch (e) {
    throw new YqpError(
      'E_MODEL_FILE',
      `The FP16 model does not load in onnxruntime: ${(e as Error).message}`,
      {
        argument: '--fp16',
        cause: e,
      },
    );
  }
  return { bytes, report };
}

function fp16Metadata(r: Fp16Report): Record<string, unknown> {
  return {
    initializers: r.initializers,
    constants: r.constants,
    io: r.io,
    castsInserted: r.castsInserted,
    keptFloat32: r.keptFloat32.map((k) => `${k.op}[${k.input}] ${k.tensor}`),
    clamped: r.clamped,
    flushedToZero: r.flushedToZero,
  };
}

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
  const backendChoice = expectOneOf('backend', options.backend ?? 'auto', ['auto', ...backendNames()]);
  const presetName = expectOneOf('preset', options.preset ?? 'auto', ['auto', ...presetNames(), 'none']);
  const precision = expectOneOf('precision', options.precision ?? 'fp32', [
    'fp32',
    'fp16',
    'bf16',
    'int8',
  ] as const);
  if (options.device !== undefined) expectDevice('device', options.device);
  // A backend with a build step takes FP16 as a build precision (TensorRT engines); one without runs the converted
  // FP16 model, which the embedded backend does on CUDA only. Under auto the device is checked before resolving.
  if (precision === 'fp16' && (backendChoice === 'auto' || !backendEntry(backendChoice).build))
    checkFp16Device(options.device);
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
  const batchIsDynamic = io.inputs.every((i) => i.dims[0] === -1);
  const maxBatchSize = batchIsDynamic ? maxBatchOf(profiles) : (io.inputs[0]?.dims[0] ?? 0);

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

    const backend = backendEntry(await resolveBackend(backendChoice));
    if (backendChoice === 'auto' && backend.embedded) {
      // Say why auto did not pick a GPU backend, in one line (the reason's first line: dlopen errors run long).
      for (const e of backendEntries().filter((x) => !x.embedded)) {
        const why = (await backendAvailability(e.name)).reason?.split('\n')[0] ?? 'unavailable';
        notes.push(`backend auto: ${backend.name}, since ${e.displayName} is unavailable (${why})`);
      }
    }
    const config: ModelConfig = {
      name: options.name,
      backend: backend.name,
      modelFile: backend.modelFile,
      precision,
      maxBatchSize,
      inputs: io.inputs,
      outputs: io.outputs,
      profiles,
      instances: options.instances ?? 2,
      ...(options.device !== undefined ? { device: options.device } : {}),
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
      // onnxruntime runs the form its CPU provider fuses into integer kernels; TensorRT reads model.onnx.
      if (!backend.build && result.onnxruntimeModelFile) config.modelFile = result.onnxruntimeModelFile;
      config.metadata = { ...config.metadata, calibration: result.metadata };
      notes.push(...result.notes);
    }
    if (backend.build) {
      const built = await backend.build({
        onnxPath: onnxForEngine,
        config,
        options: ((options as unknown as Record<string, unknown>)[backend.name] ?? {}) as Record<
          string,
          unknown
        >,
        progress: (message: string, fraction?: number) => progress({ stage: 'engine', message, fraction }),
      });
      files[backend.modelFile] = built.model;
      config.metadata = { ...config.metadata, ...built.metadata };
      notes.push(...(built.notes ?? []));
    } else if (precision === 'fp16') {
      progress({ stage: 'fp16', message: 'converting the model to FP16' });
      const { bytes, report: fp16 } = await fp16Model(model, join(work, 'model-fp16.onnx'), config);
      files[backend.modelFile] = bytes;
      config.metadata = { ...config.metadata, fp16: fp16Metadata(fp16) };
      notes.push(describeFp16(fp16));
    } else if (onnxForEngine === fp32Path && precision === 'fp32' && options.device?.startsWith('cuda')) {
      progress({ stage: 'cuda-form', message: 'fusing residual blocks for the CUDA provider' });
      // Two images where the batch is dynamic, the model's own batch where it is fixed.
      const batch = Math.max(1, batchIsDynamic ? Math.min(2, maxBatchSize) : maxBatchSize);
      const feeds = syntheticFeeds(model, profiles[0], batch, 777);
      const form = await cudaFp32Form(model, fp32Path, config, feeds);
      files[backend.modelFile] = form.bytes;
      if (form.fused > 0)
        config.metadata = {
          ...config.metadata,
          cudaForm: { fusedConvAddRelu: form.fused, maxAbsDiff: form.maxAbsDiff },
        };
      notes.push(describeCudaForm(form));
    } else if (onnxForEngine === fp32Path) {
      files[backend.modelFile] = model.bytes;
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
