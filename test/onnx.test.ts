import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeBatchDynamic } from '../src/onnx/dynamic-batch.js';
import { encodeOnnx, graphIo, loadOnnx, readInt64s } from '../src/onnx/model.js';
import { BLAZEFACE_ONNX, OCR_DET_ONNX, requireData } from './helpers/data.js';

const tmp = mkdtempSync(join(tmpdir(), 'yqp-onnx-'));

describe('ONNX reading', () => {
  beforeAll(() => requireData());
  it('reads BlazeFace I/O, dtypes, shapes and opset', async () => {
    const m = await loadOnnx(BLAZEFACE_ONNX);
    expect(m.opset).toBe(12);
    expect(m.inputs).toEqual([{ name: 'input:0', dtype: 'float32', dims: [1, 128, 128, 3] }]);
    expect(m.outputs.map((o) => `${o.name}:${o.dims.join('x')}`)).toEqual([
      'Identity:0:1x512x1',
      'Identity_1:0:1x384x1',
      'Identity_2:0:1x512x16',
      'Identity_3:0:1x384x16',
    ]);
    expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
  it('reads dynamic dims as -1', async () => {
    const m = await loadOnnx(OCR_DET_ONNX);
    expect(m.inputs[0].dims).toEqual([-1, 3, -1, -1]);
  });
  it('says a missing file is missing', async () => {
    await expect(loadOnnx(join(tmp, 'nope.onnx'))).rejects.toMatchObject({
      code: 'E_MODEL_FILE',
      message: expect.stringMatching(/does not exist/),
    });
  });
  it('says a text file is not ONNX', async () => {
    const f = join(tmp, 'notes.onnx');
    writeFileSync(f, 'this is not a model\n'.repeat(10));
    await expect(loadOnnx(f)).rejects.toMatchObject({
      code: 'E_MODEL_FILE',
      message: expect.stringMatching(/not a valid ONNX model/),
    });
  });
  it('says a truncated model is truncated', async () => {
    const f = join(tmp, 'cut.onnx');
    writeFileSync(f, readFileSync(BLAZEFACE_ONNX).subarray(0, 100_000));
    await expect(loadOnnx(f)).rejects.toMatchObject({
      code: 'E_MODEL_FILE',
      message: expect.stringMatching(/truncated/),
    });
  });
});

describe('dynamic batch rewrite', () => {
  beforeAll(() => requireData());
  it('rewrites the 4 Reshape targets and 11 ConstantOfShape shapes of BlazeFace', async () => {
    const m = await loadOnnx(BLAZEFACE_ONNX);
    const report = makeBatchDynamic(m.proto);
    expect(report.reshapes).toHaveLength(4);
    expect(report.constantOfShapes).toHaveLength(11);
    const io = graphIo(m.proto);
    expect(io.inputs[0].dims).toEqual([-1, 128, 128, 3]);
    expect(io.outputs.every((o) => o.dims[0] === -1)).toBe(true);
    // No constant shape input with a leading 1 is left.
    const inits = new Map(m.proto.graph!.initializer!.map((t) => [t.name, t]));
    for (const n of m.proto.graph!.node!) {
      if (n.opType !== 'Reshape' && n.opType !== 'ConstantOfShape') continue;
      const shapeInput = n.opType === 'Reshape' ? n.input![1] : n.input![0];
      const t = inits.get(shapeInput);
      if (t) expect(readInt64s(t)[0]).not.toBe(1);
    }
    expect(encodeOnnx(m.proto).length).toBeGreaterThan(100_000);
  });
});
