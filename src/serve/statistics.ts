/**
 * Triton's statistics extension: per model version, request outcomes and times, queue and compute times from
 * the scheduler's batches, and the sum of several processes' figures (`serve --http-workers N`).
 */
import type { Model } from '../model.js';

interface Bucket {
  count: number;
  ns: number;
}

interface Stats {
  success: Bucket;
  fail: Bucket;
  queue: Bucket;
  computeInfer: Bucket;
  inferenceCount: number;
  executionCount: number;
  lastInference: number;
}

function newStats(): Stats {
  return {
    success: { count: 0, ns: 0 },
    fail: { count: 0, ns: 0 },
    queue: { count: 0, ns: 0 },
    computeInfer: { count: 0, ns: 0 },
    inferenceCount: 0,
    executionCount: 0,
    lastInference: 0,
  };
}

/** One model version's figures in the extension's JSON shape. */
export interface ModelStats {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<'success' | 'fail' | 'queue' | 'compute_infer', Bucket>;
}

/** The figures of the models this process serves. */
export class ModelStatistics {
  private readonly stats = new Map<Model, Stats>();

  /** Starts counting a model's batches (called once it is loaded). */
  follow(model: Model): void {
    const s = newStats();
    this.stats.set(model, s);
    model.scheduler.on('batch', (e) => {
      s.executionCount++;
      s.inferenceCount += e.size;
      s.computeInfer.count += e.requests;
      s.computeInfer.ns += Math.round(e.computeMs * 1e6) * e.requests;
      for (const q of e.queueMs) {
        s.queue.count++;
        s.queue.ns += Math.round(q * 1e6);
      }
    });
  }

  /** One finished request of a model: a success or a failure, and how long it took. */
  record(model: Model, ok: boolean, seconds: number): void {
    const s = this.stats.get(model);
    if (!s) return;
    const bucket = ok ? s.success : s.fail;
    bucket.count++;
    bucket.ns += Math.round(seconds * 1e9);
    s.lastInference = Date.now();
  }

  of(models: Model[]): ModelStats[] {
    return models.map((m) => {
      const s = this.stats.get(m) ?? newStats();
      return {
        name: m.name,
        version: String(m.version),
        last_inference: s.lastInference,
        inference_count: s.inferenceCount,
        execution_count: s.executionCount,
        inference_stats: {
          success: s.success,
          fail: s.fail,
          queue: s.queue,
          compute_infer: s.computeInfer,
        },
      };
    });
  }
}

/** One model version's key among statistics (a name cannot hold NUL). */
export const statsKey = (name: string, version: string | number) => `${name}\u0000${version}`;

/** Several processes' statistics summed per model and version (Triton's statistics extension shape). */
export function mergeStats(reports: ModelStats[][], keep: (s: ModelStats) => boolean): ModelStats[] {
  const merged = new Map<string, ModelStats>();
  for (const report of reports)
    for (const s of Array.isArray(report) ? report : []) {
      if (!keep(s)) continue;
      const key = statsKey(s.name, s.version);
      const into = merged.get(key);
      if (!into) {
        merged.set(key, structuredClone(s));
        continue;
      }
      into.last_inference = Math.max(into.last_inference, s.last_inference);
      into.inference_count += s.inference_count;
      into.execution_count += s.execution_count;
      for (const k of Object.keys(into.inference_stats) as (keyof ModelStats['inference_stats'])[]) {
        into.inference_stats[k].count += s.inference_stats[k].count;
        into.inference_stats[k].ns += s.inference_stats[k].ns;
      }
    }
  return [...merged.values()];
}
