/**
 * The load generator, in the manner of Triton's perf_analyzer: closed loop at a fixed concurrency (each
 * worker sends its next request when the previous answers) or open loop at a fixed request rate (requests
 * leave on schedule whatever the answers do), a warm-up, then a measured window.
 */
import { expectNonNegativeNumber, expectPositiveInteger } from '../errors.js';
import type { BenchClient } from './client.js';

export interface LoadPoint {
  /** Closed loop: requests kept in flight. */
  concurrency?: number;
  /** Open loop: requests per second sent. */
  requestRate?: number;
  requests: number;
  errors: number;
  /** First error message, if any. */
  firstError?: string;
  durationS: number;
  /** Completed requests per second (times batch = inferences per second). */
  throughput: number;
  latencyMs: { mean: number; p50: number; p90: number; p95: number; p99: number; min: number; max: number };
  /** Every measured latency (ms), when LoadOptions.keepLatencies asked for them (to merge several generators). */
  latenciesMs?: number[];
}

export interface LoadOptions {
  /** Measured window in ms. */
  durationMs: number;
  /** Unmeasured warm-up in ms before the window. */
  warmupMs?: number;
  /** Return every latency too (LoadPoint.latenciesMs). */
  keepLatencies?: boolean;
}

/** Nearest-rank percentile of a sorted array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

function summarize(
  latencies: number[],
  errors: number,
  durationS: number,
  firstError?: string,
  keep?: boolean,
) {
  const sorted = Float64Array.from(latencies).sort();
  const n = sorted.length;
  const mean = n ? latencies.reduce((a, b) => a + b, 0) / n : NaN;
  return {
    requests: n,
    errors,
    firstError,
    durationS,
    throughput: n / durationS,
    latencyMs: {
      mean,
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      min: n ? sorted[0] : NaN,
      max: n ? sorted[n - 1] : NaN,
    },
    ...(keep ? { latenciesMs: latencies } : {}),
  };
}

/**
 * One point from the points of several load generators run side by side over the same window (each with
 * keepLatencies): requests and errors add up, percentiles come from all latencies together.
 */
export function mergePoints(points: LoadPoint[]): LoadPoint {
  const latencies = points.flatMap((p) => p.latenciesMs ?? []);
  const errors = points.reduce((a, p) => a + p.errors, 0);
  const merged = summarize(
    latencies,
    errors,
    points[0].durationS,
    points.find((p) => p.firstError)?.firstError,
  );
  const concurrency = points.every((p) => p.concurrency !== undefined)
    ? points.reduce((a, p) => a + p.concurrency!, 0)
    : undefined;
  const requestRate = points.every((p) => p.requestRate !== undefined)
    ? points.reduce((a, p) => a + p.requestRate!, 0)
    : undefined;
  return {
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(requestRate !== undefined ? { requestRate } : {}),
    ...merged,
  };
}

/** Keeps `concurrency` requests in flight; counts those that complete inside the window. */
export async function runConcurrency(
  client: BenchClient,
  concurrency: number,
  options: LoadOptions,
): Promise<LoadPoint> {
  expectPositiveInteger('concurrency', concurrency);
  expectPositiveInteger('durationMs', options.durationMs);
  const warmupMs = expectNonNegativeNumber('warmupMs', options.warmupMs ?? 0);
  const t0 = performance.now();
  const windowStart = t0 + warmupMs;
  const windowEnd = windowStart + options.durationMs;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (performance.now() < windowEnd) {
      const start = performance.now();
      try {
        await client.infer();
        const end = performance.now();
        if (start >= windowStart && end <= windowEnd) latencies.push(end - start);
      } catch (e) {
        if (start >= windowStart) {
          errors++;
          firstError ??= (e as Error).message;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return {
    concurrency,
    ...summarize(latencies, errors, options.durationMs / 1000, firstError, options.keepLatencies),
  };
}

/** Sends `rate` requests per second on a fixed schedule, whatever the answers do. */
export async function runRate(client: BenchClient, rate: number, options: LoadOptions): Promise<LoadPoint> {
  expectNonNegativeNumber('requestRate', rate);
  expectPositiveInteger('durationMs', options.durationMs);
  const warmupMs = expectNonNegativeNumber('warmupMs', options.warmupMs ?? 0);
  const interval = 1000 / rate;
  const t0 = performance.now();
  const windowStart = t0 + warmupMs;
  const windowEnd = windowStart + options.durationMs;
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let sent = 0;
  while (true) {
    const due = t0 + sent * interval;
    if (due >= windowEnd) break;
    const wait = due - performance.now();
    // Yield before every send, even when it is already due: answers are then read as they arrive instead of
    // waiting behind a burst of sends (which would add the generator's own delay to their latency).
    if (wait > 1) await new Promise((r) => setTimeout(r, wait - 0.5));
    else await new Promise((r) => setImmediate(r));
    if (due - performance.now() > 0.05) continue;
    sent++;
    const start = performance.now();
    pending.push(
      client.infer().then(
        () => {
          if (start >= windowStart) latencies.push(performance.now() - start);
        },
        (e: unknown) => {
          if (start >= windowStart) {
            errors++;
            firstError ??= (e as Error).message;
          }
        },
      ),
    );
  }
  await Promise.all(pending);
  // Open loop: every request sent in the window counts, even if it answered after it.
  return {
    requestRate: rate,
    ...summarize(latencies, errors, options.durationMs / 1000, firstError, options.keepLatencies),
  };
}

export interface SweepOptions extends LoadOptions {
  concurrency?: number[];
  requestRate?: number[];
  onPoint?: (p: LoadPoint) => void;
}

export async function sweep(client: BenchClient, options: SweepOptions): Promise<LoadPoint[]> {
  const points: LoadPoint[] = [];
  for (const c of options.concurrency ?? []) {
    const p = await runConcurrency(client, c, options);
    points.push(p);
    options.onPoint?.(p);
  }
  for (const r of options.requestRate ?? []) {
    const p = await runRate(client, r, options);
    points.push(p);
    options.onPoint?.(p);
  }
  return points;
}
