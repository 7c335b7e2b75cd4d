/**
 * The request and response of one inference as every transport hands them to the endpoint (src/serve/endpoint.ts):
 * the HTTP protocol (src/serve/protocol.ts) parses into these, a gRPC one would too.
 */
import { YqpError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { DATATYPE_TO_DTYPE, decodeBytesElements, typedFromBytes } from './tensor-codec.js';
import { DTYPE_BYTES } from '../tensor.js';

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
