import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import { YqpError } from '../errors.js';
import type { TensorSpec } from '../repository/config.js';
import type { DType } from '../tensor.js';

export const { onnx } = onnxProto;
export type ModelProto = onnxProto.onnx.ModelProto;
export type GraphProto = onnxProto.onnx.IGraphProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;

/** ONNX TensorProto.DataType to our dtype names. */
const ELEM_TYPE_TO_DTYPE: Record<number, DType> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  9: 'bool',
  10: 'float16',
  11: 'float64',
};
export const DTYPE_TO_ELEM_TYPE: Record<DType, number> = Object.fromEntries(
  Object.entries(ELEM_TYPE_TO_DTYPE).map(([k, v]) => [v, Number(k)]),
) as Record<DType, number>;

export interface OnnxModel {
  path: string;
  proto: ModelProto;
  bytes: Uint8Array;
  sha256: string;
  /** Version of the default ('' or 'ai.onnx') operator set. */
  opset: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** protobufjs gives int64 fields as Long, number or string depending on size. */
export function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return Number(value);
  if (typeof value === 'bigint') return Number(value);
  if (value && typeof (value as { toNumber?: unknown }).toNumber === 'function')
    return (value as { toNumber(): number }).toNumber();
  return Number(value);
}

function valueInfoToSpec(info: onnxProto.onnx.IValueInfoProto, what: string): TensorSpec {
  const tensorType = info.type?.tensorType;
  const name = info.name ?? '';
  if (!tensorType)
    throw new YqpError('E_MODEL_FILE', `ONNX ${what} ${name} is not a tensor`, { argument: name });
  const dtype = ELEM_TYPE_TO_DTYPE[tensorType.elemType ?? 0];
  if (!dtype)
    throw new YqpError(
      'E_MODEL_FILE',
      `ONNX ${what} ${name} has unsupported element type ${tensorType.elemType}`,
      {
        argument: name,
      },
    );
  const dims = (tensorType.shape?.dim ?? []).map((d) => {
    const v = d.dimValue === undefined || d.dimValue === null ? 0 : toNumber(d.dimValue);
    return v > 0 ? v : -1;
  });
  return { name, dtype, dims };
}

/** Inputs and outputs of a graph as tensor specs (initializers listed as inputs are left out). */
export function graphIo(proto: ModelProto): { inputs: TensorSpec[]; outputs: TensorSpec[] } {
  const graph = proto.graph!;
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  return {
    inputs: (graph.input ?? [])
      .filter((i) => !initializers.has(i.name))
      .map((i) => valueInfoToSpec(i, 'input')),
    outputs: (graph.output ?? []).map((o) => valueInfoToSpec(o, 'output')),
  };
}

export function defaultOpset(proto: ModelProto): number {
  const entry = (proto.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version) : 0;
}

/** Decodes ONNX bytes, with errors that say whether the file is truncated or not ONNX at all. */
export function decodeOnnx(bytes: Uint8Array, path: string): ModelProto {
  let proto: ModelProto;
  try {
    proto = onnx.ModelProto.decode(bytes);
  } catch (e) {
    const why = /index out of range/.test(String(e)) ? 'truncated' : 'not an ONNX protobuf';
    throw new YqpError(
      'E_MODEL_FILE',
      `Model file ${path} is not a valid ONNX model (${why}: ${(e as Error).message})`,
      {
        argument: 'model',
        expected: 'an ONNX ModelProto',
        received: why,
        cause: e,
      },
    );
  }
  if (!proto.graph || (proto.graph.node ?? []).length === 0 || toNumber(proto.irVersion) <= 0) {
    throw new YqpError(
      'E_MODEL_FILE',
      `Model file ${path} is not a valid ONNX model (no graph or no IR version)`,
      {
        argument: 'model',
        expected: 'an ONNX ModelProto with a graph',
        received: 'no graph',
      },
    );
  }
  return proto;
}

export function describeModel(path: string, proto: ModelProto, bytes: Uint8Array): OnnxModel {
  const { inputs, outputs } = graphIo(proto);
  return {
    path,
    proto,
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    opset: defaultOpset(proto),
    inputs,
    outputs,
  };
}

export async function loadOnnx(path: string): Promise<OnnxModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new YqpError(
      'E_MODEL_FILE',
      code === 'ENOENT' ? `Model file ${path} does not exist` : `Model file ${path} cannot be read (${code})`,
      { argument: 'model', expected: 'a readable .onnx file', received: path, cause: e },
    );
  }
  return describeModel(path, decodeOnnx(bytes, path), bytes);
}

export function encodeOnnx(proto: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(proto).finish();
}

/** Reads the values of an int64 initializer (int64_data or raw_data little-endian). */
export function readInt64s(t: TensorProto): number[] {
  if (t.int64Data && t.int64Data.length) return t.int64Data.map(toNumber);
  if (t.rawData && t.rawData.length) {
    const raw = Uint8Array.from(t.rawData); // copy: raw_data is rarely 8-byte aligned inside the file buffer
    return Array.from(new BigInt64Array(raw.buffer, 0, raw.length / 8), Number);
  }
  return [];
}

/** Reads a float32 initializer's values (float_data or raw_data). */
export function readFloats(t: TensorProto): Float32Array {
  if (t.floatData && t.floatData.length) return Float32Array.from(t.floatData);
  if (t.rawData && t.rawData.length) {
    const raw = Uint8Array.from(t.rawData);
    return new Float32Array(raw.buffer, 0, raw.length / 4);
  }
  return new Float32Array(0);
}

export function int64Initializer(name: string, values: number[]): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: 7,
    dims: [values.length],
    int64Data: values,
  });
}
