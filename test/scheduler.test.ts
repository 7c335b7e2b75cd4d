import { describe, expect, it } from 'vitest';
import type { BackendSession } from '../src/backends/backend.js';
import { Scheduler, type BatchEvent } from '../src/scheduler/scheduler.js';
import type { TensorMap } from '../src/tensor.js';

/** A test double: doubles its input after `delayMs`, recording which context ran which batch. */
class EchoSession implements BackendSession {
  readonly backend = 'onnxruntime' as const;
  pipelineDepth = 1;
  readonly runs: { context: number; batch: number }[] = [];
  closed = false;
  constructor(
    readonly contexts: number,
    private readonly delayMs = 5,
  ) {}
  async run(context: number, feeds: TensorMap): Promise<TensorMap> {
    const x = feeds.x;
    this.runs.push({ context, batch: x.dims[0] });
    await new Promise((r) => setTimeout(r, this.delayMs));
    return { y: { dtype: 'float32', dims: x.dims, data: (x.data as Float32Array).map((v) => v * 2) } };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const feed = (...values: number[]): TensorMap => ({
  x: { dtype: 'float32', dims: [values.length, 1], data: Float32Array.from(values) },
});

describe('scheduler', () => {
  it('runs requests round-robin over the contexts', async () => {
    const s = new EchoSession(3);
    const sched = new Scheduler(s, {
      maxBatchSize: 1,
      batchable: false,
      maxQueueDelayMicroseconds: 0,
      maxQueueSize: 100,
    });
    const out = await Promise.all([1, 2, 3, 4, 5, 6].map((v) => sched.submit(feed(v))));
    expect(out.map((o) => o.y.data[0])).toEqual([2, 4, 6, 8, 10, 12]);
    expect(s.runs.map((r) => r.context)).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it('batches queued requests and splits the outputs back in order', async () => {
    const s = new EchoSession(1, 20);
    const sched = new Scheduler(s, {
      maxBatchSize: 8,
      batchable: true,
      maxQueueDelayMicroseconds: 2000,
      maxQueueSize: 100,
    });
    const events: BatchEvent[] = [];
    sched.on('batch', (e: BatchEvent) => events.push(e));
    const out = await Promise.all([1, 2, 3, 4, 5].map((v) => sched.submit(feed(v, v + 0.5))));
    expect(out.map((o) => Array.from(o.y.data as Float32Array))).toEqual(
      [1, 2, 3, 4, 5].map((v) => [2 * v, 2 * v + 1]),
    );
    expect(out[2].y.dims).toEqual([2, 1]);
    // 10 rows, max 8 per batch: one batch of 8 (4 requests) then one of 2.
    expect(s.runs.map((r) => r.batch)).toEqual([8, 2]);
    expect(events.map((e) => e.requests)).toEqual([4, 1]);
  });

  it('sends a preferred batch size without waiting for the delay', async () => {
    const s = new EchoSession(1, 1);
    const sched = new Scheduler(s, {
      maxBatchSize: 16,
      batchable: true,
      preferredBatchSizes: [2],
      maxQueueDelayMicroseconds: 10_000_000,
      maxQueueSize: 100,
    });
    const t0 = performance.now();
    await Promise.all([sched.submit(feed(1)), sched.submit(feed(2))]);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(s.runs).toEqual([{ context: 0, batch: 2 }]);
  });

  it('refuses work beyond the queue bound with E_QUEUE_FULL and loses nothing accepted', async () => {
    const s = new EchoSession(1, 10);
    const sched = new Scheduler(s, {
      maxBatchSize: 1,
      batchable: false,
      maxQueueDelayMicroseconds: 0,
      maxQueueSize: 2,
    });
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((v) => sched.submit(feed(v))));
    // The first dispatches at once, two wait, two are refused.
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'rejected',
    ]);
    expect((results[3] as PromiseRejectedResult).reason.code).toBe('E_QUEUE_FULL');
    expect(sched.stats.completed).toBe(3);
  });

  it('cancels queued work when the signal aborts, and times out queued work', async () => {
    const s = new EchoSession(1, 30);
    const sched = new Scheduler(s, {
      maxBatchSize: 1,
      batchable: false,
      maxQueueDelayMicroseconds: 0,
      maxQueueSize: 10,
    });
    const first = sched.submit(feed(1));
    const ac = new AbortController();
    const second = sched.submit(feed(2), { signal: ac.signal });
    const third = sched.submit(feed(3), { timeoutMs: 5 });
    ac.abort();
    await expect(second).rejects.toMatchObject({ code: 'E_CANCELLED' });
    await expect(third).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    await expect(first).resolves.toBeDefined();
    expect(s.runs).toHaveLength(1);
  });

  it('close() drains queued work, then closes the session and refuses more', async () => {
    const s = new EchoSession(1, 5);
    const sched = new Scheduler(s, {
      maxBatchSize: 1,
      batchable: false,
      maxQueueDelayMicroseconds: 0,
      maxQueueSize: 10,
    });
    const pending = [1, 2, 3].map((v) => sched.submit(feed(v)));
    await sched.close();
    expect((await Promise.all(pending)).length).toBe(3);
    expect(s.closed).toBe(true);
    await expect(sched.submit(feed(4))).rejects.toMatchObject({ code: 'E_CLOSED' });
  });

  it('keeps requests with different trailing shapes in separate batches', async () => {
    const s = new EchoSession(1, 5);
    const sched = new Scheduler(s, {
      maxBatchSize: 8,
      batchable: true,
      maxQueueDelayMicroseconds: 1000,
      maxQueueSize: 10,
    });
    const a: TensorMap = { x: { dtype: 'float32', dims: [1, 2], data: Float32Array.from([1, 2]) } };
    const b: TensorMap = { x: { dtype: 'float32', dims: [1, 3], data: Float32Array.from([1, 2, 3]) } };
    const [ra, rb] = await Promise.all([sched.submit(a), sched.submit(b)]);
    expect(ra.y.dims).toEqual([1, 2]);
    expect(rb.y.dims).toEqual([1, 3]);
    expect(s.runs).toHaveLength(2);
  });

  it('hands a second request to a context that pipelines, but never a third', async () => {
    const s = new EchoSession(1, 20);
    s.pipelineDepth = 2;
    const sched = new Scheduler(s, {
      maxBatchSize: 1,
      batchable: false,
      maxQueueDelayMicroseconds: 0,
      maxQueueSize: 10,
    });
    const pending = [1, 2, 3].map((v) => sched.submit(feed(v)));
    // Two runs started at once on context 0; the third waits in the queue.
    expect(s.runs).toHaveLength(2);
    expect(sched.stats.queued).toBe(1);
    await Promise.all(pending);
    expect(s.runs).toHaveLength(3);
  });

  it('with batching, a pipelining context holds its next ready batch while it computes', async () => {
    const s = new EchoSession(1, 30);
    s.pipelineDepth = 2;
    const sched = new Scheduler(s, {
      maxBatchSize: 4,
      batchable: true,
      preferredBatchSizes: [2],
      maxQueueDelayMicroseconds: 20_000,
      maxQueueSize: 10,
    });
    const first = [1, 2].map((v) => sched.submit(feed(v)));
    // A preferred batch of 2 leaves at once; the context is busy for 30 ms.
    expect(s.runs).toEqual([{ context: 0, batch: 2 }]);
    const second = [3].map((v) => sched.submit(feed(v)));
    // One request is not ready (no preferred size, delay not over): it waits instead of taking the free slot.
    expect(s.runs).toHaveLength(1);
    const third = [4].map((v) => sched.submit(feed(v)));
    // Now two are queued, a preferred batch: it goes to the context's second slot while the first computes.
    expect(s.runs).toEqual([
      { context: 0, batch: 2 },
      { context: 0, batch: 2 },
    ]);
    const out = await Promise.all([...first, ...second, ...third]);
    expect(out.map((o) => o.y.data[0])).toEqual([2, 4, 6, 8]);
  });

  it('assembles batches in memory the backend allocates', async () => {
    const s = new EchoSession(1, 20) as EchoSession & {
      allocate: (dtype: string, n: number) => Float32Array;
    };
    const allocated: number[] = [];
    s.allocate = (_dtype, n) => {
      allocated.push(n);
      return new Float32Array(new SharedArrayBuffer(n * 4));
    };
    const sched = new Scheduler(s, {
      maxBatchSize: 8,
      batchable: true,
      maxQueueDelayMicroseconds: 5000,
      maxQueueSize: 10,
    });
    const out = await Promise.all([1, 2, 3].map((v) => sched.submit(feed(v))));
    expect(out.map((o) => o.y.data[0])).toEqual([2, 4, 6]);
    expect(allocated).toEqual([3]);
  });
});
