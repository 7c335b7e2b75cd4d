import { channelPadOf, channelPads, pruneDeadNodes } from './channel-pad.js';
import {
  int64Initializer,
  onnx,
  readFloats,
  toNumber,
  type GraphProto,
  type NodeProto,
  type TensorProto,
} from './model.js';
import { floatTensor } from './qdq.js';

/**
 * Widens the channel count of a model's inner activations to a multiple of `align` with channels that are
 * always zero: Conv weights and biases get zero output channels (and zero input channels where they read a
 * widened tensor), depthwise Convs take the new channel count as their group, channel Pads pad less. The model
 * computes the same function on the same real channels (the extra ones are exactly 0, also after quantization,
 * whose zero point represents 0 exactly).
 *
 * Why: MLAS (onnxruntime's CPU kernels) runs a uint8 x int8 QLinearConv on its fast symmetric path (AVX512-VNNI
 * and AVX2 kernels with fused requantization) only when a depthwise Conv has a multiple of 16 channels and a
 * regular Conv multiples of 4; BlazeFace's 24, 28, 36, 42, 56, 72 and 88 channels otherwise fall to the generic
 * kernels, whose depthwise Convs are slower than the float ones. Widening to 16 also makes most of BlazeFace's
 * channel pads empty (24 -> 28 becomes 32 -> 32).
 *
 * Ops a widened tensor may reach: Conv (input 0), Relu, MaxPool, Add (both inputs widened alike) and channel Pads.
 * Conv outputs read by anything else (the heads, through Transpose and Reshape) keep their channels. When a
 * widened tensor would reach any other op or a graph output, nothing is changed and the reason is returned.
 */
export interface WidenResult {
  /** Conv outputs widened. */
  widened: number;
  /** Channel pads left empty (rewritten to Identity). */
  padsRemoved: number;
  /** Why the graph was left as it was. */
  skipped?: string;
}

const PASS_THROUGH = new Set(['Relu', 'MaxPool']);

const ceilTo = (c: number, align: number) => Math.ceil(c / align) * align;

function attrInt(n: NodeProto, name: string, dflt: number): number {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? toNumber(a.i) : dflt;
}

/** Copies a [O, I, ...k] float weight into [O2, I2, ...k] with zeros elsewhere. */
function padWeight(w: Float32Array, dims: number[], o2: number, i2: number): Float32Array {
  const [o, i, ...k] = dims;
  const ks = k.reduce((a, b) => a * b, 1);
  const out = new Float32Array(o2 * i2 * ks);
  for (let a = 0; a < o; a++)
    for (let b = 0; b < i; b++)
      out.set(w.subarray((a * i + b) * ks, (a * i + b + 1) * ks), (a * i2 + b) * ks);
  return out;
}

export function widenChannels(graph: GraphProto, align = 16): WidenResult {
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const readers = new Map<string, NodeProto[]>();
  for (const n of nodes) for (const x of n.input ?? []) readers.set(x, [...(readers.get(x) ?? []), n]);
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  // Whether every op downstream of a tensor, through pass-through ops, can take extra channels.
  const widenable = (t: string, depth = 0): boolean =>
    !outputs.has(t) &&
    depth < 8 &&
    (readers.get(t) ?? []).every((r) =>
      PASS_THROUGH.has(r.opType ?? '')
        ? widenable(r.output![0], depth + 1)
        : r.opType === 'Conv' || r.opType === 'Add' || (r.opType === 'Pad' && r.input![0] === t),
    );
  /** Real and widened channels of the Conv outputs and of what is computed from them. */
  const width = new Map<string, { c: number; w: number }>();
  const plan: { node: NodeProto; apply: () => void }[] = [];
  const newInits: TensorProto[] = [];
  const taken = new Set(inits.keys());
  const unique = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  let widened = 0;
  let padsRemoved = 0;
  for (const n of nodes) {
    const op = n.opType ?? '';
    const ins = n.input ?? [];
    const wide = ins.some((x) => {
      const v = width.get(x);
      return v !== undefined && v.w !== v.c;
    });
    const y = (n.output ?? [])[0];
    if (op === 'Conv') {
      const w = inits.get(ins[1] ?? '');
      const b = ins[2] ? inits.get(ins[2]) : undefined;
      if (!w || w.dataType !== 1 || (ins[2] && (!b || b.dataType !== 1)))
        return { widened: 0, padsRemoved: 0, skipped: `${n.name}: weights are not float initializers` };
      const dims = (w.dims ?? []).map(toNumber);
      const [o, i] = dims;
      const group = attrInt(n, 'group', 1);
      const inW = width.get(ins[0])?.w ?? i * group;
      let outW: number;
      let inPerGroup = i;
      let newGroup = group;
      if (group > 1) {
        if (i !== 1 || o !== group) {
          if (inW !== i * group) return { widened: 0, padsRemoved: 0, skipped: `${n.name}: grouped Conv` };
          continue;
        }
        outW = inW; // depthwise: one filter per (widened) channel
        newGroup = inW;
      } else {
        inPerGroup = inW;
        outW = widenable(y) ? ceilTo(o, align) : o;
      }
      width.set(y, { c: o, w: outW });
      if (outW === o && inPerGroup === i && newGroup === group) continue;
      if (outW !== o) widened++;
      plan.push({
        node: n,
        apply: () => {
          const wName = unique(`${ins[1]}_widened`);
          const wDims = [outW, inPerGroup, ...dims.slice(2)];
          newInits.push(floatTensor(wName, padWeight(readFloats(w), dims, outW, inPerGroup), wDims));
          n.input![1] = wName;
          if (b) {
            const bName = unique(`${ins[2]}_widened`);
            const bias = new Float32Array(outW);
            bias.set(readFloats(b));
            newInits.push(floatTensor(bName, bias, [outW]));
            n.input![2] = bName;
          }
          if (newGroup !== group)
            n.attribute = [
              ...(n.attribute ?? []).filter((a) => a.name !== 'group'),
              onnx.AttributeProto.create({ name: 'group', type: 2, i: newGroup }),
            ];
        },
      });
      continue;
    }
    if (PASS_THROUGH.has(op)) {
      const src = width.get(ins[0]);
      if (src) width.set(y, src);
      continue;
    }
    if (op === 'Add' && ins.some((x) => width.has(x))) {
      const [a, b] = ins.map((x) => width.get(x));
      if (!a || !b || a.c !== b.c || a.w !== b.w)
        return { widened: 0, padsRemoved: 0, skipped: `${n.name}: Add of differently widened inputs` };
      width.set(y, a);
      continue;
    }
    const pad = op === 'Pad' ? channelPadOf(n, inits) : undefined;
    const src = pad ? width.get(ins[0]) : undefined;
    if (pad && src) {
      const c = src.c + pad.before + pad.after;
      const w = widenable(y) ? ceilTo(c, align) : c;
      const after = w - src.w - pad.before;
      if (after < 0) return { widened: 0, padsRemoved: 0, skipped: `${n.name}: pad narrower than its input` };
      width.set(y, { c, w });
      if (after === pad.after) continue;
      plan.push({
        node: n,
        apply: () => {
          if (pad.before + after === 0) {
            // An empty pad: its readers read its input.
            alias.set(y, ins[0]);
            padsRemoved++;
            return;
          }
          const name = unique(`${ins[1]}_widened`);
          newInits.push(int64Initializer(name, channelPads({ ...pad, after })));
          n.input![1] = name;
        },
      });
      continue;
    }
    if (!wide) continue;
    return { widened: 0, padsRemoved: 0, skipped: `${n.name}: ${op} reads a widened tensor` };
  }
  for (const o of outputs) {
    const x = width.get(o);
    if (x && x.w !== x.c)
      return { widened: 0, padsRemoved: 0, skipped: `graph output ${o} would be widened` };
  }
  const alias = new Map<string, string>();
  for (const p of plan) p.apply();
  graph.node = nodes.filter((n) => !alias.has((n.output ?? [])[0]));
  for (const n of graph.node) n.input = (n.input ?? []).map((x) => alias.get(x) ?? x);
  graph.initializer = [...(graph.initializer ?? []), ...newInits];
  pruneDeadNodes(graph); // the narrow weights and the emptied pads' constants
  // value_info records the old channel counts; onnxruntime infers the shapes again.
  if (plan.length > 0) graph.valueInfo = [];
  return { widened, padsRemoved };
}
