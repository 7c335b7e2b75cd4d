import { invalidParameter } from './errors.js';

/** Where a model runs: onnxruntime's CPU provider, or a CUDA GPU (onnxruntime's CUDA provider, TensorRT). */
export interface DeviceSpec {
  kind: 'cpu' | 'cuda';
  /** GPU ordinal (0 on the CPU). */
  id: number;
}

export const CPU: DeviceSpec = { kind: 'cpu', id: 0 };

/**
 * 'cpu', 'cuda' (GPU 0), 'cuda:N', or a GPU ordinal (N, as loadModel's `device` took before it named a kind).
 * `argument` names the option in the error.
 */
export function parseDevice(value: unknown, argument = 'device'): DeviceSpec {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return { kind: 'cuda', id: value };
  if (typeof value === 'string') {
    if (value === 'cpu') return CPU;
    const m = /^cuda(?::(\d{1,3}))?$/.exec(value);
    if (m) return { kind: 'cuda', id: m[1] === undefined ? 0 : Number(m[1]) };
  }
  throw invalidParameter(argument, "'cpu', 'cuda' or 'cuda:N'", value);
}

export function formatDevice(d: DeviceSpec): string {
  return d.kind === 'cpu' ? 'cpu' : `cuda:${d.id}`;
}
