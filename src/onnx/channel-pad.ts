import {
  int64Initializer,
  onnx,
  readFloats,
  readInt64s,
  toNumber,
  type GraphProto,
  type NodeProto,
  type TensorProto,
} from './model.js';

/**
 * Channel padding, as TFLite and Barracuda exporters write it: Concat(axis 1) of one tensor and ConstantOfShape
 * zeros (BlazeFace's residual blocks have eleven). With a dynamic batch the zeros' shape is computed at run time,
 * so onnxruntime's layout transformer cannot move a transpose through that Concat; a Pad with constant pads it
 * can, and on uint8 data it needs no requantization.
 */

/** The int64 values of a shape tensor; undefined entries exist but are known only at run time (the batch). */
function shapeValues(
  name: string,
  inits: ReadonlyMap<string, TensorProto>,
  producer: ReadonlyMap<string, NodeProto>,
  depth = 0,
): (number | undefined)[] | undefined {
  const init = inits.get(name);
  if (init) return init.dataType === 7 ? readInt64s(init) : undefined;
  const p = producer.get(name);
  if (!p || depth > 4) return undefined;
  if (p.opType === 'Constant') {
    const t = (p.attribute ?? []).find((a) => a.name === 'value')?.t;
    return t && t.dataType === 7 ? readInt64s(t) : undefined;
  }
  // dynamic-batch.ts writes Concat(Gather(Shape(input), [0]), rest).
  if (p.opType === 'Gather') {
    const idx = inits.get((p.input ?? [])[1] ?? '');
    return idx && readInt64s(idx).length === 1 ? [undefined] : undefined;
  }
  if (p.opType === 'Concat') {
    const out: (number | undefined)[] = [];
    for (const x of p.input ?? []) {
      const v = shapeValues(x, inits, producer, depth + 1);
      if (!v) return undefined;
      out.push(...v);
    }
    return out;
  }
  return undefined;
}

/** The channel count (dim 1) and rank of ConstantOfShape float zeros, or undefined. */
function zerosChannels(
  name: string,
  inits: ReadonlyMap<string, TensorProto>,
  producer: ReadonlyMap<string, NodeProto>,
): { channels: number; rank: number } | undefined {
  const p = producer.get(name);
  if (!p || p.opType !== 'ConstantOfShape') return undefined;
  const value = (p.attribute ?? []).find((a) => a.name === 'value')?.t;
  if (value && (value.dataType !== 1 || readFloats(value).some((v) => v !== 0))) return undefined;
  const shape = shapeValues((p.input ?? [])[0] ?? '', inits, producer);
  const c = shape?.[1];
  return shape && c !== undefined && shape.length >= 3 ? { channels: c, rank: shape.length } : undefined;
}

export interface ChannelPad {
  src: string;
  /** Zero channels before and after src. */
  before: number;
  after: number;
  rank: number;
}

/** The channel pad a Concat node is, or undefined. */
function concatChannelPad(
  node: NodeProto,
  inits: ReadonlyMap<string, TensorProto>,
  producer: ReadonlyMap<string, NodeProto>,
): ChannelPad | undefined {
  if (node.opType !== 'Concat') return undefined;
  if (toNumber((node.attribute ?? []).find((a) => a.name === 'axis')?.i) !== 1) return undefined;
  let src: string | undefined;
  let before = 0;
  let after = 0;
  let rank = 0;
  for (const x of node.input ?? []) {
    const z = zerosChannels(x, inits, producer);
    if (!z) {
      if (src !== undefined) return undefined; // two data inputs: a real concatenation
      src = x;
      continue;
    }
    if (rank && z.rank !== rank) return undefined;
    rank = z.rank;
    if (src === undefined) before += z.channels;
    else after += z.channels;
  }
  return src !== undefined && rank > 0 && before + after > 0 ? { src, before, after, rank } : undefined;
}

/** The channel pad a Pad node is (constant mode, constant pads on axis 1 only, value 0), or undefined. */
export function channelPadOf(
  node: NodeProto,
  inits: ReadonlyMap<string, TensorProto>,
): ChannelPad | undefined {
  if (node.opType !== 'Pad') return undefined;
  const mode = (node.attribute ?? []).find((a) => a.name === 'mode')?.s;
  if (mode && new TextDecoder().decode(mode) !== 'constant') return undefined;
  const [src, padsName, valueName] = node.input ?? [];
  const padsInit = inits.get(padsName ?? '');
  if (!src || !padsInit) return undefined;
  if (valueName) {
    const v = inits.get(valueName);
    if (!v || v.dataType !== 1 || readFloats(v).some((x) => x !== 0)) return undefined;
  }
  const pads = readInt64s(padsInit);
  const rank = pads.length / 2;
  if (rank < 3 || pads.some((p, i) => i % rank !== 1 && p !== 0) || pads.some((p) => p < 0)) return undefined;
  return { src, before: pads[1], after: pads[rank + 1], rank };
}

/** The pads input of a channel Pad. */
export function channelPads(pad: Pick<ChannelPad, 'before' | 'after' | 'rank'>): number[] {
  const begins = new Array<number>(pad.rank).fill(0);
  const ends = [...begins];
  begins[1] = pad.before;
  ends[1] = pad.after;
  return [...begins, ...ends];
}

/**
 * Rewrites every channel-pad Concat of `graph` into a Pad of the same output (constant zeros); drops the zeros
 * and their shape arithmetic. Returns how many were rewritten. The function of the graph is unchanged.
 */
export function concatPadsToPad(graph: GraphProto): number {
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) producer.set(o, n);
  const taken = new Set([...inits.keys()]);
  let rewritten = 0;
  graph.node = (graph.node ?? []).map((n) => {
    const pad = concatChannelPad(n, inits, producer);
    if (!pad) return n;
    let name = `${n.output![0]}_pads`;
    for (let i = 1; taken.has(name); i++) name = `${n.output![0]}_pads_${i}`;
    taken.add(name);
    graph.initializer = [...(graph.initializer ?? []), int64Initializer(name, channelPads(pad))];
    rewritten++;
    return onnx.NodeProto.create({ name: n.name, opType: 'Pad', input: [pad.src, name], output: n.output });
  });
  if (rewritten > 0) pruneDeadNodes(graph);
  return rewritten;
}

/** Drops the nodes no graph output depends on, then the initializers no node reads. */
export function pruneDeadNodes(graph: GraphProto): number {
  const nodes = graph.node ?? [];
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const live = new Set<number>();
  const stack = (graph.output ?? []).map((o) => o.name ?? '');
  while (stack.length > 0) {
    const t = stack.pop()!;
    const i = producer.get(t);
    if (i === undefined || live.has(i)) continue;
    live.add(i);
    stack.push(...(nodes[i].input ?? []).filter((x) => x));
  }
  graph.node = nodes.filter((_, i) => live.has(i));
  const read = new Set(graph.node.flatMap((n) => n.input ?? []));
  for (const o of graph.output ?? []) read.add(o.name ?? '');
  const unread = new Set((graph.initializer ?? []).map((t) => t.name ?? '').filter((t) => !read.has(t)));
  graph.initializer = (graph.initializer ?? []).filter((t) => !unread.has(t.name ?? ''));
  // Old models list initializers among the graph inputs too.
  graph.input = (graph.input ?? []).filter((i) => !unread.has(i.name ?? ''));
  return nodes.length - live.size;
}
