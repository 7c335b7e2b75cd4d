import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cpuInt8Form, hasInt8DotProduct } from '../src/onnx/int8-weights.js';

describe('the INT8 onnxruntime form a CPU loads', () => {
  const saved = process.env.YQP_INT8_WEIGHTS;
  afterEach(() => {
    if (saved === undefined) delete process.env.YQP_INT8_WEIGHTS;
    else process.env.YQP_INT8_WEIGHTS = saved;
  });

  it('loads the int8-weight file only where the CPU sums 8-bit products in int32 (VNNI), the exact one elsewhere', () => {
    delete process.env.YQP_INT8_WEIGHTS;
    const dir = mkdtempSync(join(tmpdir(), 'yqp-int8-weights-'));
    const ort = join(dir, 'model.ort.onnx');
    writeFileSync(ort, '');
    const avx2 = ['fpu', 'sse4_2', 'avx2', 'fma'];
    expect(hasInt8DotProduct(avx2)).toBe(false);
    expect(hasInt8DotProduct([...avx2, 'avx512_vnni'])).toBe(true);
    expect(hasInt8DotProduct([...avx2, 'avx_vnni'])).toBe(true);
    // No sibling written (an entry from before): the exact form on every CPU.
    expect(cpuInt8Form(ort, [...avx2, 'avx512_vnni'])).toBe(ort);
    writeFileSync(join(dir, 'model.ort.s8.onnx'), '');
    expect(cpuInt8Form(ort, [...avx2, 'avx512_vnni'])).toBe(join(dir, 'model.ort.s8.onnx'));
    expect(cpuInt8Form(ort, avx2)).toBe(ort);
    expect(cpuInt8Form(ort, [])).toBe(ort);
    // Other model files are never swapped.
    expect(cpuInt8Form(join(dir, 'model.onnx'), ['avx512_vnni'])).toBe(join(dir, 'model.onnx'));
    process.env.YQP_INT8_WEIGHTS = 'u8s8';
    expect(cpuInt8Form(ort, avx2)).toBe(join(dir, 'model.ort.s8.onnx'));
    process.env.YQP_INT8_WEIGHTS = 'u8u8';
    expect(cpuInt8Form(ort, ['avx512_vnni'])).toBe(ort);
    process.env.YQP_INT8_WEIGHTS = 's8';
    expect(() => cpuInt8Form(ort, avx2)).toThrow(
      "Expected 'u8u8' or 'u8s8' for YQP_INT8_WEIGHTS but received",
    );
  });
});
