import { YqpError } from '../errors.js';
import { fromHalfBits, toHalfBits } from '../preprocess/half.js';
import { ELEM, constantElemType, inferElemTypes } from './elem-types.js';
import { onnx, readFloats, toNumber, type ModelProto, type NodeProto, type TensorProto } from './model.js';

export interface Fp16Options {
  /**
   * Keep the graph's float inputs and outputs float32 (default true): a Cast to FLOAT16 right after each float
   * input and a Cast to FLOAT right before each float output, so callers feed and read float32 as before.
   * false: the inputs and outputs themselves become float16.
   */
  keepIoFloat32?: boolean;
  /**
   * Constants holding finite values beyond float16's range (|x| > 65504, e.g. a BatchNormalization running
   * variance): 'float32' (default) runs the nodes that read them in float32, between Casts, so nothing is
   * clamped; 'clamp' clamps the values to +-65504 and counts them (the node computes in float16).
   */
  outOfRange?: 'float32' | 'clamp';
}

/** One (op, input) edge left in float32, and why. */
export interface Fp16KeptInput {
  node: string;
  op: string;
  input: number;
  tensor: string;
  why: string;
}

export interface Fp16Report {
  /** float32 initializers converted to float16. */
  initializers: number;
  /** Constant and ConstantOfShape values converted (or, for ConstantOfShape without one, given a float16 zero). */
  constants: number;
  /** Cast nodes whose `to` changed from FLOAT to FLOAT16. */
  casts: number;
  /** Cast nodes this conversion inserted (I/O, float32-only inputs, float32 ops). */
  castsInserted: number;
  /** Graph inputs and outputs element type after conversion. */
  io: 'float32' | 'float16';
  /** Inputs kept float32 for their op (FLOAT32_INPUTS). */
  keptFloat32: Fp16KeptInput[];
  /** Constants holding finite values beyond float16's range (|x| > 65504), and the largest |x|. */
  outOfRange: { tensors: string[]; maxAbs: number };
  /** Values clamped to +-65504 (outOfRange 'clamp', or a constant also read in float16 by a graph output). */
  clamped: { values: number; tensors: string[]; maxAbs: number };
  /** Non-zero values below float16's smallest subnormal (2^-24) that became zero. */
  flushedToZero: number;
}

export interface Float32Rule {
  op: string;
  /** Input indices that stay float32; 'all' for every float input. */
  inputs: number[] | 'all';
  /** The op itself runs in float32: its float outputs are cast back to float16 for the nodes after it. */
  float32Op?: boolean;
  why: string;
}

/**
 * (op, input) pairs that must stay float32. Everything else computes in float16. Constant sources (initializers,
 * Constant nodes) feeding these are simply not converted; computed tensors get a Cast to FLOAT in front.
 */
export const FLOAT32_INPUTS: readonly Float32Rule[] = [
  {
    op: 'Resize',
    inputs: [1, 2],
    why: "roi and scales (opset 10: scales at index 1): scales is tensor(float) only in the ONNX spec, and onnxruntime's Resize kernels read roi as float32",
  },
  { op: 'Upsample', inputs: [1], why: 'scales is tensor(float) only in the ONNX spec' },
  {
    op: 'NonMaxSuppression',
    inputs: [0, 1, 3, 4],
    why: 'boxes, scores, iou_threshold and score_threshold are tensor(float) only in the ONNX spec',
  },
  {
    op: 'Range',
    inputs: 'all',
    float32Op: true,
    why: 'T has no float16 in the ONNX spec (float, double, int16/32/64): it runs in float32, its output is cast back',
  },
  {
    op: 'RoiAlign',
    inputs: [0, 1],
    float32Op: true,
    why: 'onnxruntime registers RoiAlign for float and double only: it runs in float32, its output is cast back',
  },
  ...['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'EyeLike'].map((op) => ({
    op,
    inputs: [] as number[],
    float32Op: true,
    why: 'the output type comes from a dtype attribute and onnxruntime has float32/float64 kernels only: it is generated in float32 and cast to float16',
  })),
];

export const FLOAT16_MAX = 65504;

const RULES = new Map(FLOAT32_INPUTS.map((r) => [r.op, r]));

function ruleFor(node: NodeProto): Float32Rule | undefined {
  return node.domain && node.domain !== 'ai.onnx' ? undefined : RULES.get(node.opType ?? '');
}

/** float32 values to a float16 TensorProto's raw_data, clamping finite values beyond +-65504. */
function toHalfTensor(t: TensorProto, report: Fp16Report): void {
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    throw new YqpError(
      'E_MODEL_FILE',
      `FP16 conversion: tensor ${t.name} keeps its data in an external file`,
      {
        argument: t.name ?? '',
        expected: 'tensor data inside the .onnx file',
        received: 'external data',
      },
    );
  const values = readFloats(t);
  const half = new Uint16Array(values.length);
  let clampedHere = 0;
  for (let i = 0; i < values.length; i++) {
    let v = values[i];
    if (Number.isFinite(v) && Math.abs(v) > FLOAT16_MAX) {
      report.clamped.maxAbs = Math.max(report.clamped.maxAbs, Math.abs(v));
      v = Math.sign(v) * FLOAT16_MAX;
      clampedHere++;
    }
    half[i] = toHalfBits(v);
    if (v !== 0 && (half[i] & 0x7fff) === 0) report.flushedToZero++;
  }
  if (clampedHere) {
    report.clamped.values += clampedHere;
    report.clamped.tensors.push(t.name ?? '');
  }
  t.dataType = ELEM.FLOAT16;
  t.floatData = [];
  t.rawData = new Uint8Array(half.buffer);
}

/** Decodes a float16 TensorProto (raw_data or int32_data) to numbers: for reports and tests. */
export function readHalfs(t: TensorProto): Float32Array {
  let bits: Uint16Array;
  if (t.rawData && t.rawData.length) {
    const raw = Uint8Array.from(t.rawData);
    bits = new Uint16Array(raw.buffer, 0, raw.length / 2);
  } else bits = Uint16Array.from(t.int32Data ?? []);
  return Float32Array.from(bits, fromHalfBits);
}

function floatConstantToTensor(node: NodeProto): TensorProto | undefined {
  for (const a of node.attribute ?? []) {
    if (a.name === 'value' && a.t && a.t.dataType === ELEM.FLOAT) return a.t as TensorProto;
    if (a.name === 'value_float' || a.name === 'value_floats') {
      // Rewritten as an equivalent `value` tensor so it can hold float16.
      const floats = a.name === 'value_float' ? [a.f ?? 0] : [...(a.floats ?? [])];
      const t = onnx.TensorProto.create({
        dataType: ELEM.FLOAT,
        dims: a.name === 'value_float' ? [] : [floats.length],
        floatData: floats,
      });
      node.attribute = [
        onnx.AttributeProto.create({ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t }),
      ];
      return t;
    }
  }
  return undefined;
}

function copyTensor(t: TensorProto, name: string): TensorProto {
  return onnx.TensorProto.decode(onnx.TensorProto.encode({ ...t, name }).finish());
}

/**
 * Converts a model to FP16 in place: float32 initializers, Constant values and Cast-to-FLOAT targets become
 * float16 (IEEE half, round to nearest even), so the graph computes in float16; the inputs FLOAT32_INPUTS names
 * stay float32. Graph inputs and outputs stay float32 behind Cast nodes unless `keepIoFloat32: false`. Constants
 * beyond float16's range keep their nodes float32, or are clamped to +-65504 and counted (`outOfRange: 'clamp'`).
 * value_info types are updated. Models with subgraphs (If, Loop, Scan) are refused: their bodies would need the
 * same conversion.
 */
export function convertToFp16(proto: ModelProto, options: Fp16Options = {}): Fp16Report {
  const keepIo = options.keepIoFloat32 ?? true;
  const graph = proto.graph!;
  const nodes = graph.node ?? [];
  const sub = nodes.find((n) => (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length));
  if (sub)
    throw new YqpError(
      'E_MODEL_FILE',
      `FP16 conversion does not convert subgraphs: node ${sub.name || sub.output?.[0]} (${sub.opType}) has one`,
      {
        argument: '--fp16',
        expected: 'a model without If/Loop/Scan subgraphs',
        received: String(sub.opType),
      },
    );
  const report: Fp16Report = {
    initializers: 0,
    constants: 0,
    casts: 0,
    castsInserted: 0,
    io: keepIo ? 'float32' : 'float16',
    keptFloat32: [],
    outOfRange: { tensors: [], maxAbs: 0 },
    clamped: { values: 0, tensors: [], maxAbs: 0 },
    flushedToZero: 0,
  };
  const types = inferElemTypes(graph);
  const isFloat = (name: string | null | undefined) => !!name && types.get(name) === ELEM.FLOAT;

  const used = new Set<string>();
  for (const t of graph.initializer ?? []) used.add(t.name!);
  for (const vi of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])])
    used.add(vi.name!);
  for (const n of nodes) for (const x of [...(n.input ?? []), ...(n.output ?? []), n.name ?? '']) used.add(x);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  const cast = (input: string, output: string, to: number): NodeProto => {
    report.castsInserted++;
    return onnx.NodeProto.create({
      name: fresh(`${output}/yqp_fp16_cast`),
      opType: 'Cast',
      input: [input],
      output: [output],
      attribute: [
        onnx.AttributeProto.create({ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: to }),
      ],
    });
  };

  // Constants float16 cannot hold.
  const beyond = new Map<string, number>();
  const scan = (name: string, t: TensorProto) => {
    let max = 0;
    for (const v of readFloats(t)) if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
    if (max > FLOAT16_MAX) beyond.set(name, max);
  };
  for (const t of graph.initializer ?? []) if (t.dataType === ELEM.FLOAT) scan(t.name!, t);
  for (const n of nodes)
    if (
      n.opType === 'Constant' &&
      !(n.domain && n.domain !== 'ai.onnx') &&
      constantElemType(n) === ELEM.FLOAT
    ) {
      const t = floatConstantToTensor(n);
      if (t) scan(n.output![0], t);
    }
  report.outOfRange.tensors = [...beyond.keys()];
  report.outOfRange.maxAbs = Math.max(0, ...beyond.values());
  const outOfRangeRule = (node: NodeProto): Float32Rule | undefined => {
    if (options.outOfRange === 'clamp') return undefined;
    const name = (node.input ?? []).find((x) => beyond.has(x));
    if (name === undefined) return undefined;
    return {
      op: node.opType!,
      inputs: 'all',
      float32Op: true,
      why: `its constant input ${name} holds values beyond float16's range (max |x| ${beyond.get(name)}): the node runs in float32, its output is cast back`,
    };
  };

  // Which float edges stay float32 (node index -> input indices), and the nodes that run in float32.
  const kept = new Map<number, Set<number>>();
  const float32Ops = new Set<number>();
  nodes.forEach((node, ni) => {
    const rule = ruleFor(node) ?? outOfRangeRule(node);
    if (!rule) return;
    if (rule.float32Op) float32Ops.add(ni);
    const idx = rule.inputs === 'all' ? (node.input ?? []).map((_, i) => i) : rule.inputs;
    for (const i of idx) {
      const name = node.input?.[i];
      if (!isFloat(name)) continue;
      if (!kept.has(ni)) kept.set(ni, new Set());
      kept.get(ni)!.add(i);
      report.keptFloat32.push({
        node: node.name || node.output![0],
        op: node.opType!,
        input: i,
        tensor: name!,
        why: rule.why,
      });
    }
  });
  const isKept = (ni: number, i: number) => kept.get(ni)?.has(i) ?? false;
  // Consumers of each tensor: [node index, input index].
  const consumers = new Map<string, [number, number][]>();
  nodes.forEach((n, ni) =>
    (n.input ?? []).forEach((x, i) => {
      if (!x) return;
      if (!consumers.has(x)) consumers.set(x, []);
      consumers.get(x)!.push([ni, i]);
    }),
  );
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name!));
  const redirect = (edges: [number, number][], to: string) => {
    for (const [ni, i] of edges) nodes[ni].input![i] = to;
  };

  // Nodes to insert: before everything, after a node index, after everything.
  const head: NodeProto[] = [];
  const after = new Map<number, NodeProto[]>();
  const tail: NodeProto[] = [];
  const addAfter = (ni: number, n: NodeProto) => {
    if (!after.has(ni)) after.set(ni, []);
    after.get(ni)!.push(n);
  };

  // 1. Constant sources: convert, leave, or split into a float32 and a float16 copy.
  const initializerNames = new Set<string>();
  // Every constant source's name, copies included: on a kept edge these are float32 already, no Cast needed.
  const constantNames = new Set<string>();
  const newInitializers: TensorProto[] = [];
  const constantSource = (
    name: string,
    tensor: TensorProto,
    copy: (newName: string, t: TensorProto) => void,
  ) => {
    const edges = consumers.get(name) ?? [];
    const to32 = edges.filter(([ni, i]) => isKept(ni, i));
    const to16 = edges.filter(([ni, i]) => !isKept(ni, i));
    const outWants32 = graphOutputs.has(name) && keepIo;
    const wants16 = to16.length > 0 || (graphOutputs.has(name) && !keepIo);
    const wants32 = to32.length > 0 || outWants32;
    constantNames.add(name);
    if (!wants16) return false;
    if (!wants32) {
      toHalfTensor(tensor, report);
      return true;
    }
    if (outWants32) {
      const name16 = fresh(`${name}/fp16`);
      const t16 = copyTensor(tensor, name16);
      toHalfTensor(t16, report);
      copy(name16, t16);
      constantNames.add(name16);
      redirect(to16, name16);
    } else {
      const name32 = fresh(`${name}/fp32`);
      copy(name32, copyTensor(tensor, name32));
      constantNames.add(name32);
      toHalfTensor(tensor, report);
      redirect(to32, name32);
    }
    return true;
  };
  for (const t of graph.initializer ?? []) {
    initializerNames.add(t.name!);
    if (t.dataType !== ELEM.FLOAT) continue;
    if (constantSource(t.name!, t, (_, copy) => newInitializers.push(copy))) report.initializers++;
  }
  graph.initializer = [...(graph.initializer ?? []), ...newInitializers];
  nodes.forEach((node, ni) => {
    if ((node.domain && node.domain !== 'ai.onnx') || node.opType !== 'Constant') return;
    if (constantElemType(node) !== ELEM.FLOAT) return;
    const t = floatConstantToTensor(node);
    if (!t) return;
    const converted = constantSource(node.output![0], t, (newName, copy) =>
      addAfter(
        ni,
        onnx.NodeProto.create({
          name: fresh(`${newName}/yqp_fp16_constant`),
          opType: 'Constant',
          output: [newName],
          attribute: [
            onnx.AttributeProto.create({
              name: 'value',
              type: onnx.AttributeProto.AttributeType.TENSOR,
              t: { ...copy, name: undefined },
            }),
          ],
        }),
      ),
    );
    if (converted) report.constants++;
  });
  // Graph inputs listed with initializers (IR < 4 models) follow their initializer's new type.
  const initByName = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  for (const vi of graph.input ?? [])
    if (initByName.has(vi.name!) && vi.type?.tensorType)
      vi.type.tensorType.elemType = initByName.get(vi.name!)!.dataType;

  // 2. Ops that run in float32: their float outputs are cast to float16 for what follows (kept edges read the
  // float32 output itself).
  const float32Outputs = new Map<string, string>();
  for (const ni of float32Ops) {
    const node = nodes[ni];
    node.output!.forEach((o, k) => {
      if (!isFloat(o)) return;
      const o32 = fresh(`${o}/fp32`);
      node.output![k] = o32;
      float32Outputs.set(o, o32);
      addAfter(ni, cast(o32, o, ELEM.FLOAT16));
    });
  }

  // 3. Computed or fed tensors on a kept edge: one Cast to FLOAT each (graph inputs kept float32 need none).
  const producer = new Map<string, number>();
  nodes.forEach((n, ni) => (n.output ?? []).forEach((o) => o && producer.set(o, ni)));
  const graphInputs = new Set(
    (graph.input ?? []).map((i) => i.name!).filter((n) => !initializerNames.has(n)),
  );
  const keptByTensor = new Map<string, [number, number][]>();
  for (const [ni, set] of kept)
    for (const i of set) {
      const name = nodes[ni].input![i];
      if (
        constantNames.has(name) ||
        initializerNames.has(name) ||
        nodes[producer.get(name) ?? -1]?.opType === 'Constant'
      )
        continue;
      if (graphInputs.has(name) && keepIo) continue;
      if (float32Outputs.has(name)) {
        nodes[ni].input![i] = float32Outputs.get(name)!;
        continue;
      }
      if (!keptByTensor.has(name)) keptByTensor.set(name, []);
      keptByTensor.get(name)!.push([ni, i]);
    }
  for (const [name, edges] of keptByTensor) {
    const name32 = fresh(`${name}/fp32`);
    const c = cast(name, name32, ELEM.FLOAT);
    const p = producer.get(name);
    if (p === undefined) head.push(c);
    else addAfter(p, c);
    redirect(edges, name32);
  }

  // 4. The graph's own Cast-to-FLOAT nodes and ConstantOfShape values now make float16.
  nodes.forEach((node, ni) => {
    if (node.domain && node.domain !== 'ai.onnx') return;
    if (node.opType === 'Cast' && !float32Ops.has(ni)) {
      const to = (node.attribute ?? []).find((a) => a.name === 'to');
      if (to && toNumber(to.i) === ELEM.FLOAT) {
        to.i = ELEM.FLOAT16;
        report.casts++;
      }
    }
    if (node.opType === 'ConstantOfShape' && isFloat(node.output?.[0])) {
      const value = (node.attribute ?? []).find((a) => a.name === 'value');
      if (value?.t) toHalfTensor(value.t as TensorProto, report);
      else
        // The default value is a float32 zero: say float16 zero explicitly.
        (node.attribute ??= []).push(
          onnx.AttributeProto.create({
            name: 'value',
            type: onnx.AttributeProto.AttributeType.TENSOR,
            t: onnx.TensorProto.create({ dataType: ELEM.FLOAT16, dims: [1], rawData: new Uint8Array(2) }),
          }),
        );
      report.constants++;
    }
  });

  // 5. Graph inputs: a Cast to FLOAT16 after each float32 one, or the input itself becomes float16.
  for (const vi of graph.input ?? []) {
    const name = vi.name!;
    if (initializerNames.has(name) || vi.type?.tensorType?.elemType !== ELEM.FLOAT) continue;
    if (!keepIo) {
      vi.type.tensorType.elemType = ELEM.FLOAT16;
      continue;
    }
    const to16 = (consumers.get(name) ?? []).filter(
      ([ni, i]) => !isKept(ni, i) && nodes[ni].input![i] === name,
    );
    if (to16.length === 0) continue;
    const name16 = fresh(`${name}/fp16`);
    head.push(cast(name, name16, ELEM.FLOAT16));
    redirect(to16, name16);
  }

  // 6. Graph outputs: the producer writes a float16 tensor and a Cast to FLOAT writes the output.
  let ordered: NodeProto[] = [...head];
  nodes.forEach((n, ni) => ordered.push(n, ...(after.get(ni) ?? [])));
  for (const vi of graph.output ?? []) {
    const name = vi.name!;
    if (vi.type?.tensorType?.elemType !== ELEM.FLOAT) continue;
    const fromNode = ordered.some((n) => (n.output ?? []).includes(name));
    if (!keepIo) {
      // A float32 input passed straight through became float16 with the inputs.
      if (fromNode || graphInputs.has(name) || initializerNames.has(name))
        vi.type.tensorType.elemType = ELEM.FLOAT16;
      continue;
    }
    if (!fromNode) continue; // passed-through inputs and constants stayed float32
    const name16 = fresh(`${name}/fp16`);
    for (const n of ordered) {
      n.output = (n.output ?? []).map((o) => (o === name ? name16 : o));
      n.input = (n.input ?? []).map((x) => (x === name ? name16 : x));
    }
    tail.push(cast(name16, name, ELEM.FLOAT));
  }
  ordered = [...ordered, ...tail];
  graph.node = ordered;

  // 7. value_info: the types the converted graph computes.
  const after16 = inferElemTypes(graph, false);
  for (const vi of graph.valueInfo ?? []) {
    const t = after16.get(vi.name!);
    if (t && vi.type?.tensorType) vi.type.tensorType.elemType = t;
  }
  return report;
}

/** One line for build notes. */
export function describeFp16(report: Fp16Report): string {
  const beyond = report.outOfRange.tensors.length;
  const clamp = report.clamped.values
    ? `, ${report.clamped.values} values beyond +-${FLOAT16_MAX} clamped (in ${report.clamped.tensors.join(', ')}; max |x| ${report.clamped.maxAbs})`
    : beyond
      ? `, ${beyond} constants beyond +-${FLOAT16_MAX} (max |x| ${report.outOfRange.maxAbs}) left float32 with their nodes`
      : ', none out of range';
  return (
    `fp16: ${report.initializers} initializers and ${report.constants} constants to float16${clamp}, ` +
    `${report.flushedToZero} tiny values flushed to zero, ${report.keptFloat32.length} inputs kept float32, ` +
    `${report.castsInserted} Cast nodes added; inputs and outputs ${report.io}`
  );
}
