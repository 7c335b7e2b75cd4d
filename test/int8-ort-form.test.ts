import { describe, expect, it } from 'vitest';
import { concatPadsToPad } from '../src/onnx/channel-pad.js';
import { cloneModel } from '../src/calibration/equalize.js';
import { makeBatchDynamic } from '../src/onnx/dynamic-batch.js';
import { loadOnnx, onnx, toNumber, type ModelProto } from '../src/onnx/model.js';
import { widenChannels } from '../src/onnx/widen-channels.js';
import { floatTensor } from '../src/onnx/qdq.js';
import { BLAZEFACE_ONNX, requireData } from './helpers/data.js';
import { maxRelDiff, runSeeded } from './helpers/onnx-run.js';

requireData(BLAZEFACE_ONNX);

/** Runs a model on one seeded batch of BlazeFace inputs; returns its outputs by name. */
const run = (proto: ModelProto, batch: number) => runSeeded(proto, [batch, 128, 128, 3], 7);

const ops = (p: ModelProto) => {
  const out: Record<string, number> = {};
  for (const n of p.graph!.node ?? []) out[n.opType ?? ''] = (out[n.opType ?? ''] ?? 0) + 1;
  return out;
};

describe('the onnxruntime form: FP32 rewrites that keep the function', () => {
  for (const dynamic of [false, true])
    it(`channel pads become Pad and channels widen to multiples of 16 (${dynamic ? 'dynamic' : 'fixed'} batch)`, async () => {
      const fp32 = (await loadOnnx(BLAZEFACE_ONNX)).proto;
      if (dynamic) makeBatchDynamic(fp32);
      const batch = dynamic ? 3 : 1;
      const reference = await run(fp32, batch);
      const rewritten = cloneModel(fp32);
      // BlazeFace's 11 residual channel pads (Concat with ConstantOfShape zeros), and their zeros' arithmetic gone.
      expect(ops(fp32).Concat).toBeGreaterThanOrEqual(11);
      expect(concatPadsToPad(rewritten.graph!)).toBe(11);
      expect(ops(rewritten).Pad).toBe(11);
      expect(ops(rewritten).ConstantOfShape ?? 0).toBe(0);
      expect(maxRelDiff(reference, await run(rewritten, batch))).toBeLessThan(1e-6);

      const r = widenChannels(rewritten.graph!);
      expect(r.skipped).toBeUndefined();
      // 16 Conv outputs of 24..88 channels widened; 7 pads become empty (24 -> 28 is 32 -> 32).
      expect(r).toEqual({ widened: 16, padsRemoved: 7 });
      expect(ops(rewritten).Pad).toBe(4);
      const inits = new Map((rewritten.graph!.initializer ?? []).map((t) => [t.name, t]));
      for (const n of rewritten.graph!.node ?? []) {
        if (n.opType !== 'Conv') continue;
        const [o, i] = (inits.get(n.input![1])!.dims ?? []).map(toNumber);
        const group = toNumber((n.attribute ?? []).find((a) => a.name === 'group')?.i ?? 1);
        if (group > 1) expect(group % 16, n.name!).toBe(0);
        // The first Conv reads the image's 3 channels; the heads keep their 2..96 output channels.
        else if (i !== 3) expect(i % 16, n.name!).toBe(0);
        expect(o).toBeGreaterThan(0);
      }
      expect(maxRelDiff(reference, await run(rewritten, batch))).toBeLessThan(1e-5);
    });

  it('widening leaves a graph alone, and says why, when a widened tensor would reach an op it cannot take', () => {
    // x -> Conv(3 -> 24) -> Add(y, x2) where x2 is a graph input of 24 channels: the Add's inputs would differ.
    const w = floatTensor('w', new Float32Array(24 * 3), [24, 3, 1, 1]);
    const graph = onnx.GraphProto.create({
      node: [
        onnx.NodeProto.create({ name: 'conv', opType: 'Conv', input: ['x', 'w'], output: ['y'] }),
        onnx.NodeProto.create({ name: 'add', opType: 'Add', input: ['y', 'x2'], output: ['z'] }),
      ],
      initializer: [w],
      input: [onnx.ValueInfoProto.create({ name: 'x' }), onnx.ValueInfoProto.create({ name: 'x2' })],
      output: [onnx.ValueInfoProto.create({ name: 'z' })],
    });
    const before = onnx.GraphProto.encode(graph).finish();
    expect(widenChannels(graph).skipped).toMatch(/^add: Add of differently widened inputs/);
    expect(onnx.GraphProto.encode(graph).finish()).toEqual(before);
  });
});
