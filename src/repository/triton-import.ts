/**
 * A Triton model folder (config.pbtxt, or no config at all: Triton's auto-complete) as a repository entry.
 * What maps is mapped, what has no counterpart here is named in a warning, and what would make the model answer
 * differently than Triton does (sequence batching, ensembles, reshapes, ...) refuses the load with the reason.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  backendEntries,
  backendForModelFile,
  backendForTritonBackend,
  backendForTritonPlatform,
  type BackendEntry,
} from '../backends/index.js';
import { YqpError } from '../errors.js';
import type { DType } from '../tensor.js';
import type { ModelConfig, OptimizationProfile, TensorSpec } from './config.js';
import type { TritonModelConfig, TritonTensor } from './triton-config.js';

export const TRITON_TO_DTYPE: Record<string, DType> = {
  TYPE_BOOL: 'bool',
  TYPE_UINT8: 'uint8',
  TYPE_INT8: 'int8',
  TYPE_INT16: 'int16',
  TYPE_INT32: 'int32',
  TYPE_INT64: 'int64',
  TYPE_FP16: 'float16',
  TYPE_FP32: 'float32',
  TYPE_FP64: 'float64',
};
export const DTYPE_TO_TRITON = Object.fromEntries(
  Object.entries(TRITON_TO_DTYPE).map(([k, v]) => [v, k]),
) as Record<DType, string>;

/** Triton's --backend-config=default-max-batch-size: what auto-complete gives a batchable model. */
const DEFAULT_MAX_BATCH_SIZE = 4;
/** The upper end of a dimension Triton leaves open (-1). */
const OPEN_DIM = 2 ** 31 - 1;

export interface TritonEntry {
  config: ModelConfig;
  /** The configuration as Triton would report it: auto-completed fields filled in. */
  triton: TritonModelConfig;
  warnings: string[];
  version: number;
  /** GPU of the first GPU instance group (a backend whose Triton instances run on a GPU only). */
  device?: number;
}

class Findings {
  readonly warnings: string[] = [];
  constructor(readonly where: string) {}
  warn(field: string, why: string): void {
    this.warnings.push(`config.pbtxt: ${field}: ${why}`);
  }
  refuse(field: string, why: string, expected?: string): never {
    throw new YqpError('E_CONFIG', `Invalid ${this.where}: ${field}: ${why}`, { argument: field, expected });
  }
}

/** Default-valued fields are as good as absent (proto3): only set, non-default ones are reported. */
function isSet(v: unknown): boolean {
  if (v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object' && v !== null) return true;
  return !(typeof v === 'string' && /^(FORMAT_NONE|KIND_AUTO|PRIORITY_DEFAULT|REJECT)$/.test(v));
}

/** Warns about every set field of `obj` outside `handled`. */
function warnOthers(
  f: Findings,
  obj: object | undefined,
  handled: string[],
  path: string,
  why: string,
): void {
  for (const [k, v] of Object.entries(obj ?? {}))
    if (!handled.includes(k) && isSet(v)) f.warn(path ? `${path}.${k}` : k, why);
}

const NOT_SUPPORTED = 'not supported here (ignored)';

/** The version the policy serves: the highest it allows, or `requested` when the policy allows it. */
export function chooseTritonVersion(
  triton: TritonModelConfig,
  versions: number[],
  requested: number | undefined,
  where: string,
  warnings: string[] = [],
): number {
  const f = new Findings(where);
  const policy = triton.version_policy ?? {};
  let allowed: number[];
  if (policy.specific) {
    const listed = policy.specific.versions ?? [];
    for (const v of listed)
      if (!versions.includes(v))
        f.refuse(
          'version_policy.specific',
          `version ${v} has no folder (found ${versions.join(', ') || 'none'})`,
        );
    allowed = listed.length ? [...listed].sort((a, b) => a - b) : versions;
  } else if (policy.all) allowed = versions;
  else {
    const n = Math.max(1, policy.latest?.num_versions ?? 1);
    allowed = versions.slice(-n);
  }
  if (allowed.length === 0)
    throw new YqpError('E_NOT_FOUND', `Repository entry ${where} has no version folder (1/, 2/, ...)`, {
      argument: 'model',
    });
  if (allowed.length > 1)
    warnings.push(
      `config.pbtxt: version_policy: allows versions ${allowed.join(', ')}; one version is served at a time here (${requested ?? allowed.at(-1)})`,
    );
  if (requested === undefined) return allowed.at(-1)!;
  if (!allowed.includes(requested))
    throw new YqpError(
      'E_NOT_FOUND',
      `Repository entry ${where} version ${requested} is not allowed by its version_policy (allowed: ${allowed.join(', ')})`,
      { argument: 'version', expected: allowed.join(', '), received: String(requested) },
    );
  return requested;
}

/** The backend a Triton configuration names (platform, backend), or its model file names when it names none. */
function backendOf(f: Findings, triton: TritonModelConfig, versionDir: string): BackendEntry {
  const byPlatform = triton.platform ? backendForTritonPlatform(triton.platform) : undefined;
  const byBackend = triton.backend ? backendForTritonBackend(triton.backend) : undefined;
  const entries = backendEntries();
  const platforms = entries.map((b) => b.platform);
  const backends = entries.map((b) => b.triton.backend);
  if (triton.platform && !byPlatform)
    f.refuse('platform', `${JSON.stringify(triton.platform)} is not served here`, platforms.join(', '));
  if (triton.backend && !byBackend)
    f.refuse('backend', `${JSON.stringify(triton.backend)} is not served here`, backends.join(', '));
  if (byPlatform && byBackend && byPlatform !== byBackend)
    f.refuse('backend', `${triton.backend} does not run platform ${triton.platform}`);
  const chosen = byPlatform ?? byBackend;
  if (chosen) return chosen;
  // Neither given: Triton's auto-complete goes by the model file.
  const file = triton.default_model_filename;
  const byFile = file
    ? backendForModelFile(file)
    : entries.find((b) => existsSync(join(versionDir, b.modelFile)));
  if (byFile) return byFile;
  return f.refuse(
    'platform',
    `neither platform nor backend is set, and ${file ? `default_model_filename ${JSON.stringify(file)}` : `the version folder holds neither ${entries.map((b) => b.modelFile).join(' nor ')}`} names no backend`,
    platforms.join(', '),
  );
}

/** What to build for the GPU, as a hint ("build a TensorRT engine for the GPU"), where a GPU backend builds one. */
function gpuBuildHint(): string | undefined {
  const gpu = backendEntries().find((b) => b.triton.instanceKind === 'gpu' && b.builtModel);
  return gpu && `build ${gpu.builtModel} for the GPU`;
}

const show = (d: readonly number[]) => `[${d.join(',')}]`;

/** One config tensor against the model's (when the model file says): name, datatype, dims; batch dim added. */
function tensorSpec(
  f: Findings,
  t: TritonTensor,
  kind: 'input' | 'output',
  i: number,
  model: TensorSpec[] | undefined,
  maxBatch: number,
  modelName: string,
): TensorSpec {
  const path = `${kind}[${i}]`;
  if (!t.name) f.refuse(`${path}.name`, 'a tensor needs a name');
  const name = t.name!;
  const m = model?.find((x) => x.name === name);
  if (model && !m)
    f.refuse(
      `${path}.name`,
      `unexpected inference ${kind} '${name}', allowed ${kind}s are: ${model.map((x) => x.name).join(', ')}`,
    );
  for (const field of ['reshape', 'is_shape_tensor', 'allow_ragged_batch'])
    if (isSet(t[field])) f.refuse(`${path}.${field}`, `${field} is not supported here`);
  if (t.optional) f.warn(`${path}.optional`, 'every input is required here');
  if (t.label_filename)
    f.warn(`${path}.label_filename`, 'the classification extension is not supported (ignored)');
  warnOthers(
    f,
    t,
    [
      'name',
      'data_type',
      'format',
      'dims',
      'reshape',
      'is_shape_tensor',
      'allow_ragged_batch',
      'optional',
      'label_filename',
    ],
    path,
    NOT_SUPPORTED,
  );
  let dtype: DType;
  if (!t.data_type || t.data_type === 'TYPE_INVALID') {
    if (!m) f.refuse(`${path}.data_type`, `${kind} '${name}' has no data_type`);
    dtype = m!.dtype;
  } else {
    const d = TRITON_TO_DTYPE[t.data_type];
    if (!d)
      f.refuse(
        `${path}.data_type`,
        `${t.data_type} is not supported here`,
        Object.keys(TRITON_TO_DTYPE).join(', '),
      );
    if (m && m.dtype !== d)
      f.refuse(
        `${path}.data_type`,
        `unexpected datatype ${t.data_type} for inference ${kind} '${name}', expecting ${DTYPE_TO_TRITON[m.dtype]}`,
      );
    dtype = d;
  }
  let dims: number[];
  if (t.dims === undefined) {
    if (!m) f.refuse(`${path}.dims`, `${kind} '${name}' has no dims`);
    dims = maxBatch > 0 ? m!.dims : m!.dims.slice();
  } else {
    if (t.dims.some((d) => d < -1 || d === 0))
      f.refuse(`${path}.dims`, `dims ${show(t.dims)} must be -1 or positive`);
    dims = maxBatch > 0 ? [-1, ...t.dims] : [...t.dims];
  }
  if (m) {
    if (maxBatch > 0 && m.dims[0] !== -1)
      f.refuse(
        `${path}`,
        `model '${modelName}', tensor '${name}': for the model to support batching the shape should have at least 1 dimension and the first dimension must be -1; but shape expected by the model is ${show(m.dims)}`,
      );
    const fits =
      dims.length === m.dims.length &&
      dims.every((d, k) => m.dims[k] === -1 || d === m.dims[k] || (k === 0 && maxBatch > 0));
    if (!fits)
      f.refuse(
        `${path}.dims`,
        `model '${modelName}', tensor '${name}': the model expects ${m.dims.length} dimensions (shape ${show(m.dims)}) but the model configuration specifies ${dims.length} dimensions (${maxBatch > 0 ? 'an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, ' : ''}making complete shape ${show(dims)})`,
      );
    if (t.dims === undefined && maxBatch === 0) dims = m.dims;
  }
  return { name, dtype, dims };
}

/**
 * Maps a parsed config.pbtxt onto a repository entry config. `versionDir` is the served version's folder;
 * ONNX models are read from it to complete and check the inputs and outputs (as Triton's auto-complete does).
 */
export async function fromTriton(
  raw: TritonModelConfig,
  name: string,
  versionDir: string,
  version: number,
  where: string,
  warnings: string[] = [],
): Promise<TritonEntry> {
  const f = new Findings(where);
  f.warnings.push(...warnings);
  if (raw.name && raw.name !== name)
    f.refuse('name', `${JSON.stringify(raw.name)} does not match the folder name ${JSON.stringify(name)}`);
  for (const field of [
    'sequence_batching',
    'ensemble_scheduling',
    'batch_input',
    'batch_output',
    'model_operations',
  ])
    if (isSet(raw[field])) f.refuse(field, `${field} is not supported here`);
  if (raw.model_transaction_policy && (raw.model_transaction_policy as { decoupled?: boolean }).decoupled)
    f.refuse('model_transaction_policy.decoupled', 'decoupled models are not supported here');

  const backend = backendOf(f, raw, versionDir);
  const onGpu = backend.triton.instanceKind === 'gpu';
  const modelFile = raw.default_model_filename || backend.modelFile;
  const modelPath = join(versionDir, modelFile);
  if (!existsSync(modelPath))
    throw new YqpError(
      'E_NOT_FOUND',
      `Repository entry ${where.replace(/\/config\.pbtxt$/, '')} version ${version} lacks ${modelFile}`,
      {
        argument: 'model',
      },
    );
  // The model's own inputs and outputs, where they can be read without a GPU (ONNX).
  const io = backend.modelIo ? await backend.modelIo(modelPath) : undefined;
  const batchable = io ? [...io.inputs, ...io.outputs].every((t) => t.dims[0] === -1) : false;

  let maxBatch: number;
  let autoBatching = false;
  if (raw.max_batch_size !== undefined) {
    if (raw.max_batch_size < 0)
      f.refuse('max_batch_size', `must be 0 or positive, not ${raw.max_batch_size}`);
    maxBatch = raw.max_batch_size;
  } else {
    maxBatch = batchable ? DEFAULT_MAX_BATCH_SIZE : 0;
    // Triton's auto-complete turns the dynamic batcher on for the batch size it chose, unless a scheduler is set.
    autoBatching = maxBatch > 1 && !raw.dynamic_batching;
  }

  const declared = (kind: 'input' | 'output') => raw[kind] ?? [];
  const complete = (kind: 'input' | 'output', model: TensorSpec[] | undefined): TensorSpec[] => {
    const list = declared(kind);
    if (list.length === 0) {
      if (!model)
        f.refuse(
          kind,
          `a ${backend.platform} model must declare its ${kind}s (they are read from ONNX models only)`,
        );
      return model!.map((m) => tensorSpec(f, { name: m.name }, kind, 0, model, maxBatch, name));
    }
    const specs = list.map((t, i) => tensorSpec(f, t, kind, i, model, maxBatch, name));
    if (kind === 'input' && model) {
      const missing = model.filter((m) => !specs.some((s) => s.name === m.name));
      if (missing.length)
        f.refuse(
          'input',
          `the model's input${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m.name}'`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} not in the configuration`,
        );
    }
    return specs;
  };
  const inputs = complete('input', io?.inputs);
  const outputs = complete('output', io?.outputs);

  // Warm-up: model_warmup's batch sizes, and its dims size dimensions the config leaves open.
  const warmups = raw.model_warmup ?? [];
  const warmDims: Record<string, number[]> = {};
  for (const [i, w] of warmups.entries()) {
    for (const [input, spec] of Object.entries(w.inputs ?? {})) {
      const target = inputs.find((s) => s.name === input);
      if (!target) f.refuse(`model_warmup[${i}].inputs`, `names unknown input '${input}'`);
      if (spec.random_data || spec.input_data_file)
        f.warn(`model_warmup[${i}].inputs.${input}`, 'warm-up runs zeros here, not random or file data');
      if (spec.dims) warmDims[input] = spec.dims;
    }
    if ((w.count ?? 0) > 1)
      f.warn(`model_warmup[${i}].count`, 'each batch size is warmed once per instance here');
  }
  const openDims = inputs.some((s) => s.dims.some((d, k) => d === -1 && !(k === 0 && maxBatch > 0)));
  const profile: OptimizationProfile = {};
  let sized = true;
  for (const s of inputs) {
    const extra = warmDims[s.name];
    const inner = (maxBatch > 0 ? s.dims.slice(1) : s.dims).map((d, k) => {
      if (d !== -1) return { min: d, opt: d, max: d };
      const opt = extra?.[k];
      if (opt === undefined || opt < 1) sized = false;
      return { min: 1, opt: opt !== undefined && opt > 0 ? opt : 1, max: OPEN_DIM };
    });
    const lead = maxBatch > 0 ? [{ min: 1, opt: 1, max: maxBatch }] : [];
    const all = [...lead, ...inner];
    profile[s.name] = { min: all.map((d) => d.min), opt: all.map((d) => d.opt), max: all.map((d) => d.max) };
  }
  let warmup: ModelConfig['warmup'];
  if (warmups.length) {
    const sizes = [...new Set(warmups.map((w) => w.batch_size ?? 0).filter((b) => b > 0))];
    if (maxBatch > 0 && sizes.length === 0)
      f.refuse('model_warmup', 'a batching model needs batch_size >= 1');
    for (const [i, b] of sizes.entries())
      if (b > maxBatch && maxBatch > 0)
        f.refuse(`model_warmup[${i}].batch_size`, `${b} is above max_batch_size ${maxBatch}`);
    warmup = maxBatch > 0 ? { batchSizes: sizes } : true;
    if (openDims && !sized) f.refuse('model_warmup', 'inputs with -1 dims need their dims in every warm-up');
  } else if (openDims) warmup = false; // no size to warm an open dimension with

  // Dynamic batching and its queue policy.
  let dynamicBatching: ModelConfig['dynamicBatching'];
  let scheduler: ModelConfig['scheduler'];
  const db = raw.dynamic_batching;
  if (db || autoBatching) {
    if (maxBatch === 0) f.warn('dynamic_batching', 'max_batch_size is 0, so requests are not batched');
    const preferred = db?.preferred_batch_size ?? [];
    for (const p of preferred)
      if (p < 1 || p > maxBatch)
        f.refuse('dynamic_batching.preferred_batch_size', `${p} is outside 1..max_batch_size (${maxBatch})`);
    dynamicBatching = {
      ...(preferred.length ? { preferredBatchSizes: preferred } : {}),
      maxQueueDelayMicroseconds: db?.max_queue_delay_microseconds ?? 0,
    };
    const q = db?.default_queue_policy;
    if (q) {
      if (q.timeout_action === 'DELAY')
        f.warn(
          'dynamic_batching.default_queue_policy.timeout_action',
          'timed-out requests are rejected here, not delayed',
        );
      if ((q.max_queue_size ?? 0) > 0 || (q.default_timeout_microseconds ?? 0) > 0)
        scheduler = {
          maxQueueSize: (q.max_queue_size ?? 0) > 0 ? q.max_queue_size! : 1024,
          ...(q.default_timeout_microseconds
            ? { queueTimeoutMs: Math.ceil(q.default_timeout_microseconds / 1000) }
            : {}),
        };
      warnOthers(
        f,
        q,
        ['timeout_action', 'default_timeout_microseconds', 'allow_timeout_override', 'max_queue_size'],
        'dynamic_batching.default_queue_policy',
        NOT_SUPPORTED,
      );
    }
    warnOthers(
      f,
      db,
      ['preferred_batch_size', 'max_queue_delay_microseconds', 'default_queue_policy'],
      'dynamic_batching',
      NOT_SUPPORTED,
    );
  }

  // Instances: the groups' counts on one device.
  let instances = 0;
  let device: number | undefined;
  const groups = raw.instance_group ?? [];
  // A backend that runs anywhere goes on the GPU when a group asks for it (every group then: one device a model).
  const toGpu = backend.triton.instanceKind === 'any' && groups.some((g) => g.kind === 'KIND_GPU');
  for (const [i, g] of groups.entries()) {
    const path = `instance_group[${i}]`;
    const kind = g.kind ?? 'KIND_AUTO';
    if (kind === 'KIND_CPU' && onGpu)
      f.refuse(`${path}.kind`, `a ${backend.platform} model runs on a GPU, not KIND_CPU`);
    if (kind === 'KIND_CPU' && toGpu)
      f.warn(`${path}.kind`, 'KIND_CPU beside a KIND_GPU group: a model runs on one device here, the GPU');
    if (kind === 'KIND_GPU' && !onGpu && !toGpu) {
      const hint = gpuBuildHint();
      f.warn(
        `${path}.kind`,
        `KIND_GPU: the ${backend.name} backend here runs on the CPU${hint ? ` (${hint})` : ''}`,
      );
    }
    if (kind === 'KIND_MODEL') f.warn(`${path}.kind`, 'KIND_MODEL is served as KIND_AUTO here');
    const gpus = g.gpus ?? [];
    if (gpus.length && (onGpu || toGpu)) {
      if (device === undefined) device = gpus[0];
      if (gpus.length > 1 || gpus[0] !== device)
        f.warn(
          `${path}.gpus`,
          `a model is served on one GPU here (${device}); the other GPUs listed get no instances`,
        );
    }
    const count = g.count ?? 1;
    if (count < 1) f.refuse(`${path}.count`, `must be at least 1, not ${count}`);
    instances += count;
    warnOthers(f, g, ['name', 'kind', 'count', 'gpus'], path, NOT_SUPPORTED);
  }

  // Optimization: what the backend can honour (CUDA graphs where it captures them); the rest is named.
  const opt = raw.optimization ?? {};
  const metadata: NonNullable<ModelConfig['metadata']> = { createdBy: 'config.pbtxt' };
  let cudaGraph: boolean | undefined;
  if (opt.cuda) {
    if (backend.triton.cudaGraphsDefault !== undefined && opt.cuda.graphs !== undefined)
      metadata.runtime = { cudaGraphs: opt.cuda.graphs };
    else if (toGpu && opt.cuda.graphs !== undefined) cudaGraph = opt.cuda.graphs;
    else if (opt.cuda.graphs) {
      const capturing = backendEntries().filter((b) => b.triton.cudaGraphsDefault !== undefined);
      f.warn(
        'optimization.cuda.graphs',
        capturing.length
          ? `CUDA graphs are for ${capturing.map((b) => b.platform).join(' and ')} models and KIND_GPU instances here (ignored)`
          : 'CUDA graphs are not captured here (ignored)',
      );
    }
    warnOthers(f, opt.cuda, ['graphs'], 'optimization.cuda', NOT_SUPPORTED);
  }
  const acc = opt.execution_accelerators;
  for (const [kind, list] of Object.entries(acc ?? {}))
    for (const a of (list as { name?: string }[]) ?? []) {
      const instead = backendEntries().find((b) => a.name && b.triton.replacesAccelerators?.includes(a.name));
      f.warn(
        `optimization.execution_accelerators.${kind}`,
        `${a.name ?? '?'} is not supported here (ignored)${instead ? `; build ${instead.builtModel ?? `for the ${instead.name} backend`} instead: yqp-trt build --backend ${instead.name}` : ''}`,
      );
    }
  for (const pinned of ['input_pinned_memory', 'output_pinned_memory'] as const)
    if (opt[pinned] && opt[pinned]!.enable === false)
      f.warn(`optimization.${pinned}`, 'tensors are always staged through pinned memory here');
  warnOthers(
    f,
    opt,
    ['cuda', 'execution_accelerators', 'input_pinned_memory', 'output_pinned_memory'],
    'optimization',
    NOT_SUPPORTED,
  );
  for (const key of Object.keys(raw.parameters ?? {})) f.warn(`parameters.${key}`, NOT_SUPPORTED);
  warnOthers(
    f,
    raw,
    [
      'name',
      'platform',
      'backend',
      'version_policy',
      'max_batch_size',
      'input',
      'output',
      'dynamic_batching',
      'instance_group',
      'default_model_filename',
      'optimization',
      'parameters',
      'model_warmup',
      'model_transaction_policy',
    ],
    '',
    NOT_SUPPORTED,
  );

  const config: ModelConfig = {
    name,
    backend: backend.name,
    modelFile,
    precision: 'fp32',
    maxBatchSize: maxBatch,
    inputs,
    outputs,
    profiles: [profile],
    instances: Math.max(1, instances),
    ...(dynamicBatching ? { dynamicBatching } : {}),
    ...(scheduler ? { scheduler } : {}),
    ...(warmup !== undefined ? { warmup } : {}),
    ...(toGpu ? { device: `cuda:${device ?? 0}` } : {}),
    ...(cudaGraph !== undefined ? { cudaGraph } : {}),
    metadata,
  };
  const strip = (s: TensorSpec) => (maxBatch > 0 ? s.dims.slice(1) : s.dims);
  const triton: TritonModelConfig = {
    ...raw,
    name,
    platform: backend.platform,
    backend: backend.triton.backend,
    max_batch_size: maxBatch,
    version_policy: raw.version_policy ?? { latest: { num_versions: 1 } },
    input: inputs.map((s, i) => ({
      ...(raw.input?.[i] ?? {}),
      name: s.name,
      data_type: DTYPE_TO_TRITON[s.dtype],
      dims: strip(s),
    })),
    output: outputs.map((s, i) => ({
      ...(raw.output?.[i] ?? {}),
      name: s.name,
      data_type: DTYPE_TO_TRITON[s.dtype],
      dims: strip(s),
    })),
    instance_group: (raw.instance_group?.length ? raw.instance_group : [{ count: 1 }]).map((g, i, all) => ({
      ...g,
      name: g.name || (all.length === 1 ? name : `${name}_${i}`),
      kind: g.kind && g.kind !== 'KIND_AUTO' ? g.kind : onGpu ? 'KIND_GPU' : 'KIND_CPU',
      count: g.count ?? 1,
      ...((onGpu || (toGpu && g.kind === 'KIND_GPU')) && !g.gpus?.length ? { gpus: [device ?? 0] } : {}),
    })),
    default_model_filename: modelFile,
    ...(autoBatching ? { dynamic_batching: {} } : {}),
  };
  return { config, triton, warnings: f.warnings, version, ...(device !== undefined ? { device } : {}) };
}
