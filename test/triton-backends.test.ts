/**
 * What each backend means to a Triton configuration, both ways: tensorrt_plan folders (read here without
 * TensorRT: a plan is only opened at load time) and onnxruntime_onnx folders, and the config.pbtxt derived from a
 * config.json entry. The backend-specific answers come from the backend registry's entries.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gpuOnnxruntimeStatus } from '../src/backends/onnxruntime-gpu.js';
import { loadModel } from '../src/model.js';
import type { ModelConfig } from '../src/repository/config.js';
import { readEntry } from '../src/repository/repository.js';
import { toTriton } from '../src/repository/triton-export.js';
import { tempRepo } from './serve-fixtures.js';
import { writeTinyTriton, writeTritonEntry } from './triton-fixtures.js';

/** Whether device cuda can run here (then the no-GPU refusal below cannot be seen). */
const gpuPresent = (await gpuOnnxruntimeStatus()).providers.some(
  (p) => p.name === 'CUDAExecutionProvider' && p.usable,
);

const IO = `max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
`;
/** A tensorrt_plan folder: the plan's bytes are never read while the configuration is mapped. */
const writePlan = (repo: string, name: string, pbtxt: string | undefined, file = 'model.plan') =>
  writeTritonEntry(repo, name, pbtxt, 'not a plan', 1, file);

describe('tensorrt_plan folders', () => {
  let repo: string;
  beforeAll(() => {
    repo = tempRepo('yqp-triton-trt-');
  });

  it('map to the tensorrt backend on a GPU: KIND_AUTO is KIND_GPU on GPU 0, CUDA graphs honoured', async () => {
    writePlan(
      repo,
      'plan',
      `platform: "tensorrt_plan"\n${IO}instance_group [ { count: 2 } ]\noptimization { cuda { graphs: false } }`,
    );
    const e = await readEntry(join(repo, 'plan'));
    expect(e.warnings).toEqual([]);
    expect(e.config).toMatchObject({ backend: 'tensorrt', modelFile: 'model.plan', instances: 2 });
    expect(e.config.metadata?.runtime).toEqual({ cudaGraphs: false });
    expect(e.device).toBeUndefined();
    expect(e.triton).toMatchObject({
      platform: 'tensorrt_plan',
      backend: 'tensorrt',
      default_model_filename: 'model.plan',
      instance_group: [{ name: 'plan', kind: 'KIND_GPU', count: 2, gpus: [0] }],
    });
  });

  it('are found by backend name alone, and by a .plan model file when neither is set', async () => {
    writePlan(repo, 'byname', `backend: "tensorrt"\n${IO}`);
    expect((await readEntry(join(repo, 'byname'))).config.backend).toBe('tensorrt');
    writePlan(repo, 'byfile', `default_model_filename: "face.plan"\n${IO}`, 'face.plan');
    const byFile = await readEntry(join(repo, 'byfile'));
    expect(byFile.config).toMatchObject({ backend: 'tensorrt', modelFile: 'face.plan' });
    writePlan(repo, 'byfolder', IO);
    expect((await readEntry(join(repo, 'byfolder'))).config.backend).toBe('tensorrt');
  });

  it('serve on the first GPU listed, and say that the other GPUs get no instances', async () => {
    writePlan(
      repo,
      'gpus',
      `platform: "tensorrt_plan"\n${IO}instance_group [ { kind: KIND_GPU gpus: [ 1, 2 ] } ]`,
    );
    const e = await readEntry(join(repo, 'gpus'));
    expect(e.device).toBe(1);
    expect(e.warnings).toEqual([
      'config.pbtxt: instance_group[0].gpus: a model is served on one GPU here (1); the other GPUs listed get no instances',
    ]);
    expect(e.triton?.instance_group).toEqual([{ name: 'gpus', kind: 'KIND_GPU', count: 1, gpus: [1, 2] }]);
  });

  it('are refused on KIND_CPU, without their inputs, and under the onnxruntime backend', async () => {
    const cases: [string, RegExp][] = [
      [
        `platform: "tensorrt_plan"\n${IO}instance_group [ { kind: KIND_CPU } ]`,
        /instance_group\[0\].kind: a tensorrt_plan model runs on a GPU, not KIND_CPU/,
      ],
      [
        'platform: "tensorrt_plan" max_batch_size: 8',
        /input: a tensorrt_plan model must declare its inputs \(they are read from ONNX models only\)/,
      ],
      [
        `platform: "tensorrt_plan" backend: "onnxruntime"\n${IO}`,
        /backend: onnxruntime does not run platform tensorrt_plan/,
      ],
      [`backend: "pytorch"\n${IO}`, /backend: "pytorch" is not served here/],
    ];
    for (const [pbtxt, why] of cases) {
      writePlan(repo, 'refused', pbtxt);
      await expect(readEntry(join(repo, 'refused'))).rejects.toThrow(why);
    }
    writePlan(repo, 'unnamed', `default_model_filename: "face.bin"\n${IO}`, 'face.bin');
    await expect(readEntry(join(repo, 'unnamed'))).rejects.toThrow(
      /platform: neither platform nor backend is set, and default_model_filename "face.bin" names no backend/,
    );
  });

  it('without a config are auto-completed from model.plan (and need their inputs declared)', async () => {
    writePlan(repo, 'bare', undefined);
    await expect(readEntry(join(repo, 'bare'))).rejects.toThrow(
      /a tensorrt_plan model must declare its inputs/,
    );
    mkdirSync(join(repo, 'other', '1'), { recursive: true });
    writeFileSync(join(repo, 'other', '1', 'model.bin'), 'x');
    await expect(readEntry(join(repo, 'other'))).rejects.toThrow(
      /has no config.json or config.pbtxt \(and no version folder holding model.onnx or model.plan to auto-complete one from\)/,
    );
  });
});

describe('onnxruntime_onnx folders', () => {
  let repo: string;
  beforeAll(() => {
    repo = tempRepo('yqp-triton-ort-');
  });

  it('go on the CUDA provider with KIND_GPU (its GPU, CUDA graphs), on the CPU otherwise', async () => {
    writeTinyTriton(
      repo,
      'gpu',
      `platform: "onnxruntime_onnx"\n${IO}instance_group [ { kind: KIND_GPU gpus: [ 1 ] } ]\noptimization { cuda { graphs: true } }`,
    );
    const e = await readEntry(join(repo, 'gpu'));
    expect(e.config).toMatchObject({
      backend: 'onnxruntime',
      modelFile: 'model.onnx',
      device: 'cuda:1',
      cudaGraph: true,
    });
    expect(e.config.metadata?.runtime).toBeUndefined();
    expect(e.warnings).toEqual([]);
    expect(e.triton?.instance_group).toEqual([{ name: 'gpu', kind: 'KIND_GPU', count: 1, gpus: [1] }]);
    // The config endpoint of the same entry as config.json describes it says the same.
    expect(toTriton(e.config).instance_group).toEqual([
      { name: 'gpu', kind: 'KIND_GPU', count: 1, gpus: [1] },
    ]);
    expect(toTriton(e.config).optimization).toEqual({ cuda: { graphs: true } });
    // A KIND_CPU group beside it is named: one device a model.
    writeTinyTriton(
      repo,
      'mixed',
      `platform: "onnxruntime_onnx"\n${IO}instance_group [ { kind: KIND_GPU }, { kind: KIND_CPU count: 2 } ]`,
    );
    const mixed = await readEntry(join(repo, 'mixed'));
    expect(mixed.config).toMatchObject({ device: 'cuda:0', instances: 3 });
    expect(mixed.warnings).toEqual([
      'config.pbtxt: instance_group[1].kind: KIND_CPU beside a KIND_GPU group: a model runs on one device here, the GPU',
    ]);
    writeTinyTriton(repo, 'auto', `backend: "onnxruntime"\n${IO}optimization { cuda { graphs: true } }`);
    const auto = await readEntry(join(repo, 'auto'));
    expect(auto.config.device).toBeUndefined();
    expect(auto.warnings).toEqual([
      'config.pbtxt: optimization.cuda.graphs: CUDA graphs are for tensorrt_plan models and KIND_GPU instances here (ignored)',
    ]);
    expect(auto.triton?.instance_group).toEqual([{ name: 'auto', kind: 'KIND_CPU', count: 1 }]);
  });

  it.skipIf(gpuPresent)(
    'a KIND_GPU model on a machine without a GPU fails to load naming device, as Triton refuses it (skipped: a GPU is present)',
    async () => {
      await expect(loadModel(join(repo, 'gpu'))).rejects.toMatchObject({
        code: 'E_BACKEND_UNAVAILABLE',
        argument: 'device',
      });
      // --device cpu (a load option) serves it on the CPU instead.
      const m = await loadModel(join(repo, 'gpu'), { device: 'cpu', contexts: 1 });
      expect(m.device).toBe('cpu');
      await m.close();
    },
  );

  it('take their inputs and outputs from the ONNX file when the config leaves them out', async () => {
    writeTinyTriton(repo, 'io', 'platform: "onnxruntime_onnx" max_batch_size: 8');
    const e = await readEntry(join(repo, 'io'));
    expect(e.config.inputs).toEqual([{ name: 'x', dtype: 'float32', dims: [-1, 4] }]);
    expect(e.config.outputs).toEqual([{ name: 'y', dtype: 'float32', dims: [-1, 4] }]);
  });
});

describe('the config.pbtxt of a config.json entry', () => {
  const config = (backend: string, modelFile: string, runtime?: object): ModelConfig => ({
    name: 'm',
    backend,
    modelFile,
    precision: 'fp32',
    maxBatchSize: 8,
    inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 4] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: [-1, 4] }],
    profiles: [{ x: { min: [1, 4], opt: [4, 4], max: [8, 4] } }],
    instances: 2,
    ...(runtime ? { metadata: { runtime } } : {}),
  });

  it('is KIND_GPU on the device with CUDA graphs (on unless the entry says) for tensorrt', () => {
    const t = toTriton(config('tensorrt', 'model.plan'), 3);
    expect(t).toMatchObject({
      platform: 'tensorrt_plan',
      backend: 'tensorrt',
      default_model_filename: 'model.plan',
    });
    expect(t.instance_group).toEqual([{ name: 'm', kind: 'KIND_GPU', count: 2, gpus: [3] }]);
    expect(t.optimization).toEqual({ cuda: { graphs: true } });
    expect(toTriton(config('tensorrt', 'model.plan', { cudaGraphs: false })).optimization).toEqual({
      cuda: { graphs: false },
    });
  });

  it('is KIND_CPU without GPUs or optimization for onnxruntime', () => {
    const t = toTriton(config('onnxruntime', 'model.onnx'), 3);
    expect(t).toMatchObject({ platform: 'onnxruntime_onnx', backend: 'onnxruntime' });
    expect(t.instance_group).toEqual([{ name: 'm', kind: 'KIND_CPU', count: 2 }]);
    expect(t).not.toHaveProperty('optimization');
  });
});
