/**
 * Warm-up at load, as Triton's model_warmup: every context runs every batch size a batcher can form before the
 * model is ready. A context's first run of a shape is far slower than the next (onnxruntime plans the shape's
 * memory and grows its arena into fresh pages; TensorRT and CUDA load kernels lazily): on the 16-core VM the
 * slowest 1% of runs, mostly such first runs, averaged 14-58 ms with hundreds to thousands of page faults
 * against 1.5-2 ms, and made the served p99 (BENCHMARKS.md, serving, fourth session). Largest first, so the arena
 * grows once and the smaller shapes fit inside.
 */
import type { BackendSession } from './backends/backend.js';
import { invalidParameter, YqpError } from './errors.js';
import type { ModelConfig, WarmupConfig } from './repository/config.js';
import { DTYPE_ARRAY, elementCount, type Tensor, type TensorMap, type TypedArray } from './tensor.js';

/** What a load's warm-up did, or why it did none. */
export type WarmupReport =
  { batchSizes: number[]; contexts: number; runs: number; ms: number } | { skipped: string };

/** Every batch size up to this is warmed by default; above it, powers of two and the largest. */
const EVERY_SIZE_UP_TO = 64;

interface WarmupPlan {
  /** Batch sizes, largest first; [] means one run at the inputs' fixed shape. */
  batchSizes: number[];
  /** Each input's shape without its batch dimension (batched), or whole (fixed). */
  shapes: Record<string, number[]>;
  batched: boolean;
}

/** The batch sizes and shapes to warm, or the reason there are none. */
export function planWarmup(config: ModelConfig, setting: WarmupConfig | undefined): WarmupPlan | string {
  const chosen = setting ?? config.warmup ?? true;
  if (chosen === false) return 'turned off';
  const batched = config.maxBatchSize > 0 && config.inputs.every((i) => i.dims[0] === -1);
  const shapes: Record<string, number[]> = {};
  for (const input of config.inputs) {
    const dims = batched ? input.dims.slice(1) : [...input.dims];
    // A dynamic dimension other than the batch: the first profile's opt shape names one, if there is a profile.
    const opt = config.profiles[0]?.[input.name]?.opt;
    for (let d = 0; d < dims.length; d++) {
      if (dims[d] >= 0) continue;
      const fromProfile = opt?.[batched ? d + 1 : d];
      if (fromProfile === undefined || fromProfile < 0)
        return `input ${input.name} has a dynamic dimension ${batched ? d + 1 : d} and no profile gives it a size`;
      dims[d] = fromProfile;
    }
    shapes[input.name] = dims;
  }
  if (!batched) return { batchSizes: [], shapes, batched };
  const smallest = Math.max(
    1,
    Math.min(...config.profiles.flatMap((p) => Object.values(p).map((r) => r.min[0] ?? 1)), Infinity),
  );
  let sizes: number[];
  if (typeof chosen === 'object' && chosen.batchSizes) {
    for (const [i, b] of chosen.batchSizes.entries())
      if (!Number.isInteger(b) || b < smallest || b > config.maxBatchSize)
        throw invalidParameter(
          `warmup.batchSizes[${i}]`,
          `an integer from ${smallest} to ${config.maxBatchSize}`,
          b,
        );
    sizes = [...new Set(chosen.batchSizes)];
  } else {
    sizes = [];
    for (let b = smallest; b <= config.maxBatchSize; b = b < EVERY_SIZE_UP_TO ? b + 1 : b * 2) sizes.push(b);
    if (!sizes.includes(config.maxBatchSize)) sizes.push(config.maxBatchSize);
  }
  return { batchSizes: sizes.sort((a, b) => b - a), shapes, batched };
}

/**
 * Runs the plan on every context (contexts in parallel, sizes in turn) with zero-filled inputs. A failed run fails
 * the load: a model that cannot run a shape its batcher will form would fail its first such request instead.
 */
export async function warmUp(
  session: BackendSession,
  config: ModelConfig,
  setting: WarmupConfig | undefined,
): Promise<WarmupReport> {
  const plan = planWarmup(config, setting);
  if (typeof plan === 'string') return { skipped: plan };
  const runs: (number | undefined)[] = plan.batched ? [...plan.batchSizes] : [undefined];
  // A CUDA graph is captured on its second run: every graph size the plan reaches runs once more, so no request
  // pays for a capture (a graph size of 1 or 2 is reached by one batch size only).
  if (plan.batched && session.graphBatchSizes?.length) {
    const graphs = [...session.graphBatchSizes].sort((a, b) => a - b);
    const reached = new Set(plan.batchSizes.map((b) => graphs.find((g) => g >= b)));
    for (const g of graphs) if (reached.has(g)) runs.push(g);
  }
  const largest = plan.batched ? Math.max(...(runs as number[])) : 1;
  // One zero array per input, for the largest batch; the smaller batches are views of its start.
  const zeros: Record<string, TypedArray> = {};
  for (const input of config.inputs) {
    const Ctor = DTYPE_ARRAY[input.dtype] as unknown as new (length: number) => TypedArray;
    zeros[input.name] = new Ctor(largest * elementCount(plan.shapes[input.name]));
  }
  const feedsFor = (batch: number | undefined): TensorMap => {
    const feeds: TensorMap = {};
    for (const input of config.inputs) {
      const dims = batch === undefined ? plan.shapes[input.name] : [batch, ...plan.shapes[input.name]];
      feeds[input.name] = {
        dtype: input.dtype,
        dims,
        data: zeros[input.name].subarray(0, elementCount(dims)) as Tensor['data'],
      };
    }
    return feeds;
  };
  const start = performance.now();
  await Promise.all(
    Array.from({ length: session.contexts }, async (_, context) => {
      for (const batch of runs) {
        try {
          await session.run(context, feedsFor(batch));
        } catch (e) {
          const what = batch === undefined ? 'its fixed input shape' : `batch ${batch}`;
          throw new YqpError(
            'E_BACKEND',
            `warm-up run of ${what} on context ${context} failed: ${(e as Error).message}`,
            { argument: 'warmup' },
          );
        }
      }
    }),
  );
  return {
    batchSizes: plan.batchSizes,
    contexts: session.contexts,
    runs: runs.length * session.contexts,
    ms: performance.now() - start,
  };
}
