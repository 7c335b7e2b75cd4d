import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build } from '../src/build.js';
import { cloneModel } from '../src/calibration/equalize.js';
import { fuseConvAddRelu, MS_DOMAIN } from '../src/onnx/conv-add-relu.js';
import { makeBatchDynamic } from '../src/onnx/dynamic-batch.js';
import { cudaFp32Form, describeCudaForm } from '../src/cuda-form.js';
import { decodeOnnx, describeModel, encodeOnnx, loadOnnx, onnx, type ModelProto } from '../src/onnx/model.js';
import type { ModelConfig } from '../src/repository/config.js';
import { floatTensor } from '../src/onnx/qdq.js';
import { BLAZEFACE_ONNX, requireData } from './helpers/data.js';
import { maxRelDiff, runSeeded } from './helpers/onnx-run.js';

requireData(BLAZEFACE_ONNX);

const ops = (p: ModelProto) => {
  const out: Record<string, number> = {};
  for (const n of p.graph!.node ?? []) out[n.opType ?? ''] = (out[n.opType ?? ''] ?? 0) + 1;
  return out;
};

const run = (proto: ModelProto, dims: number[]) => runSeeded(proto, dims, 11);

/** x [1,4,8,8] -> Conv 1x1 (4 -> 4) -> Add(skip) -> Relu -> y, where `skip` and the readers vary per case. */
function block(options: {
  skip: 'input' | 'initializer';
  convReadTwice?: boolean;
  addReadTwice?: boolean;
}): ModelProto {
  const w = floatTensor(
    'w',
    Float32Array.from({ length: 16 }, (_, i) => ((i * 37) % 11) / 11 - 0.5),
    [4, 4, 1, 1],
  );
  const b = floatTensor('b', Float32Array.from([0.1, -0.2, 0.3, -0.4]), [4]);
  const initializers = [w, b];
  if (options.skip === 'initializer')
    initializers.push(floatTensor('k', new Float32Array(256).fill(0.25), [1, 4, 8, 8]));
  const nodes = [
    onnx.NodeProto.create({ opType: 'Conv', input: ['x', 'w', 'b'], output: ['c'], name: 'conv' }),
    onnx.NodeProto.create({
      opType: 'Add',
      input: ['c', options.skip === 'input' ? 'x' : 'k'],
      output: ['s'],
    }),
    onnx.NodeProto.create({ opType: 'Relu', input: ['s'], output: ['y'] }),
  ];
  const outputs = ['y'];
  if (options.convReadTwice) {
    nodes.push(onnx.NodeProto.create({ opType: 'Neg', input: ['c'], output: ['c2'] }));
    outputs.push('c2');
  }
  if (options.addReadTwice) {
    nodes.push(onnx.NodeProto.create({ opType: 'Neg', input: ['s'], output: ['s2'] }));
    outputs.push('s2');
  }
  const value = (name: string) =>
    onnx.ValueInfoProto.create({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: [1, 4, 8, 8].map((d) => ({ dimValue: d })) } } },
    });
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'block',
      node: nodes,
      initializer: initializers,
      input: [value('x')],
      output: outputs.map(value),
    },
  });
}

describe('residual Conv -> Add -> Relu as FusedConv (the CUDA form)', () => {
  for (const dynamic of [false, true])
    it(`fuses BlazeFace's 16 residual blocks and keeps its function (${dynamic ? 'dynamic' : 'fixed'} batch)`, async () => {
      const given = (await loadOnnx(BLAZEFACE_ONNX)).proto;
      if (dynamic) makeBatchDynamic(given);
      const fused = cloneModel(given);
      expect(fuseConvAddRelu(fused)).toEqual({ fused: 16 });
      const before = ops(given);
      const after = ops(fused);
      expect(after.FusedConv).toBe(16);
      expect(after.Conv).toBe(before.Conv - 16);
      expect(after.Add ?? 0).toBe(0);
      expect(after.Relu).toBe(before.Relu - 16); // the stem's Conv -> Relu has no Add: onnxruntime fuses it itself
      expect(fused.opsetImport!.some((o) => o.domain === MS_DOMAIN && Number(o.version) === 1)).toBe(true);
      const dims = [dynamic ? 3 : 1, 128, 128, 3];
      expect(maxRelDiff(await run(given, dims), await run(fused, dims))).toBeLessThan(1e-5);
      // Running it again finds nothing left to fuse.
      expect(fuseConvAddRelu(fused)).toEqual({ fused: 0 });
    });

  it('fuses a block whose sum is an activation, and leaves the ones it cannot prove alike', async () => {
    const plain = block({ skip: 'input' });
    const reference = await run(plain, [1, 4, 8, 8]);
    expect(fuseConvAddRelu(plain)).toEqual({ fused: 1 });
    const [node] = plain.graph!.node!;
    expect(node).toMatchObject({
      opType: 'FusedConv',
      domain: MS_DOMAIN,
      input: ['x', 'w', 'b', 'x'],
      output: ['y'],
    });
    expect(maxRelDiff(reference, await run(plain, [1, 4, 8, 8]))).toBeLessThan(1e-6);
    // A constant sum may broadcast; a Conv or Add output read elsewhere must stay: none of these is fused.
    for (const options of [
      { skip: 'initializer' as const },
      { skip: 'input' as const, convReadTwice: true },
      { skip: 'input' as const, addReadTwice: true },
    ]) {
      const m = block(options);
      expect(fuseConvAddRelu(m), JSON.stringify(options)).toEqual({ fused: 0 });
      expect(ops(m).Add).toBe(1);
    }
  });

  it('writes the model as given, saying why, where the sum only broadcasts to the Conv output', async () => {
    // Add(Conv(x), GlobalAveragePool(x)): the sum is an activation of shape [1,4,1,1], not the Conv's [1,4,8,8].
    const m = block({ skip: 'input' });
    m.graph!.node = [
      onnx.NodeProto.create({ opType: 'GlobalAveragePool', input: ['x'], output: ['p'] }),
      ...m.graph!.node!.map((n) => (n.opType === 'Add' ? { ...n, input: ['c', 'p'] } : n)),
    ].map((n) => onnx.NodeProto.create(n));
    const work = mkdtempSync(join(tmpdir(), 'yqp-cuda-form-bcast-'));
    const path = join(work, 'model.onnx');
    const bytes = encodeOnnx(m);
    writeFileSync(path, bytes);
    const model = describeModel(path, m, bytes);
    const config = { inputs: model.inputs, outputs: model.outputs } as ModelConfig;
    const x = new Float32Array(256).map((_, i) => Math.sin(i));
    const form = await cudaFp32Form(model, path, config, {
      x: { dtype: 'float32', dims: [1, 4, 8, 8], data: x },
    });
    expect(form.fused).toBe(0);
    expect(form.bytes).toBe(model.bytes);
    expect(form.skipped).toMatch(/the fused model does not run: .*shape/);
    expect(describeCudaForm(form)).toMatch(
      /^CUDA form: left out, the fused model does not run: .*; the model as given$/,
    );
  });

  it('build --device cuda writes the fused form and says so; a CPU build and an FP16 build do not', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'yqp-cuda-form-'));
    const profiles = [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [8, 128, 128, 3] } }];
    const common = { repo, dynamicBatch: true, backend: 'onnxruntime' as const, profiles };
    const cuda = await build(BLAZEFACE_ONNX, { ...common, name: 'gpu', device: 'cuda' });
    const cpu = await build(BLAZEFACE_ONNX, { ...common, name: 'cpu' });
    const half = await build(BLAZEFACE_ONNX, { ...common, name: 'half', device: 'cuda', precision: 'fp16' });
    const opsOf = (dir: string, file: string) => ops(decodeOnnx(readFileSync(join(dir, '1', file)), file));
    expect(opsOf(cuda.entry.dir, cuda.entry.config.modelFile).FusedConv).toBe(16);
    expect(cuda.entry.config.metadata?.cudaForm).toMatchObject({ fusedConvAddRelu: 16 });
    expect((cuda.entry.config.metadata?.cudaForm as { maxAbsDiff: number }).maxAbsDiff).toBeLessThan(1e-3);
    expect(cuda.notes.join('\n')).toMatch(/CUDA form: 16 residual Conv -> Add -> Relu chains as FusedConv/);
    expect(opsOf(cpu.entry.dir, cpu.entry.config.modelFile).FusedConv ?? 0).toBe(0);
    expect(cpu.entry.config.metadata?.cudaForm).toBeUndefined();
    // FusedConv has float32 kernels only: the FP16 model keeps its Conv, Add and Relu nodes.
    expect(opsOf(half.entry.dir, half.entry.config.modelFile).FusedConv ?? 0).toBe(0);
  }, 120_000);
});
