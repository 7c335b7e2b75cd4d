import type { DeviceOutputs, OutputMemory } from './backends/backend.js';
import { YqpError, describeValue, invalidParameter } from './errors.js';
import type { ModelConfig, OptimizationProfile } from './repository/config.js';
import {
  DTYPE_BYTES,
  dtypeOfArray,
  elementCount,
  type Tensor,
  type TensorMap,
  type TypedArray,
} from './tensor.js';

/** onnxruntime-node tensors say `type`, ours say `dtype`: both are accepted. */
interface TensorLike {
  dtype?: string;
  type?: string;
  dims?: readonly number[];
  data?: unknown;
}

function fitsRange(dims: readonly number[], min: readonly number[], max: readonly number[]): boolean {
  return dims.every((d, i) => d >= min[i] && d <= max[i]);
}

/** Index of the first profile every input fits, or -1. */
export function matchProfile(profiles: readonly OptimizationProfile[], feeds: TensorMap): number {
  return profiles.findIndex((p) =>
    Object.entries(p).every(([name, r]) => feeds[name] && fitsRange(feeds[name].dims, r.min, r.max)),
  );
}

function describeProfiles(config: ModelConfig, name: string): string {
  return config.profiles
    .map((p) => p[name])
    .filter(Boolean)
    .map((r) => `[${r.min.join('x')} .. ${r.max.join('x')}]`)
    .join(' or ');
}

/**
 * Checks inputs against the model's I/O and profiles before anything runs; every failure is a typed error
 * naming the input, what was expected and what came.
 */
export function validateFeeds(config: ModelConfig, feeds: unknown): TensorMap {
  if (typeof feeds !== 'object' || feeds === null || Array.isArray(feeds))
    throw new YqpError(
      'E_ARGUMENT',
      `Expected an object of named input tensors for feeds but received ${describeValue(feeds)}`,
      {
        argument: 'feeds',
      },
    );
  const given = feeds as Record<string, TensorLike>;
  const out: TensorMap = {};
  for (const name of Object.keys(given)) {
    if (!config.inputs.some((i) => i.name === name))
      throw new YqpError(
        'E_INPUT_UNKNOWN',
        `Unknown input ${JSON.stringify(name)}: the model's inputs are ${config.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`,
        { argument: name, expected: config.inputs.map((i) => i.name).join(', '), received: name },
      );
  }
  for (const spec of config.inputs) {
    const t = given[spec.name];
    if (t === undefined)
      throw new YqpError(
        'E_INPUT_MISSING',
        `Missing input ${JSON.stringify(spec.name)} (${spec.dtype}[${spec.dims.join(',')}])`,
        {
          argument: spec.name,
          expected: `${spec.dtype}[${spec.dims.join(',')}]`,
          received: 'nothing',
        },
      );
    const dtype = t.dtype ?? t.type;
    if (!ArrayBuffer.isView(t.data) || t.data instanceof DataView)
      throw new YqpError(
        'E_ARGUMENT',
        `Expected a TypedArray for ${spec.name}.data but received ${describeValue(t.data)}`,
        {
          argument: `${spec.name}.data`,
        },
      );
    if (
      dtype !== spec.dtype ||
      dtypeOfArray(t.data as TypedArray) !== (spec.dtype === 'bool' ? 'uint8' : spec.dtype)
    )
      throw new YqpError(
        'E_DTYPE',
        `Input ${JSON.stringify(spec.name)} expects dtype ${spec.dtype} but received ${dtype} (${(t.data as object).constructor.name})`,
        { argument: spec.name, expected: spec.dtype, received: String(dtype) },
      );
    const dims = t.dims;
    if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0))
      throw new YqpError(
        'E_SHAPE',
        `Expected an array of non-negative integers for ${spec.name}.dims but received ${describeValue(dims)}`,
        {
          argument: spec.name,
        },
      );
    const shown = `[${dims.join(',')}]`;
    if (dims.length !== spec.dims.length || dims.some((d, i) => spec.dims[i] !== -1 && spec.dims[i] !== d))
      throw new YqpError(
        'E_SHAPE',
        `Input ${JSON.stringify(spec.name)} expects shape [${spec.dims.join(',')}] but received ${shown}`,
        {
          argument: spec.name,
          expected: `[${spec.dims.join(',')}]`,
          received: shown,
        },
      );
    const device = (t as { device?: Tensor['device'] }).device;
    if (device) {
      const bytes = elementCount(dims) * DTYPE_BYTES[spec.dtype];
      if (typeof device.ptr !== 'bigint' || (device.size !== undefined && device.size < bytes))
        throw new YqpError(
          'E_SHAPE',
          `Input ${JSON.stringify(spec.name)} has shape ${shown} (${bytes} bytes) but its device memory holds ${device.size ?? 'no pointer'}`,
          { argument: spec.name, expected: `${bytes} bytes`, received: String(device.size) },
        );
      out[spec.name] = { dtype: spec.dtype, dims, data: t.data as TypedArray, device } satisfies Tensor;
      continue;
    }
    if (elementCount(dims) !== (t.data as TypedArray).length)
      throw new YqpError(
        'E_SHAPE',
        `Input ${JSON.stringify(spec.name)} has shape ${shown} (${elementCount(dims)} elements) but its data holds ${(t.data as TypedArray).length}`,
        {
          argument: spec.name,
          expected: `${elementCount(dims)} elements`,
          received: `${(t.data as TypedArray).length}`,
        },
      );
    out[spec.name] = { dtype: spec.dtype, dims, data: t.data as TypedArray } satisfies Tensor;
  }
  if (config.profiles.length > 0 && matchProfile(config.profiles, out) < 0) {
    // Name the input that fits no profile on its own; if each fits some profile, none fits them all together.
    const names = Object.keys(config.profiles[0]);
    const name =
      names.find((n) => !config.profiles.some((p) => p[n] && fitsRange(out[n].dims, p[n].min, p[n].max))) ??
      names[0];
    throw new YqpError(
      'E_SHAPE',
      `Input ${JSON.stringify(name)} of shape [${out[name].dims.join(',')}] fits no optimization profile: ${describeProfiles(config, name)}`,
      { argument: name, expected: describeProfiles(config, name), received: `[${out[name].dims.join(',')}]` },
    );
  }
  return out;
}

/**
 * Checks infer()'s device outputs before anything runs: the session can write outputs to device memory (a CUDA
 * session), each name is one of the model's outputs, each memory is { ptr: bigint, size: bytes }, and where the
 * output's size follows from the config and the batch, the memory holds it.
 */
export function validateDeviceOutputs(
  config: ModelConfig,
  outputs: unknown,
  where: { device: string; supported: boolean },
  feeds: TensorMap,
): DeviceOutputs {
  if (typeof outputs !== 'object' || outputs === null || Array.isArray(outputs))
    throw invalidParameter('outputs', 'an object of output names to device memory { ptr, size }', outputs);
  if (!where.supported)
    throw invalidParameter(
      'outputs',
      "a model on device 'cuda' (onnxruntime's CUDA provider writes outputs to device memory)",
      where.device,
    );
  const first = Object.values(feeds)[0];
  const batch = config.maxBatchSize > 0 && first ? (first.dims[0] ?? 1) : 1;
  const out: Record<string, OutputMemory> = {};
  for (const [name, memory] of Object.entries(outputs as Record<string, unknown>)) {
    const spec = config.outputs.find((o) => o.name === name);
    if (!spec)
      throw new YqpError(
        'E_ARGUMENT',
        `Unknown output ${JSON.stringify(name)} in outputs: the model's outputs are ${config.outputs.map((o) => JSON.stringify(o.name)).join(', ')}`,
        {
          argument: `outputs.${name}`,
          expected: config.outputs.map((o) => o.name).join(', '),
          received: name,
        },
      );
    const m = memory as { ptr?: unknown; size?: unknown } | null;
    if (typeof m !== 'object' || m === null || typeof m.ptr !== 'bigint')
      throw invalidParameter(`outputs.${name}`, 'device memory { ptr: bigint, size: bytes }', memory);
    if (typeof m.size !== 'number' || !Number.isInteger(m.size) || m.size < 0)
      throw invalidParameter(`outputs.${name}.size`, 'a non-negative integer number of bytes', m.size);
    const dims = config.maxBatchSize > 0 ? spec.dims.slice(1) : spec.dims;
    if (dims.every((d) => d >= 0)) {
      const needed = (config.maxBatchSize > 0 ? batch : 1) * elementCount(dims) * DTYPE_BYTES[spec.dtype];
      if (m.size < needed)
        throw invalidParameter(`outputs.${name}.size`, `at least ${needed} bytes (batch ${batch})`, m.size);
    }
    out[name] = { ptr: m.ptr, size: m.size };
  }
  return out;
}
