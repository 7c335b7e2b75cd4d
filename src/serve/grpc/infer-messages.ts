/**
 * ModelInferRequest into the transport-neutral request (src/serve/inference-request.ts) and the endpoint's result
 * into ModelInferResponse: raw_input_contents / raw_output_contents (one entry per tensor, in order) or typed
 * InferTensorContents, tensor and request parameters (shared memory, timeout), all checked as the HTTP path is.
 */
import { YqpError, describeValue } from '../../errors.js';
import { byteLengthOf, elementCount } from '../../tensor.js';
import type { InferResult } from '../endpoint.js';
import {
  fillFromBytes,
  type InferRequest,
  type Parameters,
  type RequestInput,
  type RequestOutput,
  type SharedMemoryRef,
} from '../inference-request.js';
import {
  DATATYPE_TO_DTYPE,
  DTYPE_TO_DATATYPE,
  SUPPORTED_DATATYPES,
  bytesOfTyped,
  typedFromJson,
} from '../tensor-codec.js';
import { toInt, type Message } from './service.js';

const bad = (message: string, argument?: string) => new YqpError('E_ARGUMENT', message, { argument });

/** The InferTensorContents field that carries each datatype (FP16 and BF16 have none: raw only). */
const CONTENTS_FIELD: Record<string, string> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};
const CONTENTS_FIELDS = [...new Set(Object.values(CONTENTS_FIELD)), 'uint64_contents'];

/** An InferParameter (a oneof) as a plain value; decoded messages keep field defaults on their prototype. */
export function parameterValue(p: Message | undefined): unknown {
  if (!p) return undefined;
  for (const key of [
    'bool_param',
    'int64_param',
    'uint64_param',
    'double_param',
    'string_param',
    'bytes_param',
  ])
    if (Object.prototype.hasOwnProperty.call(p, key)) {
      const v = p[key];
      return key === 'int64_param' || key === 'uint64_param' ? toInt(v) : v;
    }
  return undefined;
}

function parameters(map: Message | undefined): Parameters {
  const out: Parameters = {};
  for (const [k, v] of Object.entries(map ?? {})) out[k] = parameterValue(v as Message);
  return out;
}

function sharedMemoryOf(params: Parameters, where: string): SharedMemoryRef | undefined {
  const region = params.shared_memory_region;
  const size = params.shared_memory_byte_size;
  const offset = params.shared_memory_offset ?? 0;
  if (region === undefined && size === undefined) return undefined;
  if (typeof region !== 'string' || region.length === 0)
    throw bad(
      `Expected a region name for ${where} parameter shared_memory_region but received ${describeValue(region)}`,
      where,
    );
  for (const [key, v] of [
    ['shared_memory_byte_size', size],
    ['shared_memory_offset', offset],
  ] as const)
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw bad(
        `Expected a non-negative integer for ${where} parameter ${key} but received ${describeValue(v)}`,
        where,
      );
  return { region, offset: offset as number, byteSize: size as number };
}

/** Parses a decoded ModelInferRequest. */
export function parseGrpcInferRequest(msg: Message): InferRequest {
  const inputs: RequestInput[] = [];
  const list = (msg.inputs ?? []) as Message[];
  if (list.length === 0) throw bad('Expected at least one input in the request but received none', 'inputs');
  const raw = (msg.raw_input_contents ?? []) as Buffer[];
  let rawIndex = 0;
  const seen = new Set<string>();
  for (const [i, t] of list.entries()) {
    const name = t.name as string;
    if (!name) throw bad(`Expected a name for inputs[${i}] but received none`, `inputs[${i}]`);
    if (seen.has(name)) throw bad(`Input ${JSON.stringify(name)} appears twice`, name);
    seen.add(name);
    const datatype = t.datatype as string;
    if (!SUPPORTED_DATATYPES.includes(datatype))
      throw new YqpError(
        'E_DTYPE',
        `Expected a datatype of ${SUPPORTED_DATATYPES.join(', ')} for input ${JSON.stringify(name)} but received ${describeValue(datatype)}`,
        { argument: name, expected: SUPPORTED_DATATYPES.join(', '), received: String(datatype) },
      );
    const shape = ((t.shape ?? []) as unknown[]).map(toInt);
    if (shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw bad(
        `Expected non-negative dimensions for input ${JSON.stringify(name)} but received [${shape.join(',')}]`,
        name,
      );
    const params = parameters(t.parameters);
    const input: RequestInput = { name, datatype, shape, parameters: params };
    const count = elementCount(shape);
    const contents = t.contents as Message | undefined;
    const typed = CONTENTS_FIELDS.filter((f) => ((contents?.[f] ?? []) as unknown[]).length > 0);
    const shm = sharedMemoryOf(params, `input ${JSON.stringify(name)}`);
    if (shm) {
      if (typed.length)
        throw bad(
          `Input ${JSON.stringify(name)} names a shared-memory region and also carries contents`,
          name,
        );
      input.sharedMemory = shm;
    } else if (raw.length > 0) {
      if (typed.length)
        throw bad(
          `Input ${JSON.stringify(name)} carries contents while the request uses raw_input_contents`,
          name,
        );
      const bytes = raw[rawIndex++];
      if (bytes === undefined)
        throw bad(
          `The request has ${raw.length} raw_input_contents for more inputs (input ${JSON.stringify(name)} has none)`,
          name,
        );
      fillFromBytes(input, bytes, count);
    } else {
      const field = CONTENTS_FIELD[datatype];
      if (!field)
        throw bad(
          `Input ${JSON.stringify(name)} of datatype ${datatype} must be sent in raw_input_contents`,
          name,
        );
      const wrong = typed.find((f) => f !== field);
      if (wrong)
        throw bad(
          `Input ${JSON.stringify(name)} of datatype ${datatype} carries ${wrong}, expected ${field}`,
          name,
        );
      const values = (contents?.[field] ?? []) as unknown[];
      if (values.length !== count)
        throw new YqpError(
          'E_SHAPE',
          `Input ${JSON.stringify(name)} has shape [${shape.join(',')}] (${count} elements) but its contents hold ${values.length}`,
          { argument: name, expected: `${count} elements`, received: String(values.length) },
        );
      if (datatype === 'BYTES') input.bytes = values as Buffer[];
      else
        input.tensor = {
          dtype: DATATYPE_TO_DTYPE[datatype],
          dims: shape,
          data: typedFromJson(
            datatype,
            datatype === 'INT64' ? values.map(toInt) : values,
            `input ${JSON.stringify(name)}`,
          ),
        };
    }
    inputs.push(input);
  }
  if (raw.length > rawIndex)
    throw bad(
      `The request has ${raw.length} raw_input_contents but only ${rawIndex} inputs take raw contents`,
      'raw_input_contents',
    );
  const requested = (msg.outputs ?? []) as Message[];
  const outputs: RequestOutput[] | undefined = requested.length
    ? requested.map((o) => {
        const p = parameters(o.parameters);
        if (p.classification !== undefined)
          throw bad(
            `The classification extension is not supported (output ${JSON.stringify(o.name)})`,
            o.name,
          );
        return {
          name: o.name as string,
          binary: true,
          sharedMemory: sharedMemoryOf(p, `output ${JSON.stringify(o.name)}`),
        };
      })
    : undefined;
  return {
    id: msg.id ? (msg.id as string) : undefined,
    parameters: parameters(msg.parameters),
    inputs,
    outputs,
    binaryDataOutput: true,
  };
}

/** A ModelInferResponse: every output's bytes in raw_output_contents (an empty entry for shared-memory ones). */
export function grpcInferResponse(result: InferResult): Message {
  const outputs: Message[] = [];
  const raw: Buffer[] = [];
  for (const o of result.outputs) {
    const entry: Message = {
      name: o.name,
      datatype: DTYPE_TO_DATATYPE[o.tensor.dtype],
      shape: o.tensor.dims,
    };
    if (o.sharedMemory) {
      entry.parameters = {
        shared_memory_region: { string_param: o.sharedMemory.region },
        shared_memory_byte_size: { int64_param: byteLengthOf(o.tensor) },
        ...(o.sharedMemory.offset ? { shared_memory_offset: { int64_param: o.sharedMemory.offset } } : {}),
      };
      raw.push(Buffer.alloc(0));
    } else raw.push(bytesOfTyped(o.tensor.data));
    outputs.push(entry);
  }
  return {
    model_name: result.model.name,
    model_version: result.model.version,
    ...(result.id !== undefined ? { id: result.id } : {}),
    outputs,
    raw_output_contents: raw,
  };
}
