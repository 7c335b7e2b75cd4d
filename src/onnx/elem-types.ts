import type { GraphProto, NodeProto, TensorProto } from './model.js';
import { toNumber } from './model.js';

/** ONNX TensorProto.DataType values this file and the FP16 converter name. */
export const ELEM = {
  FLOAT: 1,
  UINT8: 2,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
} as const;

const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
const BOOL_OUT = new Set([
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
]);
/** Ops whose outputs take their type from a `dtype` attribute, with the type used when it is absent. */
const DTYPE_ATTR_OUT: Record<string, number | 'input0'> = {
  RandomNormal: ELEM.FLOAT,
  RandomUniform: ELEM.FLOAT,
  RandomNormalLike: 'input0',
  RandomUniformLike: 'input0',
  EyeLike: 'input0',
  Bernoulli: 'input0',
  Multinomial: ELEM.INT32,
};

function attr(node: NodeProto, name: string) {
  return (node.attribute ?? []).find((a) => a.name === name);
}

/** The element type of a Constant node's value, whichever value_* attribute it uses. */
export function constantElemType(node: NodeProto): number | undefined {
  for (const a of node.attribute ?? []) {
    if (a.name === 'value' || a.name === 'sparse_value')
      return (a.t as TensorProto | undefined)?.dataType ?? a.sparseTensor?.values?.dataType ?? undefined;
    if (a.name === 'value_float' || a.name === 'value_floats') return ELEM.FLOAT;
    if (a.name === 'value_int' || a.name === 'value_ints') return ELEM.INT64;
    if (a.name === 'value_string' || a.name === 'value_strings') return ELEM.STRING;
  }
  return undefined;
}

/** Output element types of one node from its inputs' types (ONNX's type rules, for the default domain). */
function outputTypes(node: NodeProto, typeOf: (name: string) => number | undefined): (number | undefined)[] {
  const op = node.opType ?? '';
  const outputs = node.output ?? [];
  const inputs = node.input ?? [];
  const in0 = inputs[0] ? typeOf(inputs[0]) : undefined;
  const all = (t: number | undefined) => outputs.map(() => t);
  if (node.domain && node.domain !== 'ai.onnx') return all(in0); // custom ops: assume type-preserving
  if (op === 'Constant') return all(constantElemType(node));
  if (op === 'ConstantOfShape')
    return all((attr(node, 'value')?.t as TensorProto | undefined)?.dataType ?? ELEM.FLOAT);
  if (op === 'Cast') return all(toNumber(attr(node, 'to')?.i ?? 0) || undefined);
  if (op === 'CastLike') return all(inputs[1] ? typeOf(inputs[1]) : undefined);
  if (INT64_OUT.has(op)) return all(ELEM.INT64);
  if (BOOL_OUT.has(op)) return all(ELEM.BOOL);
  if (op in DTYPE_ATTR_OUT) {
    const dtype = attr(node, 'dtype');
    const fallback = DTYPE_ATTR_OUT[op];
    return all(dtype ? toNumber(dtype.i) : fallback === 'input0' ? in0 : fallback);
  }
  if (op === 'Where') return all(inputs[1] ? typeOf(inputs[1]) : undefined);
  if (op === 'OneHot') return all(inputs[2] ? typeOf(inputs[2]) : undefined);
  if (op === 'DequantizeLinear') return all(inputs[1] ? typeOf(inputs[1]) : undefined);
  if (op === 'QuantizeLinear') return all(inputs[2] ? typeOf(inputs[2]) : ELEM.UINT8);
  if (op === 'DynamicQuantizeLinear') return [ELEM.UINT8, ELEM.FLOAT, ELEM.UINT8];
  if (op === 'MatMulInteger' || op === 'ConvInteger') return all(ELEM.INT32);
  if (op === 'QLinearConv' || op === 'QLinearMatMul') return all(inputs[7] ? typeOf(inputs[7]) : undefined);
  // Second outputs that are indices or masks.
  if (op === 'MaxPool' || op === 'TopK') return outputs.map((_, i) => (i === 0 ? in0 : ELEM.INT64));
  if (op === 'Unique') return outputs.map((_, i) => (i === 0 ? in0 : ELEM.INT64));
  if (op === 'Dropout') return outputs.map((_, i) => (i === 0 ? in0 : ELEM.BOOL));
  // Everything else (elementwise, Conv, Concat, Transpose, Reshape, Gather, Pad, Slice, Range, ...) keeps the
  // type of its first input.
  return all(in0);
}

/**
 * Element types of every tensor of a graph: declared ones (inputs, initializers, outputs and, when asked,
 * value_info) and those of node outputs, propagated in node order with ONNX's type rules. Nodes with subgraphs
 * (If, Loop, Scan) are not looked into. Unknown types stay absent.
 */
export function inferElemTypes(graph: GraphProto, useValueInfo = true): Map<string, number> {
  const types = new Map<string, number>();
  const declare = (name: string | null | undefined, t: number | null | undefined) => {
    if (name && t) types.set(name, t);
  };
  for (const t of graph.initializer ?? []) declare(t.name, t.dataType);
  for (const vi of graph.input ?? []) declare(vi.name, vi.type?.tensorType?.elemType);
  if (useValueInfo) for (const vi of graph.valueInfo ?? []) declare(vi.name, vi.type?.tensorType?.elemType);
  const typeOf = (name: string) => types.get(name);
  for (const node of graph.node ?? []) {
    const out = outputTypes(node, typeOf);
    (node.output ?? []).forEach((name, i) => {
      if (name && !types.has(name)) declare(name, out[i]);
    });
  }
  for (const vi of graph.output ?? [])
    if (!types.has(vi.name ?? '')) declare(vi.name, vi.type?.tensorType?.elemType);
  return types;
}
