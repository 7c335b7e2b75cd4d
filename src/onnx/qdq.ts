import { YqpError } from '../errors.js';
import { onnx, readFloats, toNumber, type ModelProto, type NodeProto, type TensorProto } from './model.js';

/**
 * Explicit quantization (Q/DQ) in the placement NVIDIA's TensorRT guidance and ModelOpt's INT8 default use:
 * - activations entering Conv, ConvTranspose, MatMul and Gemm: QuantizeLinear -> DequantizeLinear, per tensor,
 *   symmetric int8 (zero point 0, scale amax/127);
 * - their weights: int8 initializers with a per-output-channel DequantizeLinear (axis 0 for Conv, 1 for
 *   ConvTranspose and MatMul, 0 or 1 for Gemm by transB), symmetric, scale max|w_c|/127;
 * - a residual Add fed by one of those ops gets Q/DQ on its other input, so TensorRT can fuse the Add into the
 *   producer's epilogue and keep the sum in INT8.
 * onnxruntime runs the result as a QDQ graph; TensorRT 10 and 11 build it as INT8.
 */
export const QUANTIZABLE_OPS = new Set(['Conv', 'ConvTranspose', 'MatMul', 'Gemm']);

/** Ops whose definition changed at opset 13 in a way that a version bump alone would break. */
const CHANGED_AT_13 = new Set([
  'Squeeze',
  'Unsqueeze',
  'Split',
  'ReduceSum',
  'Softmax',
  'LogSoftmax',
  'Hardmax',
  'If',
  'Loop',
  'Scan',
]);

export interface WeightPlan {
  /** Initializer name. */
  name: string;
  /** Output-channel axis of the per-channel scales. */
  axis: number;
}

export interface QdqPlan {
  /** Activation tensors that get per-tensor Q/DQ (and so need a calibrated amax), in graph order. */
  activations: string[];
  /** Of those, the residual Add inputs. */
  residuals: string[];
  weights: WeightPlan[];
  /** Quantized nodes by op type. */
  ops: Record<string, number>;
  /** (node index, input index) pairs that read a Q/DQ'd activation. */
  uses: { node: number; input: number; tensor: string }[];
  weightUses: { node: number; input: number; weight: string }[];
}

function attr(node: NodeProto, name: string): number | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a ? toNumber(a.i) : undefined;
}

/** Decides where Q/DQ go; throws E_CALIBRATION when the model has nothing to quantize. */
export function planQdq(proto: ModelProto): QdqPlan {
  const graph = proto.graph!;
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const activations: string[] = [];
  const residuals: string[] = [];
  const seen = new Set<string>();
  const weights = new Map<string, WeightPlan>();
  const ops: Record<string, number> = {};
  const uses: QdqPlan['uses'] = [];
  const weightUses: QdqPlan['weightUses'] = [];
  const addActivation = (tensor: string, node: number, input: number, residual = false) => {
    if (!seen.has(tensor)) {
      seen.add(tensor);
      activations.push(tensor);
      if (residual) residuals.push(tensor);
    }
    uses.push({ node, input, tensor });
  };
  const addWeight = (name: string, axis: number, node: number, input: number) => {
    const t = inits.get(name)!;
    if (t.dataType !== 1) return false;
    weights.set(name, { name, axis });
    weightUses.push({ node, input, weight: name });
    return true;
  };
  nodes.forEach((n, idx) => {
    const op = n.opType ?? '';
    const inputs = n.input ?? [];
    if (QUANTIZABLE_OPS.has(op)) {
      const [a, w] = inputs;
      if (!a || inits.has(a)) return;
      addActivation(a, idx, 0);
      if (w) {
        if (inits.has(w)) {
          let axis = 0;
          const rank = (inits.get(w)!.dims ?? []).length;
          if (op === 'ConvTranspose') axis = (attr(n, 'group') ?? 1) === 1 ? 1 : -1;
          else if (op === 'MatMul') axis = rank === 2 ? 1 : -1;
          else if (op === 'Gemm') axis = (attr(n, 'transB') ?? 0) === 1 ? 0 : 1;
          // -1: no clean output-channel axis (grouped ConvTranspose, batched MatMul weights): per-tensor.
          addWeight(w, axis, idx, 1);
        } else if (op === 'MatMul') {
          addActivation(w, idx, 1);
        }
      }
      ops[op] = (ops[op] ?? 0) + 1;
    }
  });
  nodes.forEach((n, idx) => {
    if (n.opType !== 'Add') return;
    const inputs = n.input ?? [];
    if (inputs.length !== 2 || inputs.some((i) => inits.has(i))) return;
    const fromQuantizable = inputs.map((i) => QUANTIZABLE_OPS.has(producer.get(i)?.opType ?? ''));
    if (!fromQuantizable[0] && !fromQuantizable[1]) return;
    // The input from the quantized producer fuses; the other one is the residual.
    const other = fromQuantizable[1] ? 0 : 1;
    addActivation(inputs[other], idx, other, true);
    ops.Add = (ops.Add ?? 0) + 1;
  });
  if (activations.length === 0)
    throw new YqpError(
      'E_CALIBRATION',
      'The model has nothing to quantize: no Conv, ConvTranspose, MatMul or Gemm reads a float activation',
      {
        argument: 'model',
        expected: 'a model with Conv, ConvTranspose, MatMul or Gemm',
        received: `ops ${[...new Set(nodes.map((n) => n.opType))].join(', ')}`,
      },
    );
  return { activations, residuals, weights: [...weights.values()], ops, uses, weightUses };
}

/**
 * The plan without some activations: no Q/DQ around them, and the weights of the ops that read them stay
 * float too (a weight is kept quantized while another quantized op still reads it), so those layers stay in
 * higher precision in TensorRT and onnxruntime.
 */
export function excludeFromPlan(plan: QdqPlan, tensors: Iterable<string>): QdqPlan {
  const out = new Set(tensors);
  if (out.size === 0) return plan;
  const dropped = new Set(plan.uses.filter((u) => out.has(u.tensor)).map((u) => u.node));
  const uses = plan.uses.filter((u) => !out.has(u.tensor));
  const kept = new Set(uses.map((u) => u.node));
  const weightUses = plan.weightUses.filter((u) => !dropped.has(u.node) || kept.has(u.node));
  const weightNames = new Set(weightUses.map((u) => u.weight));
  return {
    ...plan,
    activations: plan.activations.filter((t) => !out.has(t)),
    residuals: plan.residuals.filter((t) => !out.has(t)),
    weights: plan.weights.filter((w) => weightNames.has(w.name)),
    uses,
    weightUses,
  };
}

/** Symmetric int8 quantization of a weight: per channel along `axis` (or per tensor when axis is -1). */
export function quantizeWeight(
  values: Float32Array,
  dims: readonly number[],
  axis: number,
): { q: Int8Array; scales: Float32Array } {
  const channels = axis < 0 ? 1 : dims[axis];
  const inner = axis < 0 ? values.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const amax = new Float64Array(channels);
  for (let i = 0; i < values.length; i++) {
    const c = axis < 0 ? 0 : Math.floor(i / inner) % channels;
    const v = Math.abs(values[i]);
    if (v > amax[c]) amax[c] = v;
  }
  // An all-zero channel still needs a positive scale; any value quantizes its zeros exactly.
  const scales = Float32Array.from(amax, (a) => (a > 0 ? a / 127 : 1));
  const q = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const c = axis < 0 ? 0 : Math.floor(i / inner) % channels;
    q[i] = Math.max(-127, Math.min(127, Math.round(values[i] / scales[c])));
  }
  return { q, scales };
}

export function floatTensor(name: string, values: Float32Array, dims: number[]): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: 1,
    dims,
    rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)),
  });
}

export function int8Tensor(name: string, values: Int8Array, dims: number[]): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: 3,
    dims,
    rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)),
  });
}

/** Ops of the model whose opset-13 definition differs from the older one (empty: bumping to 13 is safe). */
export function opsChangedAt13(proto: ModelProto): string[] {
  return [...new Set((proto.graph?.node ?? []).map((n) => n.opType ?? ''))].filter((op) =>
    CHANGED_AT_13.has(op),
  );
}

export interface QdqResult {
  /** Opset before and after (per-channel DequantizeLinear needs 13). */
  opsetFrom: number;
  opsetTo: number;
  activations: number;
  weights: number;
  nodesAdded: number;
}

/** Sets the model's opset to 13 when older (per-channel DequantizeLinear needs 13); refuses ops whose meaning changed. */
export function bumpOpsetTo13(proto: ModelProto): { opsetFrom: number; opsetTo: number } {
  const opsetEntry = (proto.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const opsetFrom = opsetEntry ? toNumber(opsetEntry.version) : 0;
  let opsetTo = opsetFrom;
  if (opsetFrom < 13) {
    const changed = opsChangedAt13(proto);
    if (changed.length > 0)
      throw new YqpError(
        'E_CALIBRATION',
        `The model is opset ${opsetFrom}; per-channel Q/DQ needs opset 13, where ${changed.join(', ')} changed definition`,
        {
          argument: 'model',
          expected: 'opset >= 13, or no op whose definition changed at 13',
          received: `opset ${opsetFrom}`,
          solutions: ['convert the model to opset 13 first (onnx.version_converter)'],
        },
      );
    // Every op left (Conv, Relu, Add, Concat, Reshape, Transpose, MaxPool, ConstantOfShape ...) keeps its meaning at
    // 13: its opset-13 version only adds types (bfloat16).
    opsetTo = 13;
    if (opsetEntry) opsetEntry.version = 13;
    else
      proto.opsetImport = [
        ...(proto.opsetImport ?? []),
        onnx.OperatorSetIdProto.create({ domain: '', version: 13 }),
      ];
    if (toNumber(proto.irVersion) < 7) proto.irVersion = 7;
  }
  return { opsetFrom, opsetTo };
}

/**
 * Rewrites `proto` in place into a Q/DQ model, with activation amax values from calibration. Tensors of the
 * plan missing from `amax` are an internal error; an amax of 0 (a tensor that was always 0) gets scale 1.
 */
export function insertQdq(proto: ModelProto, plan: QdqPlan, amax: ReadonlyMap<string, number>): QdqResult {
  const graph = proto.graph!;
  const { opsetFrom, opsetTo } = bumpOpsetTo13(proto);
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const newInits: TensorProto[] = [];
  const before = new Map<number, NodeProto[]>();
  const emitted = new Set<string>();
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
  const dqName = new Map<string, string>();
  const addBefore = (idx: number, n: NodeProto) => {
    const list = before.get(idx) ?? [];
    list.push(n);
    before.set(idx, list);
  };
  let added = 0;
  // Activations: one Q/DQ pair per tensor, emitted just before its first quantized reader (topological order holds).
  const sortedUses = [...plan.uses].sort((a, b) => a.node - b.node);
  for (const use of sortedUses) {
    if (!emitted.has(use.tensor)) {
      const a = amax.get(use.tensor);
      if (a === undefined) throw new YqpError('E_INTERNAL', `no calibrated amax for ${use.tensor}`);
      const scaleName = unique(`${use.tensor}_scale`);
      const zpName = unique(`${use.tensor}_zero_point`);
      newInits.push(floatTensor(scaleName, Float32Array.of(a > 0 ? a / 127 : 1), []));
      newInits.push(int8Tensor(zpName, Int8Array.of(0), []));
      const q = unique(`${use.tensor}_QuantizeLinear_Output`);
      const dq = unique(`${use.tensor}_DequantizeLinear_Output`);
      addBefore(
        use.node,
        onnx.NodeProto.create({
          name: unique(`${use.tensor}_QuantizeLinear`),
          opType: 'QuantizeLinear',
          input: [use.tensor, scaleName, zpName],
          output: [q],
        }),
      );
      addBefore(
        use.node,
        onnx.NodeProto.create({
          name: unique(`${use.tensor}_DequantizeLinear`),
          opType: 'DequantizeLinear',
          input: [q, scaleName, zpName],
          output: [dq],
        }),
      );
      added += 2;
      emitted.add(use.tensor);
      dqName.set(use.tensor, dq);
    }
    nodes[use.node].input![use.input] = dqName.get(use.tensor)!;
  }
  // Weights: int8 initializer + per-channel DequantizeLinear, shared by all the quantized readers.
  const weightDq = new Map<string, string>();
  const firstWeightUse = new Map<string, number>();
  for (const u of plan.weightUses)
    firstWeightUse.set(u.weight, Math.min(firstWeightUse.get(u.weight) ?? Infinity, u.node));
  for (const w of plan.weights) {
    const t = inits.get(w.name)!;
    const dims = (t.dims ?? []).map(toNumber);
    const { q, scales } = quantizeWeight(readFloats(t), dims, w.axis);
    const qName = unique(`${w.name}_quantized`);
    const scaleName = unique(`${w.name}_scale`);
    const zpName = unique(`${w.name}_zero_point`);
    const perChannel = w.axis >= 0;
    newInits.push(int8Tensor(qName, q, dims));
    newInits.push(floatTensor(scaleName, scales, perChannel ? [scales.length] : []));
    newInits.push(int8Tensor(zpName, new Int8Array(scales.length), perChannel ? [scales.length] : []));
    const out = unique(`${w.name}_DequantizeLinear_Output`);
    addBefore(
      firstWeightUse.get(w.name)!,
      onnx.NodeProto.create({
        name: unique(`${w.name}_DequantizeLinear`),
        opType: 'DequantizeLinear',
        input: [qName, scaleName, zpName],
        output: [out],
        attribute: perChannel ? [onnx.AttributeProto.create({ name: 'axis', type: 2, i: w.axis })] : [],
      }),
    );
    added++;
    weightDq.set(w.name, out);
  }
  for (const u of plan.weightUses) nodes[u.node].input![u.input] = weightDq.get(u.weight)!;
  const out: NodeProto[] = [];
  nodes.forEach((n, i) => {
    out.push(...(before.get(i) ?? []), n);
  });
  graph.node = out;
  // Float weights no longer read by any node are dropped.
  const read = new Set(out.flatMap((n) => n.input ?? []));
  for (const o of graph.output ?? []) read.add(o.name ?? '');
  graph.initializer = [...(graph.initializer ?? []).filter((t) => read.has(t.name ?? '')), ...newInits];
  return { opsetFrom, opsetTo, activations: emitted.size, weights: plan.weights.length, nodesAdded: added };
}

/** Whether a model already holds QuantizeLinear/DequantizeLinear nodes. */
export function hasQdqNodes(proto: ModelProto): boolean {
  return (proto.graph?.node ?? []).some(
    (n) => n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear',
  );
}
