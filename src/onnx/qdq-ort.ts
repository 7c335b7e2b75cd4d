import { channelPadOf, pruneDeadNodes } from './channel-pad.js';
import { onnx, readFloats, toNumber, type ModelProto, type NodeProto, type TensorProto } from './model.js';
import { bumpOpsetTo13, floatTensor, int8Tensor, quantizeWeight, type QdqPlan } from './qdq.js';

/**
 * The Q/DQ form onnxruntime's CPU provider turns into integer kernels (QLinearConv, QLinearAdd). Its QDQ
 * selectors (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selectors.cc) fuse a node only
 * when every input comes from a DequantizeLinear (the bias too, as int32), its one output goes to a
 * QuantizeLinear (a Relu between may stay only when the Q's zero point makes it redundant) and the output
 * type equals the input type. The TensorRT form (qdq.ts: Q/DQ on inputs only, float bias) meets none of the
 * output rules, so onnxruntime ran it as DequantizeLinear + float Conv, slower than FP32.
 *
 * This form, written beside the TensorRT one (model.onnx stays what TensorRT reads):
 * - activations uint8 (MLAS's fast u8s8 path): a non-negative tensor (ReLU output) zero point 0 and scale
 *   amax/255, a signed one zero point 128 and scale amax/127 (the TensorRT form's int8 grid, shifted);
 * - weights symmetric per output channel on the TensorRT form's int8 grid; for the convolutions MLAS runs as a
 *   GEMM (all but the depthwise ones) stored as uint8 with zero point 128 (u8u8): on x86 CPUs without VNNI (AVX2
 *   only: AMD before Zen 4, Intel before Ice Lake) MLAS's u8s8 GEMM sums pairs of uint8 x int8 products in int16
 *   with saturation (vpmaddubsw; a pair reaches 2 x 255 x 127 = 64,770) and on an AVX2-only EPYC the INT8 model
 *   found 9 of 12 FP32 faces on other people; u8u8 widens to int16 first and computes what VNNI computes, on every
 *   CPU. (7-bit weights, onnxruntime's reduce_range, fit too but lost faces on the mixed calibration test.) Bias
 *   int32 with scale s_in * s_w[c];
 * - a Q/DQ pair after each quantized Conv (after its Relu when the Relu is its only reader), and after each
 *   residual Add's Relu, so every Conv and Add is a DQ -> op -> Q group. Convs whose output reaches a graph
 *   output (a detector's heads) keep a float output unless `options.heads` gives their range (uint8, asymmetric);
 * - MaxPool between Q/DQ pairs of the same parameters (runs on uint8), and channel Pads (channel-pad.ts) on the
 *   uint8 tensor with its zero point as the pad value: without them each float island cost a DQ, a Q and the
 *   layout transposes around it (onnxruntime runs QLinearConv in NHWC), and the form was no faster than FP32.
 */
export interface OrtQdqResult {
  /** Convs in a complete DQ -> Conv -> Q group (QLinearConv candidates). */
  fusedConvs: number;
  /** Quantizable ops left with a float output, and why. */
  floatOutputs: { node: string; reason: string }[];
  activations: number;
}

/** A depthwise convolution (one input channel a group): MLAS's depthwise kernel widens to int16, no saturation. */
function isDepthwise(n: NodeProto, dims: readonly number[]): boolean {
  const group = Number(n.attribute?.find((a) => a.name === 'group')?.i ?? 1);
  return group > 1 && dims[1] === 1;
}

function uint8Tensor(name: string, values: Uint8Array, dims: number[]): TensorProto {
  return onnx.TensorProto.create({ name, dataType: 2, dims, rawData: values });
}

const LAYOUT_OPS = new Set(['Reshape', 'Transpose', 'Concat', 'Identity', 'Squeeze', 'Unsqueeze', 'Flatten']);

/**
 * Tensors besides the plan's activations whose ranges the ORT form needs: quantized Convs' outputs without a
 * Relu, the heads' outputs included.
 */
export function ortExtraTensors(proto: ModelProto, plan: QdqPlan): string[] {
  return outputTargets(proto, plan)
    .filter((t) => t.tensor && !plan.activations.includes(t.tensor))
    .map((t) => t.tensor!);
}

/** The Convs whose output reaches a graph output through layout ops (a detector's heads): their output tensors. */
export function ortHeadTensors(proto: ModelProto, plan: QdqPlan): string[] {
  return outputTargets(proto, plan)
    .filter((t) => t.head)
    .map((t) => t.tensor!);
}

interface OutputTarget {
  node: number;
  /** The tensor its output Q goes on (after its Relu when the Relu is its only reader). */
  tensor?: string;
  relu: boolean;
  /** Its output reaches a graph output through layout ops only. */
  head?: boolean;
  reason?: string;
}

/** For each quantized Conv (and residual Add): the tensor its output Q goes on, or why none. */
function outputTargets(proto: ModelProto, plan: QdqPlan): OutputTarget[] {
  const g = proto.graph!;
  const nodes = g.node ?? [];
  const outputs = new Set((g.output ?? []).map((o) => o.name ?? ''));
  const readers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const x of n.input ?? []) readers.set(x, [...(readers.get(x) ?? []), i]);
  });
  const toOutput = (t: string, depth = 0): boolean =>
    outputs.has(t) ||
    (depth < 16 &&
      (readers.get(t) ?? []).some((r) =>
        LAYOUT_OPS.has(nodes[r].opType ?? '')
          ? (nodes[r].output ?? []).some((o) => toOutput(o, depth + 1))
          : false,
      ));
  const input0 = new Set(plan.uses.filter((u) => u.input === 0).map((u) => u.node));
  const weighted = new Set(plan.weightUses.map((u) => u.node));
  const addNodes = new Set(plan.uses.filter((u) => nodes[u.node].opType === 'Add').map((u) => u.node));
  const out: OutputTarget[] = [];
  nodes.forEach((n, i) => {
    const isConv = n.opType === 'Conv' && input0.has(i) && weighted.has(i);
    if (!isConv && !addNodes.has(i)) return;
    const y = (n.output ?? [])[0];
    if (outputs.has(y) || toOutput(y)) {
      out.push({
        node: i,
        relu: false,
        head: true,
        tensor: isConv && !outputs.has(y) ? y : undefined,
        reason: 'its output reaches a graph output (kept float)',
      });
      return;
    }
    const r = readers.get(y) ?? [];
    const relu = r.length === 1 && nodes[r[0]].opType === 'Relu' && !outputs.has(nodes[r[0]].output![0]);
    out.push({ node: i, tensor: relu ? nodes[r[0]].output![0] : y, relu });
  });
  return out;
}

/**
 * Rewrites `proto` (the FP32 model) in place into the onnxruntime form. `amax` holds every plan activation and
 * every ortExtraTensors tensor; `nonNegative` says which tensors never go below 0 (uint8 with zero point 0).
 */
export function insertOrtQdq(
  proto: ModelProto,
  plan: QdqPlan,
  amax: ReadonlyMap<string, number>,
  nonNegative: (tensor: string) => boolean,
  options: {
    /** Quantize these heads' outputs too (uint8, asymmetric over [min, max]): the logits on 8 bits. */
    heads?: ReadonlyMap<string, { min: number; max: number }>;
    /** int8 weights everywhere (u8s8: for CPUs with VNNI), not uint8 for the GEMM convolutions. */
    signedWeights?: boolean;
  } = {},
): OrtQdqResult {
  bumpOpsetTo13(proto);
  const g = proto.graph!;
  const nodes = g.node ?? [];
  const inits = new Map((g.initializer ?? []).map((t) => [t.name ?? '', t]));
  const taken = new Set<string>([
    ...nodes.flatMap((n) => [...(n.input ?? []), ...(n.output ?? [])]),
    ...inits.keys(),
  ]);
  const unique = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const heads = options.heads ?? new Map<string, { min: number; max: number }>();
  const targets = outputTargets(proto, plan).map((t) =>
    t.head && !(t.tensor && heads.has(t.tensor)) ? { ...t, tensor: undefined } : t,
  );
  const quantizedTarget = (t: OutputTarget) => t.tensor && (amax.has(t.tensor) || heads.has(t.tensor));
  const floatOutputs = targets
    .filter((t) => !quantizedTarget(t))
    .map((t) => ({
      node: nodes[t.node].name ?? '',
      reason: t.reason ?? 'no calibrated scale for its output',
    }));
  const quantized = new Set<string>([
    ...plan.activations,
    ...targets.filter(quantizedTarget).map((t) => t.tensor!),
  ]);
  // Pass-through ops run on uint8 with their input's parameters: MaxPool between a Q/DQ pair of equal parameters
  // (onnxruntime drops the pair), and a channel pad (Concat with zeros) becomes a Pad of the uint8 tensor with its
  // zero point. A Pad, unlike a Concat with a batch-sized zeros tensor, lets onnxruntime's layout transformer move
  // its NHWC transposes through, so the QLinearConv/QLinearAdd chain stays NHWC from input to heads.
  const inherit = new Map<string, string>();
  const pads = new Map<number, NodeProto>();
  nodes.forEach((n, i) => {
    const y = (n.output ?? [])[0];
    if (n.opType === 'MaxPool' && (n.output ?? []).length === 1 && quantized.has((n.input ?? [])[0])) {
      inherit.set(y, inherit.get(n.input![0]) ?? n.input![0]);
      quantized.add(y);
      return;
    }
    const pad = channelPadOf(n, inits);
    if (pad && quantized.has(pad.src) && quantized.has(y)) {
      pads.set(i, n);
      inherit.set(y, inherit.get(pad.src) ?? pad.src);
    }
  });
  const padOf = new Map([...pads.values()].map((n) => [n.output![0], n]));
  const qparams = new Map<string, { s: string; zp: string }>();
  const scaleOf = new Map<string, number>();
  const newInits: TensorProto[] = [];
  const after = new Map<number, NodeProto[]>();
  const atStart: NodeProto[] = [];
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const dqOf = new Map<string, string>();
  const qOf = new Map<string, string>();
  const before = new Map<number, NodeProto[]>();
  for (const t of quantized) {
    const from = inherit.get(t) ?? t;
    const a = amax.get(from) ?? 0;
    const unsigned = nonNegative(from);
    const head = heads.get(from);
    let scale = a > 0 ? a / (unsigned ? 255 : 127) : 1;
    let zeroPoint = unsigned ? 0 : 128;
    if (head) {
      const lo = Math.min(head.min, 0);
      const hi = Math.max(head.max, 0);
      scale = hi > lo ? (hi - lo) / 255 : 1;
      zeroPoint = Math.max(0, Math.min(255, Math.round(-lo / scale)));
    }
    scaleOf.set(t, Math.fround(scale));
    const s = unique(`${t}_ort_scale`);
    const zp = unique(`${t}_ort_zero_point`);
    newInits.push(floatTensor(s, Float32Array.of(scale), []));
    newInits.push(
      onnx.TensorProto.create({
        name: zp,
        dataType: 2,
        dims: [],
        rawData: Uint8Array.of(zeroPoint),
      }),
    );
    qparams.set(t, { s, zp });
    qOf.set(t, unique(`${t}_QuantizeLinear_Output`));
    dqOf.set(t, unique(`${t}_DequantizeLinear_Output`));
  }
  for (const t of quantized) {
    const { s, zp } = qparams.get(t)!;
    const pad = padOf.get(t);
    let quantize: NodeProto;
    if (pad) {
      // The Pad itself, on the uint8 tensor, padding with its zero point.
      const src = pad.input![0];
      quantize = onnx.NodeProto.create({
        name: pad.name,
        opType: 'Pad',
        input: [qOf.get(src)!, pad.input![1], qparams.get(src)!.zp],
        output: [qOf.get(t)!],
      });
    } else
      quantize = onnx.NodeProto.create({
        name: unique(`${t}_QuantizeLinear`),
        opType: 'QuantizeLinear',
        input: [t, s, zp],
        output: [qOf.get(t)!],
      });
    const pair = [
      quantize,
      onnx.NodeProto.create({
        name: unique(`${t}_DequantizeLinear`),
        opType: 'DequantizeLinear',
        input: [qOf.get(t)!, s, zp],
        output: [dqOf.get(t)!],
      }),
    ];
    const p = producer.get(t);
    if (p === undefined) atStart.push(...pair);
    else after.set(p, [...(after.get(p) ?? []), ...pair]);
  }
  // Every reader of a quantized tensor reads its DequantizeLinear (the Q node itself reads the float tensor).
  for (const n of nodes) n.input = (n.input ?? []).map((x) => dqOf.get(x) ?? x);
  // Weights and int32 biases of the quantized Convs.
  const weightDq = new Map<string, string>();
  let fusedConvs = 0;
  const fusedNodes = new Set(targets.filter(quantizedTarget).map((t) => t.node));
  const weightAxis = new Map(plan.weights.map((w) => [w.name, w.axis]));
  for (const u of plan.weightUses) {
    const n = nodes[u.node];
    const w = inits.get(u.weight)!;
    const dims = (w.dims ?? []).map(toNumber);
    const axis = weightAxis.get(u.weight) ?? 0;
    const { q, scales } = quantizeWeight(readFloats(w), dims, axis);
    const unsignedWeight = !options.signedWeights && !isDepthwise(n, dims);
    let wOut = weightDq.get(u.weight);
    if (!wOut) {
      const qn = unique(`${u.weight}_ort_quantized`);
      const sn = unique(`${u.weight}_ort_scale`);
      const zn = unique(`${u.weight}_ort_zero_point`);
      const per = axis >= 0;
      const zDims = per ? [scales.length] : [];
      const weight = unsignedWeight
        ? uint8Tensor(
            qn,
            Uint8Array.from(q, (v) => v + 128),
            dims,
          )
        : int8Tensor(qn, q, dims);
      const zeroPoint = unsignedWeight
        ? uint8Tensor(zn, new Uint8Array(scales.length).fill(128), zDims)
        : int8Tensor(zn, new Int8Array(scales.length), zDims);
      newInits.push(weight, floatTensor(sn, scales, zDims), zeroPoint);
      wOut = unique(`${u.weight}_DequantizeLinear_Output`);
      before.set(u.node, [
        ...(before.get(u.node) ?? []),
        onnx.NodeProto.create({
          name: unique(`${u.weight}_DequantizeLinear`),
          opType: 'DequantizeLinear',
          input: [qn, sn, zn],
          output: [wOut],
          attribute: per ? [onnx.AttributeProto.create({ name: 'axis', type: 2, i: axis })] : [],
        }),
      ]);
      weightDq.set(u.weight, wOut);
    }
    n.input![u.input] = wOut;
    // The bias as int32 on the grid s_in * s_w[c] (what QLinearConv adds to its int32 accumulator).
    const inputTensor = plan.uses.find((x) => x.node === u.node && x.input === 0)?.tensor;
    const biasName = n.opType === 'Conv' ? (n.input ?? [])[2] : undefined;
    const bias = biasName ? inits.get(biasName) : undefined;
    if (bias && inputTensor && scaleOf.has(inputTensor) && bias.dataType === 1) {
      const b = readFloats(bias);
      const sIn = scaleOf.get(inputTensor)!;
      const bScales = Float32Array.from(b, (_, c) => sIn * scales[axis >= 0 ? c : 0]);
      const bq = Int32Array.from(b, (v, c) =>
        Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / bScales[c]))),
      );
      const qn = unique(`${biasName}_ort_quantized`);
      const sn = unique(`${biasName}_ort_scale`);
      const zn = unique(`${biasName}_ort_zero_point`);
      newInits.push(
        onnx.TensorProto.create({
          name: qn,
          dataType: 6,
          dims: [b.length],
          rawData: new Uint8Array(bq.buffer),
        }),
        floatTensor(sn, bScales, [b.length]),
        onnx.TensorProto.create({
          name: zn,
          dataType: 6,
          dims: [b.length],
          rawData: new Uint8Array(b.length * 4),
        }),
      );
      const bOut = unique(`${biasName}_DequantizeLinear_Output`);
      before.set(u.node, [
        ...(before.get(u.node) ?? []),
        onnx.NodeProto.create({
          name: unique(`${biasName}_DequantizeLinear`),
          opType: 'DequantizeLinear',
          input: [qn, sn, zn],
          output: [bOut],
          attribute: [onnx.AttributeProto.create({ name: 'axis', type: 2, i: 0 })],
        }),
      ]);
      n.input![2] = bOut;
    }
    if (n.opType === 'Conv' && fusedNodes.has(u.node)) fusedConvs++;
  }
  const out: NodeProto[] = [...atStart];
  // A channel pad's Concat is replaced by the Pad emitted after it.
  nodes.forEach((n, i) =>
    out.push(...(before.get(i) ?? []), ...(pads.has(i) ? [] : [n]), ...(after.get(i) ?? [])),
  );
  g.node = out;
  pruneDeadNodes(g);
  const read = new Set(g.node.flatMap((n) => n.input ?? []));
  for (const o of g.output ?? []) read.add(o.name ?? '');
  g.initializer = [...(g.initializer ?? []).filter((t) => read.has(t.name ?? '')), ...newInits];
  return { fusedConvs, floatOutputs, activations: quantized.size };
}
