/**
 * The KServe v2 / Triton HTTP inference protocol: JSON tensors, Triton's binary tensor data extension
 * (`Inference-Header-Content-Length`, `binary_data` / `binary_data_size` parameters) and the shared-memory
 * parameters. Parsing and encoding only; no HTTP framework and no model here, so it is tested on its own.
 */
import { YqpError, describeValue } from '../errors.js';
import { byteLengthOf, elementCount } from '../tensor.js';
import type { InputHeader } from './input-check.js';
import { scanJson, type JsonLimits } from './json-scan.js';
import {
  fillFromBytes,
  type InferRequest,
  type Parameters,
  type RequestInput,
  type RequestOutput,
  type ResponseOutput,
  type SharedMemoryRef,
} from './inference-request.js';
import {
  DATATYPE_TO_DTYPE,
  DTYPE_TO_DATATYPE,
  SUPPORTED_DATATYPES,
  bytesOfTyped,
  jsonFromTyped,
  typedFromJson,
} from './tensor-codec.js';

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
function flatten(data: unknown[], where: string, maxDepth: number, maxCount: number): unknown[] {
  if (!data.some(Array.isArray)) return data;
  const out: unknown[] = [];
  // Iterative, depth- and count-bounded: a hostile nesting is a 400, not a stack overflow.
  const stack: { array: unknown[]; next: number }[] = [{ array: data, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.next >= top.array.length) {
      stack.pop();
      continue;
    }
    const x = top.array[top.next++];
    if (!Array.isArray(x)) {
      if (out.length >= maxCount) return out.concat([x]);
      out.push(x);
    } else if (stack.length >= maxDepth)
      throw bad(`Input ${where}.data nests deeper than its shape's ${maxDepth - 1} dimensions`, where);
    else stack.push({ array: x, next: 0 });
  }
  return out;
}

export interface ParseOptions {
  /** Called with each input's name, datatype and shape before its data is read (the model's checks). */
  check?: (input: InputHeader) => void;
  /** The JSON part was scanned against limits as it arrived (src/serve/json-scan.ts): not again. */
  scanned?: boolean;
  /** Limits of the scan otherwise (default: depth only). */
  limits?: JsonLimits;
}

/**
 * Parses an infer request body. `headerLength` is the Inference-Header-Content-Length header (undefined for
 * a plain JSON body); the binary tensors follow the JSON header in input order.
 */
export function parseInferRequest(
  body: Buffer,
  headerLength?: string | string[],
  options: ParseOptions = {},
): InferRequest {
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
  const json = body.subarray(0, jsonEnd);
  if (!options.scanned) scanJson(json, options.limits);
  let header: unknown;
  try {
    header = JSON.parse(json.toString('utf8'));
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
    options.check?.({ name, datatype, shape });
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
      const values = flatten(raw.data, JSON.stringify(name), Math.max(1, shape.length) + 1, count);
      if (values.length !== count)
        throw new YqpError(
          'E_SHAPE',
          `Input ${JSON.stringify(name)} has shape [${shape.join(',')}] (${count} elements) but its data holds ${values.length > count ? 'more' : values.length}`,
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
        shared_memory_byte_size: byteLengthOf(o.tensor),
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
