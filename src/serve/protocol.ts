/**
 * The KServe v2 / Triton HTTP inference protocol: JSON tensors, Triton's binary tensor data extension
 * (`Inference-Header-Content-Length`, `binary_data` / `binary_data_size` parameters) and the shared-memory
 * parameters. Parsing and encoding only; no HTTP framework and no model here, so it is tested on its own.
 */
import { YqpError, describeValue } from '../errors.js';
import { fromHalfBits, toHalfBits } from '../preprocess/half.js';
import {
  DTYPE_ARRAY,
  DTYPE_BYTES,
  elementCount,
  type DType,
  type Tensor,
  type TypedArray,
} from '../tensor.js';

/** Triton datatype names and the dtypes that hold them; BYTES has no dtype (strings or encoded images). */
export const DATATYPE_TO_DTYPE: Record<string, DType> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
};

export const DTYPE_TO_DATATYPE: Record<DType, string> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
};

export const SUPPORTED_DATATYPES = [...Object.keys(DATATYPE_TO_DTYPE), 'BYTES'];

export type Parameters = Record<string, unknown>;

/** One input as it came: a numeric tensor, or BYTES elements (strings or raw bytes). */
export interface RequestInput {
  name: string;
  datatype: string;
  shape: number[];
  parameters: Parameters;
  /** Numeric inputs. */
  tensor?: Tensor;
  /** BYTES inputs: one Buffer per element. */
  bytes?: Buffer[];
  /** Set when the data lives in a registered shared-memory region (resolved by the server). */
  sharedMemory?: SharedMemoryRef;
}

export interface SharedMemoryRef {
  region: string;
  offset: number;
  byteSize: number;
}

export interface RequestOutput {
  name: string;
  binary: boolean;
  sharedMemory?: SharedMemoryRef;
}

export interface InferRequest {
  id?: string;
  parameters: Parameters;
  inputs: RequestInput[];
  /** undefined: every output, in the model's order, binary if `binary_data_output` was set. */
  outputs?: RequestOutput[];
  binaryDataOutput: boolean;
}

export const HEADER_LENGTH = 'inference-header-content-length';

function bad(message: string, argument?: string): YqpError {
  return new YqpError('E_ARGUMENT', message, { argument });
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function readShape(value: unknown, where: string): number[] {
  if (!Array.isArray(value) || !value.every((d) => Number.isInteger(d) && d >= 0))
    throw bad(
      `Expected an array of non-negative integers for ${where}.shape but received ${describeValue(value)}`,
      where,
    );
  return value as number[];
}

function readParameters(value: unknown, where: string): Parameters {
  if (value === undefined) return {};
  if (!isObject(value))
    throw bad(`Expected an object for ${where}.parameters but received ${describeValue(value)}`, where);
  return value;
}

function readNonNegativeInt(params: Parameters, key: string, where: string): number | undefined {
  const v = params[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw bad(
      `Expected a non-negative integer for ${where}.parameters.${key} but received ${describeValue(v)}`,
      where,
    );
  return v;
}

function readSharedMemory(params: Parameters, where: string): SharedMemoryRef | undefined {
  const region = params.shared_memory_region;
  const byteSize = readNonNegativeInt(params, 'shared_memory_byte_size', where);
  const offset = readNonNegativeInt(params, 'shared_memory_offset', where) ?? 0;
  if (region === undefined && byteSize === undefined) return undefined;
  if (typeof region !== 'string' || region.length === 0)
    throw bad(
      `Expected a region name for ${where}.parameters.shared_memory_region but received ${describeValue(region)}`,
      where,
    );
  if (byteSize === undefined)
    throw bad(
      `Expected ${where}.parameters.shared_memory_byte_size with shared_memory_region but received none`,
      where,
    );
  return { region, offset, byteSize };
}

/** Flattens nested JSON arrays (Triton accepts both flat and row-major nested data). */
function flatten(data: unknown[]): unknown[] {
  if (!data.some(Array.isArray)) return data;
  const out: unknown[] = [];
  const walk = (x: unknown) => {
    if (Array.isArray(x)) for (const y of x) walk(y);
    else out.push(x);
  };
  walk(data);
  return out;
}

/** Builds a TypedArray from JSON values, checking each one fits the datatype. */
export function typedFromJson(datatype: string, values: unknown[], where: string): TypedArray {
  const dtype = DATATYPE_TO_DTYPE[datatype];
  const Ctor = DTYPE_ARRAY[dtype];
  const out = new Ctor(values.length);
  const fail = (v: unknown, expected: string) =>
    bad(`Expected ${expected} in ${where}.data (${datatype}) but received ${describeValue(v)}`, where);
  if (dtype === 'bool') {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'boolean') throw fail(v, 'true or false');
      out[i] = v ? 1 : 0;
    }
  } else if (dtype === 'int64') {
    const big = out as BigInt64Array;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) throw fail(v, 'integers');
      big[i] = BigInt(v);
    }
  } else if (dtype === 'float16') {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number') throw fail(v, 'numbers');
      out[i] = toHalfBits(v);
    }
  } else if (dtype === 'float32' || dtype === 'float64') {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number') throw fail(v, 'numbers');
      out[i] = v;
    }
  } else {
    // Integer types: refuse values the array would silently wrap.
    const probe = new Ctor(1) as Int32Array;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) throw fail(v, 'integers');
      probe[0] = v;
      if (probe[0] !== v) throw fail(v, `integers in the ${datatype} range`);
      out[i] = v;
    }
  }
  return out;
}

/** JSON values of a tensor (FP16 as numbers, INT64 as numbers, BOOL as booleans), as Triton sends them. */
export function jsonFromTyped(t: Tensor): unknown[] {
  const { data } = t;
  if (t.dtype === 'bool') return Array.from(data as Uint8Array, (v) => v !== 0);
  if (t.dtype === 'int64') return Array.from(data as BigInt64Array, (v) => Number(v));
  if (t.dtype === 'float16') return Array.from(data as Uint16Array, (v) => fromHalfBits(v));
  return Array.from(data as Float32Array);
}

/** A TypedArray over raw little-endian bytes; copies only when the bytes are not aligned for the type. */
export function typedFromBytes(dtype: DType, bytes: Uint8Array): TypedArray {
  const size = DTYPE_BYTES[dtype];
  const Ctor = DTYPE_ARRAY[dtype];
  if (bytes.byteOffset % size === 0)
    return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / size);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, bytes.byteLength / size);
}

export function bytesOfTyped(data: TypedArray): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** BYTES elements in Triton's binary form: each a 4-byte little-endian length, then the bytes. */
export function decodeBytesElements(raw: Uint8Array, count: number, where: string): Buffer[] {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (pos + 4 > buf.length)
      throw bad(
        `Truncated BYTES data for ${where}: a length prefix is cut at byte ${pos} of ${buf.length}`,
        where,
      );
    const n = buf.readUInt32LE(pos);
    pos += 4;
    if (pos + n > buf.length)
      throw bad(
        `Truncated BYTES data for ${where}: element ${out.length} claims ${n} bytes, ${buf.length - pos} remain`,
        where,
      );
    out.push(buf.subarray(pos, pos + n));
    pos += n;
  }
  if (out.length !== count)
    throw bad(`Expected ${count} BYTES elements for ${where} (its shape) but received ${out.length}`, where);
  return out;
}

export function encodeBytesElements(elements: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of elements) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length);
    parts.push(len, e);
  }
  return Buffer.concat(parts);
}

/**
 * Parses an infer request body. `headerLength` is the Inference-Header-Content-Length header (undefined for
 * a plain JSON body); the binary tensors follow the JSON header in input order.
 */
export function parseInferRequest(body: Buffer, headerLength?: string | string[]): InferRequest {
  let jsonEnd = body.length;
  if (headerLength !== undefined) {
    const h = Array.isArray(headerLength) ? headerLength[0] : headerLength;
    const n = /^[0-9]+$/.test(h) ? Number(h) : NaN;
    if (!Number.isSafeInteger(n))
      throw bad(
        `Expected a byte count for the Inference-Header-Content-Length header but received ${JSON.stringify(h)}`,
        'Inference-Header-Content-Length',
      );
    if (n > body.length)
      throw bad(
        `Inference-Header-Content-Length says ${n} bytes of JSON but the body holds only ${body.length}`,
        'Inference-Header-Content-Length',
      );
    jsonEnd = n;
  }
  let header: unknown;
  try {
    header = JSON.parse(body.subarray(0, jsonEnd).toString('utf8'));
  } catch (e) {
    throw bad(`Malformed JSON in the request body: ${(e as Error).message}`, 'body');
  }
  if (!isObject(header))
    throw bad(`Expected a JSON object as the request body but received ${describeValue(header)}`, 'body');
  const id = header.id;
  if (id !== undefined && typeof id !== 'string')
    throw bad(`Expected a string for id but received ${describeValue(id)}`, 'id');
  const parameters = readParameters(header.parameters, 'request');
  if (!Array.isArray(header.inputs) || header.inputs.length === 0)
    throw bad(`Expected a non-empty array for inputs but received ${describeValue(header.inputs)}`, 'inputs');

  let pos = jsonEnd;
  const inputs: RequestInput[] = [];
  const seen = new Set<string>();
  for (const [i, raw] of (header.inputs as unknown[]).entries()) {
    const where = `inputs[${i}]`;
    if (!isObject(raw))
      throw bad(`Expected an object for ${where} but received ${describeValue(raw)}`, where);
    const name = raw.name;
    if (typeof name !== 'string' || name.length === 0)
      throw bad(`Expected a name for ${where}.name but received ${describeValue(name)}`, where);
    if (seen.has(name)) throw bad(`Input ${JSON.stringify(name)} appears twice`, name);
    seen.add(name);
    const datatype = raw.datatype;
    if (typeof datatype !== 'string' || !SUPPORTED_DATATYPES.includes(datatype))
      throw new YqpError(
        'E_DTYPE',
        `Expected a datatype of ${SUPPORTED_DATATYPES.join(', ')} for input ${JSON.stringify(name)} but received ${describeValue(datatype)}`,
        { argument: name, expected: SUPPORTED_DATATYPES.join(', '), received: String(datatype) },
      );
    const shape = readShape(raw.shape, `input ${JSON.stringify(name)}`);
    const params = readParameters(raw.parameters, `input ${JSON.stringify(name)}`);
    const count = elementCount(shape);
    const input: RequestInput = { name, datatype, shape, parameters: params };
    const binarySize = readNonNegativeInt(params, 'binary_data_size', `input ${JSON.stringify(name)}`);
    const shm = readSharedMemory(params, `input ${JSON.stringify(name)}`);
    if (shm) {
      if (raw.data !== undefined || binarySize !== undefined)
        throw bad(`Input ${JSON.stringify(name)} names a shared-memory region and also carries data`, name);
      input.sharedMemory = shm;
    } else if (binarySize !== undefined) {
      if (headerLength === undefined)
        throw bad(
          `Input ${JSON.stringify(name)} has binary_data_size but the request has no Inference-Header-Content-Length header`,
          name,
        );
      if (pos + binarySize > body.length)
        throw bad(
          `Truncated binary body: input ${JSON.stringify(name)} needs ${binarySize} bytes at offset ${pos}, the body has ${body.length}`,
          name,
        );
      const bytes = body.subarray(pos, pos + binarySize);
      pos += binarySize;
      fillFromBytes(input, bytes, count);
    } else {
      if (!Array.isArray(raw.data))
        throw bad(
          `Expected an array for input ${JSON.stringify(name)}.data but received ${describeValue(raw.data)}`,
          name,
        );
      const values = flatten(raw.data);
      if (values.length !== count)
        throw new YqpError(
          'E_SHAPE',
          `Input ${JSON.stringify(name)} has shape [${shape.join(',')}] (${count} elements) but its data holds ${values.length}`,
          { argument: name, expected: `${count} elements`, received: String(values.length) },
        );
      if (datatype === 'BYTES') {
        input.bytes = values.map((v) => {
          if (typeof v !== 'string')
            throw bad(
              `Expected strings in input ${JSON.stringify(name)}.data (BYTES) but received ${describeValue(v)}`,
              name,
            );
          return Buffer.from(v, 'utf8');
        });
      } else {
        const dtype = DATATYPE_TO_DTYPE[datatype];
        input.tensor = {
          dtype,
          dims: shape,
          data: typedFromJson(datatype, values, `input ${JSON.stringify(name)}`),
        };
      }
    }
    inputs.push(input);
  }
  if (headerLength !== undefined && pos !== body.length)
    throw bad(
      `Binary body holds ${body.length - pos} bytes beyond the inputs' binary_data_size total`,
      'body',
    );

  const binaryDataOutput = parameters.binary_data_output === true;
  let outputs: RequestOutput[] | undefined;
  if (header.outputs !== undefined) {
    if (!Array.isArray(header.outputs))
      throw bad(`Expected an array for outputs but received ${describeValue(header.outputs)}`, 'outputs');
    outputs = (header.outputs as unknown[]).map((raw, i) => {
      const where = `outputs[${i}]`;
      if (!isObject(raw) || typeof raw.name !== 'string')
        throw bad(`Expected {"name": ...} for ${where} but received ${describeValue(raw)}`, where);
      const params = readParameters(raw.parameters, `output ${JSON.stringify(raw.name)}`);
      if (params.classification !== undefined)
        throw bad(
          `The classification extension is not supported (output ${JSON.stringify(raw.name)})`,
          raw.name,
        );
      const binary = params.binary_data === undefined ? binaryDataOutput : params.binary_data === true;
      return {
        name: raw.name,
        binary,
        sharedMemory: readSharedMemory(params, `output ${JSON.stringify(raw.name)}`),
      };
    });
  }
  return { id: id as string | undefined, parameters, inputs, outputs, binaryDataOutput };
}

/** Fills a request input from raw bytes (binary extension or shared memory), checking the size. */
export function fillFromBytes(input: RequestInput, bytes: Uint8Array, count: number): void {
  const name = JSON.stringify(input.name);
  if (input.datatype === 'BYTES') {
    input.bytes = decodeBytesElements(bytes, count, `input ${name}`);
    return;
  }
  const dtype = DATATYPE_TO_DTYPE[input.datatype];
  const expected = count * DTYPE_BYTES[dtype];
  if (bytes.byteLength !== expected)
    throw new YqpError(
      'E_SHAPE',
      `Input ${name} of shape [${input.shape.join(',')}] and datatype ${input.datatype} needs ${expected} bytes but received ${bytes.byteLength}`,
      { argument: input.name, expected: `${expected} bytes`, received: `${bytes.byteLength} bytes` },
    );
  input.tensor = { dtype, dims: input.shape, data: typedFromBytes(dtype, bytes) };
}

export interface ResponseOutput {
  name: string;
  tensor: Tensor;
  binary: boolean;
  /** Written to shared memory already: the response carries only the parameters. */
  sharedMemory?: SharedMemoryRef;
}

export interface EncodedResponse {
  body: Buffer | string;
  /** Set when binary outputs follow the JSON header. */
  headerLength?: number;
  /** The allocator's buffer that `body` is (part of), to give back once the response is sent. */
  slab?: Buffer;
}

/** Encodes an infer response: JSON only, or a JSON header followed by binary outputs in order. */
export function encodeInferResponse(
  model: { name: string; version: string },
  id: string | undefined,
  outputs: ResponseOutput[],
  /** Where the binary body's bytes go (a pooled slab, at least `size` bytes); default a fresh buffer. */
  allocate?: (size: number) => Buffer,
): EncodedResponse {
  const binaries: Buffer[] = [];
  const list = outputs.map((o) => {
    const entry: Record<string, unknown> = {
      name: o.name,
      datatype: DTYPE_TO_DATATYPE[o.tensor.dtype],
      shape: o.tensor.dims,
    };
    if (o.sharedMemory) {
      entry.parameters = {
        shared_memory_region: o.sharedMemory.region,
        shared_memory_byte_size: o.tensor.data.byteLength,
        ...(o.sharedMemory.offset ? { shared_memory_offset: o.sharedMemory.offset } : {}),
      };
    } else if (o.binary) {
      const b = bytesOfTyped(o.tensor.data);
      binaries.push(b);
      entry.parameters = { binary_data_size: b.length };
    } else entry.data = jsonFromTyped(o.tensor);
    return entry;
  });
  const header = JSON.stringify({
    model_name: model.name,
    model_version: model.version,
    ...(id !== undefined ? { id } : {}),
    outputs: list,
  });
  if (binaries.length === 0) return { body: header };
  const headLength = Buffer.byteLength(header, 'utf8');
  const size = binaries.reduce((s, b) => s + b.length, headLength);
  const slab = allocate ? allocate(size) : Buffer.allocUnsafe(size);
  slab.write(header, 0, 'utf8');
  let offset = headLength;
  for (const b of binaries) offset += b.copy(slab, offset);
  return {
    body: slab.length === size ? slab : slab.subarray(0, size),
    headerLength: headLength,
    ...(allocate ? { slab } : {}),
  };
}

/** Builds a binary request (for our bench client and tests): JSON header then each input's bytes. */
export function encodeInferRequest(
  inputs: { name: string; tensor: Tensor }[],
  options: { id?: string; binaryOutput?: boolean; outputs?: string[] } = {},
): { body: Buffer; headerLength: number } {
  const header = {
    ...(options.id !== undefined ? { id: options.id } : {}),
    inputs: inputs.map(({ name, tensor }) => ({
      name,
      datatype: DTYPE_TO_DATATYPE[tensor.dtype],
      shape: tensor.dims,
      parameters: { binary_data_size: tensor.data.byteLength },
    })),
    ...(options.outputs
      ? {
          outputs: options.outputs.map((name) => ({
            name,
            parameters: { binary_data: options.binaryOutput ?? true },
          })),
        }
      : { parameters: { binary_data_output: options.binaryOutput ?? true } }),
  };
  // Spaces after the JSON pad it to 8 bytes, so the server can view the tensors without an aligning copy.
  const text = JSON.stringify(header);
  const head = Buffer.from(text + ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8), 'utf8');
  return {
    body: Buffer.concat([head, ...inputs.map((i) => bytesOfTyped(i.tensor.data))]),
    headerLength: head.length,
  };
}

/** Parses an infer response (JSON or binary) back into tensors: for the bench client and tests. */
export function parseInferResponse(
  body: Buffer,
  headerLength?: number,
): {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: Record<string, Tensor>;
} {
  const end = headerLength ?? body.length;
  const header = JSON.parse(body.subarray(0, end).toString('utf8')) as {
    model_name: string;
    model_version: string;
    id?: string;
    outputs: { name: string; datatype: string; shape: number[]; data?: unknown[]; parameters?: Parameters }[];
  };
  let pos = end;
  const outputs: Record<string, Tensor> = {};
  for (const o of header.outputs) {
    const dtype = DATATYPE_TO_DTYPE[o.datatype];
    const size = o.parameters?.binary_data_size as number | undefined;
    if (size !== undefined) {
      outputs[o.name] = { dtype, dims: o.shape, data: typedFromBytes(dtype, body.subarray(pos, pos + size)) };
      pos += size;
    } else if (o.data)
      outputs[o.name] = { dtype, dims: o.shape, data: typedFromJson(o.datatype, o.data, o.name) };
  }
  return { model_name: header.model_name, model_version: header.model_version, id: header.id, outputs };
}

/** The HTTP status of a typed error, the way Triton answers each case. */
export function statusOf(e: unknown): number {
  if (!(e instanceof YqpError)) {
    const s = (e as { statusCode?: number } | undefined)?.statusCode;
    return typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
  }
  switch (e.code) {
    case 'E_NOT_FOUND':
      return 404;
    case 'E_QUEUE_FULL':
    case 'E_CLOSED':
      return 503;
    case 'E_TIMEOUT':
      return 504;
    case 'E_CANCELLED':
      return 499;
    case 'E_BACKEND_UNAVAILABLE':
      return 501;
    case 'E_BACKEND':
    case 'E_NATIVE':
    case 'E_INTERNAL':
      return 500;
    default:
      return 400;
  }
}
