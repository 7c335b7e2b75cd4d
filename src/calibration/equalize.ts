import { onnx, readFloats, toNumber, type ModelProto, type TensorProto } from '../onnx/model.js';

/**
 * Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
 * Correction", 2019). Where a Conv feeds exactly one group-1 Conv with nothing in between (BlazeFace's depthwise
 * -> pointwise pairs), output channel c of the first is divided by s_c and input channel c of the second
 * multiplied by s_c, with s_c = sqrt(r1_c / r2_c) (r: the channel's max |w| in each): the FP32 function is the
 * same, but per-channel ranges even out, so the per-tensor activation scale between the two convs (and the
 * per-channel weight scales) lose far less to quantization. Depthwise outputs of BlazeFace otherwise span
 * 0..700 with most channels below 20, and per-tensor INT8 on them loses the faces.
 */
export interface EqualizeReport {
  pairs: number;
  /** Intermediate tensors whose channels were rescaled. */
  tensors: string[];
}

function setFloats(t: TensorProto, values: Float32Array): void {
  t.floatData = [];
  t.rawData = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
}

export function equalizeConvPairs(proto: ModelProto): EqualizeReport {
  const graph = proto.graph!;
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input ?? []) readers.set(i, (readers.get(i) ?? 0) + 1);
  const outputs = new Set((graph.output ?? []).map((o) => o.name));
  const byInput = new Map<string, (typeof nodes)[number]>();
  for (const n of nodes) for (const i of n.input ?? []) byInput.set(i, n);
  const group = (n: (typeof nodes)[number]) => {
    const a = (n.attribute ?? []).find((x) => x.name === 'group');
    return a ? toNumber(a.i) : 1;
  };
  const report: EqualizeReport = { pairs: 0, tensors: [] };
  for (const a of nodes) {
    if (a.opType !== 'Conv') continue;
    const t = a.output?.[0];
    if (!t || outputs.has(t) || readers.get(t) !== 1) continue;
    const b = byInput.get(t);
    if (!b || b.opType !== 'Conv' || b.input?.[0] !== t || group(b) !== 1) continue;
    const w1 = inits.get(a.input?.[1] ?? '');
    const w2 = inits.get(b.input?.[1] ?? '');
    const b1 = a.input?.[2] ? inits.get(a.input[2]) : undefined;
    if (!w1 || !w2 || w1.dataType !== 1 || w2.dataType !== 1) continue;
    if (a.input?.[2] && !b1) continue;
    // Shared weights would change another layer too.
    if (readers.get(w1.name ?? '') !== 1 || readers.get(w2.name ?? '') !== 1) continue;
    if (b1 && readers.get(b1.name ?? '') !== 1) continue;
    const d1 = (w1.dims ?? []).map(toNumber);
    const d2 = (w2.dims ?? []).map(toNumber);
    const channels = d1[0];
    if (d2[1] !== channels) continue;
    const v1 = Float32Array.from(readFloats(w1));
    const v2 = Float32Array.from(readFloats(w2));
    const vb = b1 ? Float32Array.from(readFloats(b1)) : undefined;
    const inner1 = v1.length / channels;
    const inner2 = d2.slice(2).reduce((x, y) => x * y, 1);
    const r1 = new Float64Array(channels);
    const r2 = new Float64Array(channels);
    for (let i = 0; i < v1.length; i++) {
      const c = Math.floor(i / inner1);
      r1[c] = Math.max(r1[c], Math.abs(v1[i]));
    }
    for (let i = 0; i < v2.length; i++) {
      const c = Math.floor(i / inner2) % channels;
      r2[c] = Math.max(r2[c], Math.abs(v2[i]));
    }
    const s = Float64Array.from(r1, (x, c) => (x > 0 && r2[c] > 0 ? Math.sqrt(x / r2[c]) : 1));
    for (let i = 0; i < v1.length; i++) v1[i] /= s[Math.floor(i / inner1)];
    if (vb) for (let c = 0; c < channels; c++) vb[c] /= s[c];
    for (let i = 0; i < v2.length; i++) v2[i] *= s[Math.floor(i / inner2) % channels];
    setFloats(w1, v1);
    setFloats(w2, v2);
    if (b1 && vb) setFloats(b1, vb);
    report.pairs++;
    report.tensors.push(t);
  }
  return report;
}

/** A copy of the model (the caller's proto stays untouched). */
export function cloneModel(proto: ModelProto): ModelProto {
  return onnx.ModelProto.decode(onnx.ModelProto.encode(proto).finish());
}
