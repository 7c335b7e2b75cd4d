import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { YqpError } from '../errors.js';
import { onnx, type ModelProto } from '../onnx/model.js';
import { HISTOGRAM_BINS, accumulate, emptyHistogram, mergeInto, type HistogramState } from './histogram.js';

const require = createRequire(import.meta.url);

/**
 * Activation collection: each worker thread holds an onnxruntime session of the FP32 model with the calibrated
 * tensors added as outputs, runs the batches it is handed (onnxruntime-node's run blocks its thread, so the
 * event loop keeps decoding and drawing progress) and folds the tensors into its own histograms right there,
 * so nothing but the input batch crosses threads per run. At the end the workers' histograms merge exactly.
 * The histogram kernel is the same function as in histogram.ts, shipped as source.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const accumulate = ${accumulate.toString()};
const states = new Map();
for (const name of workerData.tensors)
  states.set(name, { exp: -1000, counts: new Float64Array(workerData.bins), count: 0, min: Infinity, max: -Infinity,
    maxAbs: 0, sum: 0, sumSq: 0, frameMax: [] });
let session;
(async () => {
  try {
    session = await ort.InferenceSession.create(new Uint8Array(workerData.model), workerData.sessionOptions);
    parentPort.postMessage({ ready: true });
  } catch (e) {
    parentPort.postMessage({ ready: false, error: String((e && e.message) || e) });
  }
})();
parentPort.on('message', async (msg) => {
  if (msg.finish) {
    const out = [];
    for (const [name, s] of states) out.push({ name, ...s });
    parentPort.postMessage({ states: out }, out.map((s) => s.counts.buffer));
    return;
  }
  try {
    const t0 = performance.now();
    const input = new ort.Tensor('float32', new Float32Array(msg.buffer), msg.dims);
    const out = await session.run({ [workerData.input]: input }, workerData.tensors);
    const t1 = performance.now();
    for (const name of workerData.tensors) {
      const t = out[name];
      if (t.type !== 'float32') throw new Error('tensor ' + name + ' is ' + t.type + ', not float32');
      // Per-frame maxima only where the tensor's first dimension is the batch.
      accumulate(states.get(name), t.data, t.dims[0] === msg.dims[0] ? msg.dims[0] : 1);
    }
    parentPort.postMessage({ id: msg.id, runMs: t1 - t0, histMs: performance.now() - t1 });
  } catch (e) {
    parentPort.postMessage({ id: msg.id, error: String((e && e.message) || e) });
  }
});
`;

/** A copy of the model with the tensors to calibrate added as graph outputs. */
export function withTensorOutputs(proto: ModelProto, tensors: readonly string[]): Uint8Array {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(proto).finish());
  const graph = copy.graph!;
  const existing = new Set((graph.output ?? []).map((o) => o.name));
  for (const name of tensors) {
    if (existing.has(name)) continue;
    graph.output!.push(onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1 } } }));
  }
  return onnx.ModelProto.encode(copy).finish();
}

export interface CollectorOptions {
  workers?: number;
  threadsPerWorker?: number;
  /** Batches each worker may hold (one running, the next waiting). */
  depth?: number;
  /** Called with the frames done so far, after each batch. */
  onFrames?: (frames: number) => void;
}

export interface CollectorStats {
  frames: number;
  batches: number;
  runMs: number;
  histogramMs: number;
  workers: number;
  threadsPerWorker: number;
}

interface WorkerMessage {
  ready?: boolean;
  error?: string;
  id?: number;
  runMs?: number;
  histMs?: number;
  states?: (HistogramState & { name: string })[];
}

class CollectorWorker {
  inFlight = 0;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private finishing?: (states: (HistogramState & { name: string })[]) => void;
  private failure?: Error;

  constructor(
    readonly worker: Worker,
    private readonly stats: CollectorStats,
  ) {
    worker.on('message', (m: WorkerMessage) => {
      if (m.states && this.finishing) return this.finishing(m.states);
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.inFlight--;
      if (m.error !== undefined)
        return p.reject(new YqpError('E_BACKEND', `onnxruntime (calibration): ${m.error}`));
      this.stats.runMs += m.runMs ?? 0;
      this.stats.histogramMs += m.histMs ?? 0;
      p.resolve();
    });
    worker.on('error', (e) =>
      this.fail(new YqpError('E_BACKEND', `calibration worker failed: ${e.message}`, { cause: e })),
    );
  }

  private fail(e: Error) {
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  run(data: Float32Array, dims: number[]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    this.inFlight++;
    // The batch buffer is the loader's own (a fresh one per batch): transfer it, no copy.
    const buffer =
      data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data.buffer : data.slice().buffer;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, buffer, dims }, [buffer as ArrayBuffer]);
    });
  }

  finish(): Promise<(HistogramState & { name: string })[]> {
    return new Promise((resolve) => {
      this.finishing = resolve;
      this.worker.postMessage({ finish: true });
    });
  }
}

/** Runs batches on a pool of onnxruntime workers and accumulates per-tensor histograms. */
export class ActivationCollector {
  readonly stats: CollectorStats;
  private readonly running = new Set<Promise<void>>();
  private error?: Error;

  private constructor(
    private readonly workers: CollectorWorker[],
    readonly tensors: readonly string[],
    private readonly depth: number,
    stats: CollectorStats,
    private readonly onFrames?: (frames: number) => void,
  ) {
    this.stats = stats;
  }

  static async open(
    proto: ModelProto,
    input: string,
    tensors: readonly string[],
    options: CollectorOptions = {},
  ): Promise<ActivationCollector> {
    const cores = availableParallelism();
    const count = options.workers ?? Math.max(1, Math.min(8, Math.floor(cores / 2)));
    const threads = options.threadsPerWorker ?? Math.max(1, Math.floor(cores / count));
    const model = withTensorOutputs(proto, tensors);
    const stats: CollectorStats = {
      frames: 0,
      batches: 0,
      runMs: 0,
      histogramMs: 0,
      workers: count,
      threadsPerWorker: threads,
    };
    const start = () =>
      new Promise<CollectorWorker>((resolve, reject) => {
        // A copy per worker (encode() may return a view into a shared pool; transferring that would detach it).
        const buffer = Uint8Array.from(model).buffer;
        const worker = new Worker(WORKER_SOURCE, {
          eval: true,
          workerData: {
            ortPath: require.resolve('onnxruntime-node'),
            model: buffer,
            input,
            tensors,
            bins: HISTOGRAM_BINS,
            sessionOptions: {
              intraOpNumThreads: threads,
              interOpNumThreads: 1,
              logSeverityLevel: 3,
              graphOptimizationLevel: 'all',
              ...(count > 1 ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
            },
          },
          transferList: [buffer],
        });
        const onMessage = (m: WorkerMessage) => {
          if (m.ready === undefined) return;
          worker.off('message', onMessage);
          if (m.ready) resolve(new CollectorWorker(worker, stats));
          else {
            void worker.terminate();
            reject(
              new YqpError('E_CALIBRATION', `onnxruntime cannot load the calibration model: ${m.error}`),
            );
          }
        };
        worker.on('message', onMessage);
        worker.once('error', reject);
      });
    const results = await Promise.allSettled(Array.from({ length: count }, start));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) {
      await Promise.all(ok.map((w) => w.worker.terminate()));
      throw failed.reason;
    }
    return new ActivationCollector(ok, tensors, options.depth ?? 2, stats, options.onFrames);
  }

  /** Hands a batch to the least busy worker; resolves once it is handed over (waits while all are full). */
  async push(data: Float32Array, dims: number[], frames: number): Promise<void> {
    if (this.error) throw this.error;
    while (this.workers.every((w) => w.inFlight >= this.depth)) {
      await Promise.race(this.running);
      if (this.error) throw this.error;
    }
    const w = this.workers.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    const p: Promise<void> = w.run(data, dims).then(
      () => {
        this.running.delete(p);
        this.stats.frames += frames;
        this.stats.batches++;
        this.onFrames?.(this.stats.frames);
      },
      (e: Error) => {
        this.running.delete(p);
        this.error ??= e;
      },
    );
    this.running.add(p);
  }

  /** Waits for every batch, then merges the workers' histograms. Terminates the workers. */
  async finish(): Promise<Map<string, HistogramState>> {
    try {
      await Promise.all(this.running);
      if (this.error) throw this.error;
      const merged = new Map<string, HistogramState>(this.tensors.map((t) => [t, emptyHistogram()]));
      for (const w of this.workers) {
        for (const s of await w.finish()) mergeInto(merged.get(s.name)!, s);
      }
      return merged;
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
