/** Repositories for the serve tests: a tiny ONNX model built here, BlazeFace, and a broken entry. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from '../src/build.js';
import { encodeOnnx, onnx } from '../src/onnx/model.js';
import type { ModelConfig } from '../src/repository/config.js';
import { writeEntry } from '../src/repository/repository.js';
import { BLAZEFACE_ONNX, requireData } from './helpers/data.js';

/** y = x + x, x float32 [N, 4]: small enough that 100,000 requests take seconds. */
export function tinyOnnx(): Uint8Array {
  const dims = (...d: (number | string)[]) => ({
    dim: d.map((v) => (typeof v === 'number' ? { dimValue: v } : { dimParam: v })),
  });
  const proto = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'tiny',
      node: [{ opType: 'Add', input: ['x', 'x'], output: ['y'] }],
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: dims('N', 4) } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: dims('N', 4) } } }],
    },
  });
  return encodeOnnx(proto);
}

export function tinyConfig(name = 'tiny', maxBatchSize = 8): ModelConfig {
  return {
    name,
    backend: 'onnxruntime',
    modelFile: 'model.onnx',
    precision: 'fp32',
    maxBatchSize,
    inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 4] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: [-1, 4] }],
    profiles: [{ x: { min: [1, 4], opt: [1, 4], max: [maxBatchSize, 4] } }],
    instances: 1,
  };
}

export async function writeTiny(
  repo: string,
  name = 'tiny',
  config: Partial<ModelConfig> = {},
): Promise<void> {
  await writeEntry(repo, { ...tinyConfig(name), ...config }, { 'model.onnx': tinyOnnx() });
}

/** An entry whose model file is not ONNX: it must fail to load without stopping the others. */
export function writeBroken(repo: string, name = 'broken'): void {
  mkdirSync(join(repo, name, '1'), { recursive: true });
  writeFileSync(join(repo, name, 'config.json'), JSON.stringify({ ...tinyConfig(name) }));
  writeFileSync(join(repo, name, '1', 'model.onnx'), 'not an onnx model');
}

export function tempRepo(prefix = 'yqp-serve-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** BlazeFace with a dynamic batch (max 16) and the BlazeFace preset (image preprocessing). */
export async function writeBlazeFace(repo: string, name = 'face'): ReturnType<typeof build> {
  requireData(BLAZEFACE_ONNX);
  return build(BLAZEFACE_ONNX, {
    name,
    repo,
    dynamicBatch: true,
    backend: 'onnxruntime',
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [16, 128, 128, 3] } }],
  });
}
