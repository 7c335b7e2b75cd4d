/** Triton-layout repositories for the tests: <name>/config.pbtxt + <name>/1/model.onnx, as Triton users have them. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeBatchDynamic } from '../src/onnx/dynamic-batch.js';
import { decodeOnnx, encodeOnnx } from '../src/onnx/model.js';
import { BLAZEFACE_ONNX, requireData } from './helpers/data.js';
import { tinyOnnx } from './serve-fixtures.js';

/** BlazeFace as a Triton user configures it: batch 16, batched by Triton's dynamic batcher, outputs left out. */
export const BLAZE_PBTXT = `# BlazeFace front camera, as served by Triton
name: "blaze"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  {
    name: "input:0"
    data_type: TYPE_FP32
    format: FORMAT_NHWC
    dims: [ 128, 128, 3 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 500
  default_queue_policy { max_queue_size: 256 }
}
instance_group [ { count: 2, kind: KIND_CPU } ]
model_warmup [
  {
    name: "batch 4"
    batch_size: 4
    inputs { key: "input:0" value: { data_type: TYPE_FP32 dims: [ 128, 128, 3 ] zero_data: true } }
  }
]
`;

/** BlazeFace with its batch dimension made dynamic (as a Triton user exports it for max_batch_size > 0). */
export function blazeFaceBatchedOnnx(): Uint8Array {
  requireData(BLAZEFACE_ONNX);
  const proto = decodeOnnx(readFileSync(BLAZEFACE_ONNX), BLAZEFACE_ONNX);
  makeBatchDynamic(proto);
  return encodeOnnx(proto);
}

/** Writes <repo>/<name>/config.pbtxt (unless `pbtxt` is undefined) and <repo>/<name>/<version>/<file>. */
export function writeTritonEntry(
  repo: string,
  name: string,
  pbtxt: string | undefined,
  model: Uint8Array | string,
  version = 1,
  file = 'model.onnx',
): void {
  mkdirSync(join(repo, name, String(version)), { recursive: true });
  if (pbtxt !== undefined) writeFileSync(join(repo, name, 'config.pbtxt'), pbtxt);
  writeFileSync(join(repo, name, String(version), file), model);
}

export function writeBlaze(repo: string, name = 'blaze'): void {
  writeTritonEntry(
    repo,
    name,
    BLAZE_PBTXT.replace('name: "blaze"', `name: "${name}"`),
    blazeFaceBatchedOnnx(),
  );
}

/** The tiny y = x + x model in a Triton folder with the given config text. */
export function writeTinyTriton(repo: string, name: string, pbtxt: string | undefined, version = 1): void {
  writeTritonEntry(repo, name, pbtxt, tinyOnnx(), version);
}
