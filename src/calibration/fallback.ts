import type { ModelProto } from '../onnx/model.js';
import { excludeFromPlan, insertQdq, planQdq, type QdqResult } from '../onnx/qdq.js';
import type { AccuracyProbe, AccuracyResult } from './accuracy.js';
import { cloneModel } from './equalize.js';

/**
 * Layer sensitivity and automatic fallback: each quantized activation is left out alone (no Q/DQ around it,
 * its readers' weights float) and the validation metric measured; the tensors whose removal helps the most
 * are then left unquantized one by one, most damaging first, until the target holds. That is the per-layer
 * sensitivity sweep of ModelOpt's and TensorRT's accuracy-debugging guides, made automatic.
 */
export interface TensorSensitivity {
  name: string;
  /** The metric with only this tensor left unquantized, and its gain over the fully quantized model. */
  score: number;
  gain: number;
  result: AccuracyResult;
}

export interface FallbackStep {
  /** The tensor left unquantized at this step. */
  name: string;
  /** Its gain when left out alone (what quantizing it cost). */
  cost: number;
  /** The model's result with this and every earlier tensor unquantized. */
  result: AccuracyResult;
}

export interface FallbackResult {
  /** The fully quantized model's result. */
  initial: AccuracyResult;
  /** The result of the model written (after the fallback, if any). */
  final: AccuracyResult;
  /** Tensors left unquantized, in order. */
  fallback: FallbackStep[];
  /** Every tensor's sensitivity, most damaging first (empty when the target held without a fallback). */
  sensitivity: TensorSensitivity[];
  seconds: number;
}

/** The Q/DQ model with `excluded` left unquantized. */
export function qdqModel(
  fp32: ModelProto,
  amax: ReadonlyMap<string, number>,
  excluded: Iterable<string> = [],
): { proto: ModelProto; qdq: QdqResult } {
  const proto = cloneModel(fp32);
  const plan = excludeFromPlan(planQdq(proto), excluded);
  return { proto, qdq: insertQdq(proto, plan, amax) };
}

export interface FallbackOptions {
  /** At most this many tensors are left unquantized (default: a quarter of them). */
  maxFallback?: number;
  /** Measure every tensor's sensitivity even when the target holds. */
  sensitivity?: boolean;
  onProgress?: (message: string) => void;
}

export async function fallbackUntilTarget(
  fp32: ModelProto,
  amax: ReadonlyMap<string, number>,
  probe: AccuracyProbe,
  options: FallbackOptions = {},
): Promise<FallbackResult> {
  const started = performance.now();
  const progress = options.onProgress ?? (() => {});
  const tensors = [...amax.keys()];
  const initial = await probe.evaluate(qdqModel(fp32, amax).proto);
  const done = (final: AccuracyResult, fallback: FallbackStep[], sensitivity: TensorSensitivity[]) => ({
    initial,
    final,
    fallback,
    sensitivity,
    seconds: (performance.now() - started) / 1000,
  });
  const limit = options.maxFallback ?? Math.max(1, Math.ceil(tensors.length / 4));
  if ((initial.pass || limit === 0) && !options.sensitivity) return done(initial, [], []);
  progress(
    `${initial.pass ? 'INT8 meets the target' : 'INT8 misses the target on the validation frames'}; measuring the sensitivity of ${tensors.length} tensors`,
  );
  const sensitivity: TensorSensitivity[] = [];
  for (const [i, name] of tensors.entries()) {
    const result = await probe.evaluate(qdqModel(fp32, amax, [name]).proto);
    sensitivity.push({ name, score: result.score, gain: result.score - initial.score, result });
    if ((i + 1) % 8 === 0) progress(`sensitivity ${i + 1}/${tensors.length}`);
  }
  // Most damaging first; ties by output cosine, which moves before the face count does.
  sensitivity.sort((a, b) => b.gain - a.gain || b.result.cosine - a.result.cosine);
  const excluded: string[] = [];
  const fallback: FallbackStep[] = [];
  let final = initial;
  if (initial.pass) return done(initial, [], sensitivity);
  for (const s of sensitivity.slice(0, limit)) {
    excluded.push(s.name);
    final = await probe.evaluate(qdqModel(fp32, amax, excluded).proto);
    fallback.push({ name: s.name, cost: s.gain, result: final });
    progress(`left ${s.name} unquantized: ${final.pass ? 'target met' : 'target still missed'}`);
    if (final.pass) break;
  }
  return done(final, fallback, sensitivity);
}
