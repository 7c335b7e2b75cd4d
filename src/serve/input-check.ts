/**
 * A request input checked against the model before its data is decoded, read from shared memory or its
 * images decoded: a known input, BYTES only on the image input and no more images than a batch holds, and
 * no more elements than the model's profiles allow. What a single request can make the server allocate is
 * then bounded by the model, not by the request (docs/serving-security.md).
 */
import { YqpError } from '../errors.js';
import type { ModelConfig, TensorSpec } from '../repository/config.js';
import { elementCount } from '../tensor.js';
import { DTYPE_TO_DATATYPE } from './tensor-codec.js';

/** What of an input is known from its header alone. */
export interface InputHeader {
  name: string;
  datatype: string;
  shape: readonly number[];
}

/** The most elements `input` takes in one request: the largest of its profiles' max shapes, else its dims. */
export function maxElements(config: ModelConfig, input: TensorSpec): number {
  const ranges = config.profiles.map((p) => p[input.name]).filter(Boolean);
  if (ranges.length > 0) return Math.max(...ranges.map((r) => elementCount(r.max)));
  // No profiles: a dynamic batch is bounded by maxBatchSize; another dynamic dimension by nothing known here.
  return elementCount(
    input.dims.map((d, i) => (d >= 0 ? d : i === 0 ? Math.max(1, config.maxBatchSize) : Infinity)),
  );
}

/** The most elements a whole request to the model carries (JSON values, say): every input at its largest. */
export function maxRequestElements(config: ModelConfig): number {
  let n = 0;
  for (const i of config.inputs) n += maxElements(config, i);
  return n;
}

export function checkInput(config: ModelConfig, input: InputHeader): void {
  const name = JSON.stringify(input.name);
  const declared = config.inputs.find((i) => i.name === input.name);
  const count = elementCount(input.shape);
  if (input.datatype === 'BYTES') {
    const spec = config.preprocessing;
    if (!spec || spec.input !== input.name)
      throw new YqpError(
        'E_DTYPE',
        declared
          ? `Input ${name} expects datatype ${DTYPE_TO_DATATYPE[declared.dtype]} but received BYTES (only the model's image input takes encoded images)`
          : `Unknown input ${name}: the model's inputs are ${config.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`,
        {
          argument: input.name,
          expected: declared ? DTYPE_TO_DATATYPE[declared.dtype] : undefined,
          received: 'BYTES',
        },
      );
    const most = Math.max(1, config.maxBatchSize);
    if (count > most)
      throw new YqpError(
        'E_SHAPE',
        `Input ${name} holds ${count} images but the model takes at most ${most} in one request (its max batch size)`,
        { argument: input.name, expected: `at most ${most} images`, received: String(count) },
      );
    return;
  }
  if (!declared)
    throw new YqpError(
      'E_INPUT_UNKNOWN',
      `Unknown input ${name}: the model's inputs are ${config.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`,
      { argument: input.name, expected: config.inputs.map((i) => i.name).join(', '), received: input.name },
    );
  const most = maxElements(config, declared);
  if (count > most)
    throw new YqpError(
      'E_SHAPE',
      `Input ${name} has shape [${input.shape.join(',')}] (${count} elements): it fits no optimization profile (the largest takes ${most})`,
      { argument: input.name, expected: `at most ${most} elements`, received: String(count) },
    );
}
