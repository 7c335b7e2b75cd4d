import { EventEmitter } from 'node:events';
import { YqpError } from '../errors.js';
import { RUN_TIMING, type BackendSession, type DeviceOutputs, type RunTiming } from '../backends/backend.js';
import { DTYPE_ARRAY, type Tensor, type TensorMap } from '../tensor.js';

export interface SchedulerOptions {
  /** Largest batch one backend run may take; 0 or 1 disables batching. */
  maxBatchSize: number;
  /** Whether requests may be concatenated along dimension 0 (every input has a dynamic batch dimension). */
  batchable: boolean;
  /** Batches of these sizes are sent at once; others wait up to maxQueueDelayMicroseconds. */
  preferredBatchSizes?: number[];
  /** 0 sends whatever is queued as soon as a context is free (no waiting to fill a batch). */
  maxQueueDelayMicroseconds: number;
  /** Requests waiting beyond this are refused with E_QUEUE_FULL. */
  maxQueueSize: number;
  /** Default per-request queue timeout in ms (0: none). */
  queueTimeoutMs?: number;
}

export interface SubmitOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Outputs written to device memory on the GPU (BackendSession.deviceOutputs); such a request runs alone. */
  outputs?: DeviceOutputs;
}

/** What one backend run did, for metrics. */
export interface BatchEvent {
  context: number;
  /** Total batch (sum of the requests' dimension 0). */
  size: number;
  requests: number;
  /** Time each request spent queued, in ms. */
  queueMs: number[];
  /** From dispatch to the result back on the event loop (a pipelining context's wait for its turn included). */
  computeMs: number;
  /** The backend's own split of computeMs, where it reports one (the native onnxruntime runner). */
  timing?: RunTiming;
  error?: Error;
}

interface Request {
  feeds: TensorMap;
  outputs?: DeviceOutputs;
  batch: number;
  key: string;
  enqueuedAt: number;
  resolve: (outputs: TensorMap) => void;
  reject: (e: Error) => void;
  cleanup: () => void;
}

export interface SchedulerStats {
  queued: number;
  inFlight: number;
  completed: number;
  failed: number;
  batches: number;
}

/**
 * The one scheduler for every backend: a bounded queue, a dynamic batcher, and round-robin dispatch over
 * the session's contexts. A backend only runs one batch on one context.
 */
export class Scheduler extends EventEmitter {
  private readonly queue: Request[] = [];
  /** Runs in flight per context; a context takes up to session.pipelineDepth. */
  private readonly inFlight: number[];
  private readonly depth: number;
  private readonly batching: boolean;
  private nextContext = 0;
  /** The pending wake-up of the batcher (a timer, or an immediate once the delay is under 1.5 ms). */
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly counters = { inFlight: 0, completed: 0, failed: 0, batches: 0 };

  constructor(
    readonly session: BackendSession,
    private readonly options: SchedulerOptions,
  ) {
    super();
    this.inFlight = new Array<number>(session.contexts).fill(0);
    // A context that pipelines holds its next run while it computes, batched or not: the next batch then starts
    // the moment the current one ends, instead of after the event loop has come round to the completion (under
    // HTTP load a turn of the loop is milliseconds of socket reads, and the context idled that long each batch).
    // The second slot takes only a batch formBatch calls ready, so requests still gather up to the queue delay.
    this.batching = options.batchable && options.maxBatchSize > 1;
    this.depth = Math.max(1, session.pipelineDepth ?? 1);
  }

  get stats(): SchedulerStats {
    return { queued: this.queue.length, ...this.counters };
  }

  get contexts(): number {
    return this.session.contexts;
  }

  submit(feeds: TensorMap, opts: SubmitOptions = {}): Promise<TensorMap> {
    if (this.closed) return Promise.reject(new YqpError('E_CLOSED', 'Model is closed'));
    if (opts.signal?.aborted) return Promise.reject(new YqpError('E_CANCELLED', 'Request was cancelled'));
    if (this.queue.length >= this.options.maxQueueSize) {
      return Promise.reject(
        new YqpError('E_QUEUE_FULL', `Queue is full (${this.options.maxQueueSize} requests waiting)`, {
          argument: 'maxQueueSize',
          expected: `at most ${this.options.maxQueueSize} queued requests`,
        }),
      );
    }
    const first = Object.values(feeds)[0];
    // A model with a batch dimension (maxBatchSize > 0) counts a request's dimension 0 as its batch, batched
    // together with others or not: the batch events and the batch-size histogram then say what ran.
    const batch = this.options.maxBatchSize > 0 && first ? (first.dims[0] ?? 1) : 1;
    return new Promise<TensorMap>((resolve, reject) => {
      const req: Request = {
        feeds,
        outputs: opts.outputs,
        batch,
        key: this.options.batchable ? batchKey(feeds, opts.outputs) : '',
        enqueuedAt: performance.now(),
        resolve,
        reject,
        cleanup: () => {},
      };
      const timeoutMs = opts.timeoutMs ?? this.options.queueTimeoutMs ?? 0;
      let timeout: NodeJS.Timeout | undefined;
      const onAbort = () => this.drop(req, new YqpError('E_CANCELLED', 'Request was cancelled while queued'));
      if (timeoutMs > 0)
        timeout = setTimeout(
          () =>
            this.drop(
              req,
              new YqpError('E_TIMEOUT', `Request waited longer than ${timeoutMs} ms in the queue`),
            ),
          timeoutMs,
        );
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.cleanup = () => {
        if (timeout) clearTimeout(timeout);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      this.queue.push(req);
      this.pump();
    });
  }

  /** Stops accepting; queued requests still run unless `cancelQueued`. Resolves when nothing is in flight. */
  async close(cancelQueued = false): Promise<void> {
    this.closed = true;
    if (cancelQueued)
      for (const r of [...this.queue]) this.drop(r, new YqpError('E_CLOSED', 'Model was closed'));
    await this.idle();
    await this.session.close();
  }

  /** Resolves once the queue is empty and no batch is running. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.counters.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private drop(req: Request, error: Error): void {
    const i = this.queue.indexOf(req);
    if (i < 0) return; // already running: its result is discarded by the caller
    this.queue.splice(i, 1);
    req.cleanup();
    req.reject(error);
    this.counters.failed++;
    this.checkIdle();
  }

  private freeContext(): number {
    // Round-robin among the least loaded: an idle context first, then one that can queue another run.
    const n = this.inFlight.length;
    for (let load = 0; load < this.depth; load++) {
      for (let k = 0; k < n; k++) {
        const c = (this.nextContext + k) % n;
        if (this.inFlight[c] === load) return c;
      }
    }
    return -1;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const context = this.freeContext();
      if (context < 0) return;
      const group = this.formBatch();
      if (!group) return;
      this.nextContext = (context + 1) % this.inFlight.length;
      void this.dispatch(context, group);
    }
  }

  /** Picks the requests of the next batch, or undefined to wait for more (a timer wakes the pump). */
  private formBatch(): Request[] | undefined {
    const { maxBatchSize, maxQueueDelayMicroseconds } = this.options;
    const head = this.queue[0];
    if (!this.options.batchable || maxBatchSize <= 1) return this.queue.splice(0, 1);
    const group: Request[] = [];
    let total = 0;
    for (const r of this.queue) {
      if (r.key !== head.key) continue;
      if (total + r.batch > maxBatchSize) break;
      group.push(r);
      total += r.batch;
      if (total === maxBatchSize) break;
    }
    const waitedUs = (performance.now() - head.enqueuedAt) * 1000;
    const preferred = this.options.preferredBatchSizes ?? [];
    const ready =
      maxQueueDelayMicroseconds <= 0 ||
      total >= maxBatchSize ||
      preferred.includes(total) ||
      waitedUs >= maxQueueDelayMicroseconds;
    if (!ready) {
      if (!this.timer) {
        const delayMs = Math.max(0, (maxQueueDelayMicroseconds - waitedUs) / 1000);
        // Node's timers fire a whole millisecond late or more, which would turn a 500 us delay into 1-2 ms:
        // sleep on a timer for all but the last ~1.5 ms, then poll once per event-loop turn until it is due.
        const wake = () => {
          this.timer = undefined;
          this.pump();
        };
        this.timer =
          delayMs > 1.5 ? setTimeout(wake, delayMs - 1.5) : (setImmediate(wake) as unknown as NodeJS.Timeout);
      }
      return undefined;
    }
    for (const r of group) this.queue.splice(this.queue.indexOf(r), 1);
    return group;
  }

  private async dispatch(context: number, group: Request[]): Promise<void> {
    this.inFlight[context]++;
    this.counters.inFlight++;
    const start = performance.now();
    const queueMs = group.map((r) => start - r.enqueuedAt);
    for (const r of group) r.cleanup();
    let error: Error | undefined;
    let timing: RunTiming | undefined;
    try {
      const feeds =
        group.length === 1
          ? group[0].feeds
          : concatFeeds(
              group.map((r) => r.feeds),
              this.session.allocate?.bind(this.session),
            );
      // A request with device outputs is alone in its group (batchKey).
      const outputs = await this.session.run(
        context,
        feeds,
        group.length === 1 ? group[0].outputs : undefined,
      );
      timing = (outputs as { [RUN_TIMING]?: RunTiming })[RUN_TIMING];
      if (group.length === 1) group[0].resolve(outputs);
      else {
        let offset = 0;
        for (const r of group) {
          r.resolve(sliceBatch(outputs, offset, r.batch));
          offset += r.batch;
        }
      }
      this.counters.completed += group.length;
    } catch (e) {
      error = e instanceof Error ? e : new Error(String(e));
      for (const r of group) r.reject(error);
      this.counters.failed += group.length;
    } finally {
      this.inFlight[context]--;
      this.counters.inFlight--;
      this.counters.batches++;
      this.emit('batch', {
        context,
        size: group.reduce((s, r) => s + r.batch, 0),
        requests: group.length,
        queueMs,
        computeMs: performance.now() - start,
        timing,
        error,
      } satisfies BatchEvent);
      // With batching, form the next batch one turn later: the callers just resolved resubmit first, so
      // batches do not alternate between one request and the rest.
      if (this.batching) setImmediate(() => this.pump());
      else this.pump();
      this.checkIdle();
    }
  }

  private checkIdle(): void {
    if (this.queue.length === 0 && this.counters.inFlight === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}

let deviceRequests = 0;

/**
 * Requests batch together when every input agrees on dtype and on every dimension but the first. A request whose
 * input or outputs are in device memory runs alone (its key is its own): its rows are not gathered into a host
 * batch, nor its outputs split from one.
 */
function batchKey(feeds: TensorMap, outputs?: DeviceOutputs): string {
  if (outputs) return `device#${++deviceRequests}`;
  for (const k in feeds) if (feeds[k].device) return `device#${++deviceRequests}`;
  return Object.keys(feeds)
    .sort()
    .map((k) => `${k}:${feeds[k].dtype}:${feeds[k].dims.slice(1).join('x')}`)
    .join('|');
}

/** An array every element of which the caller writes: no zero-fill first (a batch is written whole). */
function uninitialized(dtype: Tensor['dtype'], length: number): Tensor['data'] {
  const Ctor = DTYPE_ARRAY[dtype] as unknown as {
    new (buffer: ArrayBuffer, offset: number, length: number): Tensor['data'];
    BYTES_PER_ELEMENT: number;
  };
  const bytes = Buffer.allocUnsafeSlow(length * Ctor.BYTES_PER_ELEMENT);
  return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, length);
}

/** Allocates the array of a batched input; a backend may hand out memory it can take without a copy. */
export type InputAllocator = (dtype: Tensor['dtype'], length: number) => Tensor['data'];

export function concatFeeds(list: TensorMap[], allocate?: InputAllocator): TensorMap {
  const out: TensorMap = {};
  for (const name of Object.keys(list[0])) {
    const parts = list.map((f) => f[name]);
    const total = parts.reduce((s, t) => s + t.data.length, 0);
    const data = allocate ? allocate(parts[0].dtype, total) : uninitialized(parts[0].dtype, total);
    let offset = 0;
    for (const t of parts) {
      (data as Float32Array).set(t.data as Float32Array, offset);
      offset += t.data.length;
    }
    const batch = parts.reduce((s, t) => s + t.dims[0], 0);
    out[name] = { dtype: parts[0].dtype, dims: [batch, ...parts[0].dims.slice(1)], data };
  }
  return out;
}

/** Views (no copy) of rows [offset, offset + count) of every output. */
export function sliceBatch(outputs: TensorMap, offset: number, count: number): TensorMap {
  const out: TensorMap = {};
  for (const [name, t] of Object.entries(outputs)) {
    const rows = t.dims[0];
    const per = rows > 0 ? t.data.length / rows : 0;
    out[name] = {
      dtype: t.dtype,
      dims: [count, ...t.dims.slice(1)],
      data: t.data.subarray(offset * per, (offset + count) * per) as Tensor['data'],
    };
  }
  return out;
}
