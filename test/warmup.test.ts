// Warm-up at load (src/warmup.ts): which batch sizes and shapes, the config and option checks, the report, a
// failing warm-up failing the load, and the point of it all: after the warm-up, no batch size a batcher can form
// makes its first run in fresh memory (page faults in the runner thread, which the native runner counts).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeRunner } from '../src/backends/onnxruntime.js';
import { build } from '../src/build.js';
import { loadModel, type Model } from '../src/model.js';
import type { ModelConfig } from '../src/repository/config.js';
import { validateConfig } from '../src/repository/repository.js';
import type { BatchEvent } from '../src/scheduler/scheduler.js';
import type { BackendSession } from '../src/backends/backend.js';
import { planWarmup, warmUp, type WarmupReport } from '../src/warmup.js';
import { describeWarmup } from '../src/serve/model-manager.js';
import { BLAZEFACE_ONNX, requireData } from './helpers/data.js';
import { writeBlazeFace } from './serve-fixtures.js';

function config(overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    name: 'm',
    backend: 'onnxruntime',
    modelFile: 'model.onnx',
    precision: 'fp32',
    maxBatchSize: 16,
    inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 8, 8, 3] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: [-1, 4] }],
    profiles: [{ x: { min: [1, 8, 8, 3], opt: [4, 8, 8, 3], max: [16, 8, 8, 3] } }],
    instances: 1,
    ...overrides,
  };
}

describe('warm-up plan', () => {
  it('warms every batch size up to maxBatchSize by default, largest first', () => {
    const plan = planWarmup(config(), undefined);
    expect(plan).toMatchObject({ batched: true, shapes: { x: [8, 8, 3] } });
    expect((plan as { batchSizes: number[] }).batchSizes).toEqual([
      16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1,
    ]);
  });

  it('above 64, warms powers of two and the largest only', () => {
    const c = config({
      maxBatchSize: 200,
      profiles: [{ x: { min: [1, 8, 8, 3], opt: [4, 8, 8, 3], max: [200, 8, 8, 3] } }],
    });
    const sizes = (planWarmup(c, undefined) as { batchSizes: number[] }).batchSizes;
    expect(sizes.slice(0, 3)).toEqual([200, 128, 64]);
    expect(sizes).toHaveLength(66); // 200, 128, and 64 down to 1
  });

  it("follows config.warmup and the load option, and a profile's smallest batch", () => {
    expect(planWarmup(config({ warmup: false }), undefined)).toBe('turned off');
    expect(planWarmup(config({ warmup: { batchSizes: [1, 4, 4] } }), undefined)).toMatchObject({
      batchSizes: [4, 1],
    });
    // The option wins over the config.
    expect(planWarmup(config({ warmup: false }), { batchSizes: [2] })).toMatchObject({ batchSizes: [2] });
    expect(planWarmup(config({ warmup: { batchSizes: [8] } }), false)).toBe('turned off');
    const fromTwo = config({
      profiles: [{ x: { min: [2, 8, 8, 3], opt: [4, 8, 8, 3], max: [16, 8, 8, 3] } }],
    });
    expect((planWarmup(fromTwo, undefined) as { batchSizes: number[] }).batchSizes.at(-1)).toBe(2);
  });

  it("fills dynamic dimensions other than the batch from the first profile's opt shape, or says why not", () => {
    const dynamic = config({
      inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 3, -1, -1] }],
      profiles: [{ x: { min: [1, 3, 32, 32], opt: [4, 3, 48, 320], max: [16, 3, 64, 640] } }],
    });
    expect(planWarmup(dynamic, undefined)).toMatchObject({ shapes: { x: [3, 48, 320] } });
    expect(planWarmup({ ...dynamic, profiles: [] }, undefined)).toBe(
      'input x has a dynamic dimension 2 and no profile gives it a size',
    );
  });

  it('runs a model without a batch dimension once, at its fixed shape', () => {
    const fixed = config({ maxBatchSize: 1, inputs: [{ name: 'x', dtype: 'float32', dims: [1, 8, 8, 3] }] });
    expect(planWarmup(fixed, undefined)).toEqual({
      batchSizes: [],
      shapes: { x: [1, 8, 8, 3] },
      batched: false,
    });
  });

  it('refuses batch sizes a profile cannot run, naming the field', () => {
    expect(() => planWarmup(config(), { batchSizes: [17] })).toThrow(
      'Expected an integer from 1 to 16 for warmup.batchSizes[0] but received 17 of type number',
    );
    const fromTwo = config({
      profiles: [{ x: { min: [2, 8, 8, 3], opt: [4, 8, 8, 3], max: [16, 8, 8, 3] } }],
    });
    expect(() => planWarmup(fromTwo, { batchSizes: [4, 1] })).toThrow(
      'Expected an integer from 2 to 16 for warmup.batchSizes[1] but received 1 of type number',
    );
    expect(() => validateConfig(config({ warmup: { batchSizes: [4, 32] } }))).toThrow(
      /warmup\.batchSizes\.1 is 32, above maxBatchSize 16/,
    );
    expect(() => validateConfig({ ...config(), warmup: 'yes' })).toThrow(/warmup/);
    expect(() => validateConfig(config({ warmup: { batchSizes: [] } }))).toThrow(/warmup\.batchSizes/);
  });

  it('runs every CUDA-graph size it reaches a second time (a graph is captured on its second run)', async () => {
    const runs: number[][] = [[], []];
    const session: BackendSession = {
      backend: 'fake',
      contexts: 2,
      graphBatchSizes: [1, 2, 4, 8, 16],
      run: async (context, feeds) => {
        runs[context].push(feeds.x.dims[0]);
        return {};
      },
      close: async () => {},
    };
    const report = await warmUp(session, config(), { batchSizes: [16, 3, 2] });
    // 16 and 2 are graph sizes; 3 runs on graph 4, which counts as reached; 1 and 8 are not reached.
    for (const r of runs) expect(r).toEqual([16, 3, 2, 2, 4, 16]);
    expect(report).toMatchObject({ contexts: 2, runs: 12 });
    const plain = { ...session, graphBatchSizes: undefined };
    runs[0] = [];
    runs[1] = [];
    await warmUp(plain, config(), { batchSizes: [16, 3] });
    expect(runs[0]).toEqual([16, 3]);
    // A graph above every planned size (3 runs on graph 4): its zeros are sized for it.
    runs[0] = [];
    const sized: number[] = [];
    await warmUp(
      { ...session, contexts: 1, run: async (_c, f) => (sized.push(f.x.data.length), {}) },
      config(),
      { batchSizes: [3] },
    );
    expect(sized).toEqual([3 * 8 * 8 * 3, 4 * 8 * 8 * 3]);
  });
});

const NATIVE_MISSING = nativeRunner().reason;

describe('warm-up at load, BlazeFace on onnxruntime', () => {
  const repo = mkdtempSync(join(tmpdir(), 'yqp-warmup-'));
  let dir: string;
  beforeAll(async () => {
    requireData();
    dir = (await writeBlazeFace(repo)).entry.dir;
  });

  it('reports what it ran on every context, and can be turned off or narrowed', async () => {
    const model = await loadModel(dir, { contexts: 2, threadsPerContext: 1 });
    try {
      expect(model.warmup).toMatchObject({ contexts: 2, runs: 32 });
      expect((model.warmup as { batchSizes: number[] }).batchSizes).toHaveLength(16);
      expect((model.warmup as { ms: number }).ms).toBeGreaterThan(0);
    } finally {
      await model.close();
    }
    const off = await loadModel(dir, { contexts: 1, threadsPerContext: 1, warmup: false });
    expect(off.warmup).toEqual({ skipped: 'turned off' });
    await off.close();
    const some = await loadModel(dir, { contexts: 1, threadsPerContext: 1, warmup: [1, 8] });
    expect(some.warmup).toMatchObject({ batchSizes: [8, 1], runs: 2 });
    await some.close();
    await expect(loadModel(dir, { warmup: [0] })).rejects.toThrow(
      'Expected positive integer for warmup[0] but received 0 of type number',
    );
    await expect(loadModel(dir, { warmup: 'all' as unknown as boolean })).rejects.toThrow(
      /Expected a boolean or a non-empty array of batch sizes for warmup/,
    );
  });

  it('fails the load when a warm-up run fails, naming the batch and the cause', async () => {
    // The original BlazeFace hard-codes batch 1 in its Reshapes: a config that claims batches up to 16 is wrong,
    // and the warm-up finds it at load instead of the first batch of 16 finding it in service.
    const { entry } = await build(BLAZEFACE_ONNX, { name: 'liar', repo, backend: 'onnxruntime' });
    const path = join(entry.dir, 'config.json');
    const c = JSON.parse(readFileSync(path, 'utf8')) as ModelConfig;
    c.maxBatchSize = 16;
    c.inputs[0].dims[0] = -1;
    c.profiles = [{ 'input:0': { min: [1, 128, 128, 3], opt: [1, 128, 128, 3], max: [16, 128, 128, 3] } }];
    writeFileSync(path, JSON.stringify(c));
    await expect(loadModel(entry.dir, { contexts: 1 })).rejects.toThrow(
      /warm-up run of batch 16 on context 0 failed: .*onnxruntime/,
    );
    // Without the warm-up it loads, and fails at the first batch of 16 instead.
    const model = await loadModel(entry.dir, { contexts: 1, warmup: false });
    await expect(
      model.infer({
        'input:0': { dtype: 'float32', dims: [16, 128, 128, 3], data: new Float32Array(16 * 128 * 128 * 3) },
      }),
    ).rejects.toThrow(/onnxruntime/);
    await model.close();
  });

  describe.skipIf(Boolean(NATIVE_MISSING))(
    `after it, every batch size runs in warm memory${NATIVE_MISSING ? ` (skipped: ${NATIVE_MISSING})` : ''}`,
    () => {
      let model: Model;
      afterAll(async () => model?.close());
      it('no batch size takes more than a few page faults in its run', async () => {
        // Before (memory pattern on, no warm-up), a context's first batch of 14-16 took 600-9,000 faults here, and
        // a batch above glibc's 32 MiB mmap ceiling took thousands on every run.
        model = await loadModel(dir, {
          contexts: 1,
          threadsPerContext: 1,
          runner: 'native',
          dynamicBatching: false,
        });
        const events: BatchEvent[] = [];
        model.scheduler.on('batch', (e) => events.push(e));
        for (const batch of [1, 16, 7, 14, 3, 16]) {
          const data = new Float32Array(batch * 128 * 128 * 3).fill(0.25);
          await model.infer({ 'input:0': { dtype: 'float32', dims: [batch, 128, 128, 3], data } });
        }
        expect(events.map((e) => e.size)).toEqual([1, 16, 7, 14, 3, 16]);
        const faults = events.map((e) => e.timing!.runMinorFaults);
        expect(Math.max(...faults), `faults per run: ${faults.join(', ')}`).toBeLessThan(64);
      });
    },
  );
});

describe('warm-up log line', () => {
  const line = (warmup: WarmupReport) => describeWarmup({ name: 'face', warmup } as unknown as Model);
  it('says what ran, as a range only when every size in it ran', () => {
    const ran = { contexts: 3, runs: 48, ms: 95.4 };
    expect(line({ ...ran, batchSizes: Array.from({ length: 16 }, (_, i) => 16 - i) })).toBe(
      'model face: warmed up batch 16..1 on 3 contexts (48 runs, 95 ms)',
    );
    expect(line({ ...ran, batchSizes: [16, 8, 1] })).toBe(
      'model face: warmed up batch 16, 8, 1 on 3 contexts (48 runs, 95 ms)',
    );
    expect(line({ ...ran, batchSizes: [200, 128, ...Array.from({ length: 64 }, (_, i) => 64 - i)] })).toMatch(
      /warmed up 66 batch sizes from 200 to 1 on 3 contexts/,
    );
    expect(line({ ...ran, contexts: 1, runs: 1, batchSizes: [] })).toBe(
      'model face: warmed up its fixed shape on 1 context (1 run, 95 ms)',
    );
    expect(line({ skipped: 'turned off' })).toBe('model face: no warm-up (turned off)');
  });
});
