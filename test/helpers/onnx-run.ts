import ort from 'onnxruntime-node';
import { encodeOnnx, type ModelProto } from '../../src/onnx/model.js';

/** Runs a model on onnxruntime's CPU provider on seeded inputs in [-1, 1) of `dims`; its outputs by name. */
export async function runSeeded(
  proto: ModelProto,
  dims: number[],
  seed: number,
): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(encodeOnnx(proto), { logSeverityLevel: 3 });
  try {
    let state = seed;
    const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return (state / 2 ** 31) * 2 - 1;
    });
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, dims) });
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await s.release();
  }
}

/** The largest difference between two runs' outputs, relative to each output's largest |value| in `a`. */
export function maxRelDiff(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  let worst = 0;
  for (const k of Object.keys(a)) {
    let scale = 1e-30;
    for (const v of a[k]) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < a[k].length; i++) worst = Math.max(worst, Math.abs(a[k][i] - b[k][i]) / scale);
  }
  return worst;
}
