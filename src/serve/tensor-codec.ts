/**
 * Tensors in Triton's terms: datatype names, JSON values and raw little-endian bytes to typed arrays and back,
 * and BYTES elements in their length-prefixed binary form. Shared by every transport and the clients.
 */
import { YqpError, describeValue } from '../errors.js';
import { fromHalfBits, toHalfBits } from '../preprocess/half.js';
import { DTYPE_ARRAY, DTYPE_BYTES, type DType, type Tensor, type TypedArray } from '../tensor.js';

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

function bad(message: string, argument?: string): YqpError {
  return new YqpError('E_ARGUMENT', message, { argument });
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
