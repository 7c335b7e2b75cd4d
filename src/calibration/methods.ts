import type { ModelProto } from '../onnx/model.js';
import { QUANTIZABLE_OPS } from '../onnx/qdq.js';
import type { CalibrationMethod, TensorMethod } from './calibrators.js';

/**
 * The per-tensor calibration choice of --calib-method auto (the default).
 *
 * TensorRT's own default (EntropyCalibration2) fits every activation by KL divergence; ModelOpt's INT8 default
 * is max calibration for every tensor. Entropy keeps the resolution of the bulk and clips the tail, which is
 * right for an inner activation whose tail is noise, and wrong where the tail is the signal: the tensors
 * feeding a detector's output heads (the high scores are the tail) and tensors whose KL threshold would clip
 * most of the observed range (heavy tails that a single scene calibrates badly). On BlazeFace calibrated on one
 * scene, entropy everywhere loses 23 of 25 faces on other people's photos, and one tensor alone
 * (depthwise_conv2d_15, entropy/max 0.41) does it; max there and entropy elsewhere keeps them.
 */
export type TensorClass = 'model-input' | 'head-input' | 'heavy-tail' | 'inner';

/** A tensor is heavy-tailed when its entropy threshold is below this share of its largest |x|. */
export const HEAVY_TAIL_RATIO = 0.5;

/** The method auto gives each tensor class. */
export const AUTO_METHODS: Record<TensorClass, TensorMethod> = {
  'model-input': 'max',
  'head-input': 'max',
  'heavy-tail': 'max',
  inner: 'entropy',
};

/** Ops that move or reshape values without computing new ones (a head's output reaches the graph output through them). */
const LAYOUT_OPS = new Set([
  'Reshape',
  'Transpose',
  'Concat',
  'Identity',
  'Squeeze',
  'Unsqueeze',
  'Flatten',
  'Sigmoid',
  'Softmax',
]);

/**
 * Graph facts the classes need: tensors computed from a graph input by layout ops alone (the image itself) and
 * the activations read by a quantizable op whose output reaches a graph output through layout ops only.
 */
export function graphRoles(proto: ModelProto): { modelInputs: Set<string>; headInputs: Set<string> } {
  const g = proto.graph!;
  const nodes = g.node ?? [];
  const inits = new Set((g.initializer ?? []).map((t) => t.name ?? ''));
  const modelInputs = new Set((g.input ?? []).map((i) => i.name ?? '').filter((n) => !inits.has(n)));
  for (const n of nodes)
    if (LAYOUT_OPS.has(n.opType ?? '') && (n.input ?? []).some((i) => modelInputs.has(i)))
      for (const o of n.output ?? []) modelInputs.add(o);
  const readers = new Map<string, { opType: string; outputs: string[] }[]>();
  for (const n of nodes)
    for (const i of n.input ?? []) {
      const list = readers.get(i) ?? [];
      list.push({ opType: n.opType ?? '', outputs: n.output ?? [] });
      readers.set(i, list);
    }
  const outputs = new Set((g.output ?? []).map((o) => o.name ?? ''));
  const reachesOutput = (t: string, depth = 0): boolean => {
    if (outputs.has(t)) return true;
    if (depth > 16) return false;
    const r = readers.get(t) ?? [];
    return (
      r.length > 0 &&
      r.every((x) => LAYOUT_OPS.has(x.opType) && x.outputs.some((o) => reachesOutput(o, depth + 1)))
    );
  };
  const headInputs = new Set<string>();
  for (const n of nodes)
    if (QUANTIZABLE_OPS.has(n.opType ?? '') && (n.output ?? []).some((o) => reachesOutput(o)))
      headInputs.add((n.input ?? [])[0]);
  return { modelInputs, headInputs };
}

export interface TensorChoice {
  method: TensorMethod;
  /** Why: the class under auto, "--calib-method <m>" or "--calib-tensor-method". */
  reason: string;
  tensorClass: TensorClass;
}

/** Each tensor's method: an explicit per-tensor override, then one method for all, then auto's class rule. */
export function chooseMethods(
  proto: ModelProto,
  tensors: readonly { name: string; amax: Record<TensorMethod, number> }[],
  method: CalibrationMethod,
  overrides: Readonly<Record<string, TensorMethod>> = {},
): Map<string, TensorChoice> {
  const roles = graphRoles(proto);
  const out = new Map<string, TensorChoice>();
  for (const t of tensors) {
    const tensorClass: TensorClass = roles.modelInputs.has(t.name)
      ? 'model-input'
      : roles.headInputs.has(t.name)
        ? 'head-input'
        : t.amax.max > 0 && t.amax.entropy < HEAVY_TAIL_RATIO * t.amax.max
          ? 'heavy-tail'
          : 'inner';
    const forced = overrides[t.name];
    if (forced) out.set(t.name, { method: forced, reason: '--calib-tensor-method', tensorClass });
    else if (method !== 'auto') out.set(t.name, { method, reason: `--calib-method ${method}`, tensorClass });
    else out.set(t.name, { method: AUTO_METHODS[tensorClass], reason: `auto: ${tensorClass}`, tensorClass });
  }
  return out;
}
