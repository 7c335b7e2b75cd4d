/**
 * The client's side of the HTTP protocol: binary requests built and responses read back into tensors, for the
 * bench client and tests.
 */
import type { Tensor } from '../tensor.js';
import type { Parameters } from './inference-request.js';
import {
  DATATYPE_TO_DTYPE,
  DTYPE_TO_DATATYPE,
  bytesOfTyped,
  typedFromBytes,
  typedFromJson,
} from './tensor-codec.js';

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
