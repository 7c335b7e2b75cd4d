/**
 * Prometheus metrics (prom-client) on a registry of the server's own, so several servers in one process
 * (tests) never share counters. Names follow the request path in DESIGN.md: queue, compute, total.
 */
import client from 'prom-client';
import { sample as sampleNvml, type GpuSample, type NvmlSample } from '../gpu/nvml.js';
import type { Model } from '../model.js';
import type { BatchEvent } from '../scheduler/scheduler.js';

const LATENCY_BUCKETS = [
  0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5, 5, 10,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

export type NvmlSampler = () => NvmlSample;

export class ServerMetrics {
  readonly registry = new client.Registry();
  readonly requests: client.Counter<'model' | 'outcome'>;
  readonly total: client.Histogram<'model'>;
  readonly queue: client.Histogram<'model'>;
  readonly compute: client.Histogram<'model'>;
  readonly batchSize: client.Histogram<'model'>;
  readonly contextBusy: client.Counter<'model' | 'context' | 'device'>;
  readonly inFlight: client.Gauge<'model'>;
  readonly workerRequests: client.Counter<'worker'>;
  private readonly models = new Map<string, Model>();
  private readonly listeners = new Map<Model, (e: BatchEvent) => void>();

  constructor() {
    const registers = [this.registry];
    this.requests = new client.Counter({
      name: 'yqp_inference_requests_total',
      help: 'Inference requests by model and outcome (success, bad_request, not_found, queue_full, unavailable, timeout, cancelled, error)',
      labelNames: ['model', 'outcome'],
      registers,
    });
    this.total = new client.Histogram({
      name: 'yqp_request_duration_seconds',
      help: 'Total time of an inference request, from body received to response ready',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queue = new client.Histogram({
      name: 'yqp_queue_duration_seconds',
      help: 'Time a request waited in the scheduler queue',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.compute = new client.Histogram({
      name: 'yqp_compute_duration_seconds',
      help: 'Time of one backend run (one batch on one context)',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.batchSize = new client.Histogram({
      name: 'yqp_batch_size',
      help: 'Batch size of each backend run',
      labelNames: ['model'],
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.contextBusy = new client.Counter({
      name: 'yqp_context_busy_seconds_total',
      help: "Time each execution context spent running batches (on a GPU: its CUDA stream's runs, up to their output copies; the native runner's own measure of its run where it reports one); rate() over wall time is the context's utilization",
      labelNames: ['model', 'context', 'device'],
      registers,
    });
    this.inFlight = new client.Gauge({
      name: 'yqp_inflight_requests',
      help: 'Inference requests received and not yet answered',
      labelNames: ['model'],
      registers,
    });
    this.workerRequests = new client.Counter({
      name: 'yqp_http_worker_requests_total',
      help: 'Inference requests answered by each server process (serve --http-workers): how evenly the load spreads',
      labelNames: ['worker'],
      registers,
    });
    const models = this.models;
    new client.Gauge({
      name: 'yqp_queue_depth',
      help: 'Requests waiting in the scheduler queue',
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        for (const [name, m] of models) this.set({ model: name }, m.scheduler.stats.queued);
      },
    });
    new client.Gauge({
      name: 'yqp_model_ready',
      help: 'Whether a model is loaded and ready (1) ',
      labelNames: ['model', 'version'],
      registers,
      // Several server processes (--http-workers): ready only where every one has it.
      aggregator: 'min',
      collect() {
        this.reset();
        for (const [name, m] of models) this.set({ model: name, version: String(m.version) }, 1);
      },
    });
    client.collectDefaultMetrics({ register: this.registry, prefix: 'yqp_process_' });
  }

  /** Why there are no GPU metrics (no addon, no NVML, no GPU), or undefined when there are. */
  gpuUnavailable?: string;

  /**
   * Adds the NVML GPU gauges when the GPU core's monitor reports (src/gpu/nvml.ts; PCIe counters skipped:
   * they cost ~20 ms a sample). One NVML sample per scrape feeds every gauge.
   */
  enableGpu(sampler: NvmlSampler = () => sampleNvml({ pcie: false })): boolean {
    const first = sampler();
    if (!first.available) {
      this.gpuUnavailable = first.reason;
      return false;
    }
    const registers = [this.registry];
    let latest: GpuSample[] = first.gpus;
    const gauge = (name: string, help: string, pick: (g: GpuSample) => number | undefined, refresh = false) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['gpu', 'name'],
        registers,
        // Every server process samples the same GPUs: one sample, not their sum.
        aggregator: 'first',
        collect() {
          if (refresh) {
            const s = sampler();
            latest = s.available ? s.gpus : [];
          }
          this.reset();
          for (const g of latest) {
            const v = pick(g);
            if (v !== undefined) this.set({ gpu: String(g.index), name: g.name ?? '' }, v);
          }
        },
      });
    // prom-client collects metrics in registration order: the first gauge takes the sample for all.
    gauge(
      'yqp_gpu_utilization_ratio',
      'GPU utilization (NVML), 0..1',
      (g) => (g.utilizationGpu === undefined ? undefined : g.utilizationGpu / 100),
      true,
    );
    gauge('yqp_gpu_memory_used_bytes', 'GPU memory used (NVML)', (g) => g.memoryUsed);
    gauge('yqp_gpu_memory_total_bytes', 'GPU memory total (NVML)', (g) => g.memoryTotal);
    gauge('yqp_gpu_power_watts', 'GPU power draw (NVML)', (g) => g.powerW);
    gauge('yqp_gpu_temperature_celsius', 'GPU temperature (NVML)', (g) => g.temperatureC);
    return true;
  }

  /** Follows one model's scheduler: batch sizes, queue and compute times. */
  track(model: Model): void {
    this.untrack(model);
    const name = model.name;
    this.models.set(name, model);
    const device = model.device;
    const onBatch = (e: BatchEvent) => {
      this.batchSize.observe({ model: name }, e.size);
      this.compute.observe({ model: name }, e.computeMs / 1000);
      if (!e.error)
        this.contextBusy.inc(
          { model: name, context: String(e.context), device },
          (e.timing?.runMs ?? e.computeMs) / 1000,
        );
      for (const q of e.queueMs) this.queue.observe({ model: name }, q / 1000);
    };
    this.listeners.set(model, onBatch);
    model.scheduler.on('batch', onBatch);
  }

  untrack(model: Model): void {
    const l = this.listeners.get(model);
    if (l) model.scheduler.off('batch', l);
    this.listeners.delete(model);
    if (this.models.get(model.name) === model) this.models.delete(model.name);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** The outcome label of a finished request, from its HTTP status. */
export function outcomeOf(status: number, code?: string): string {
  if (status < 400) return 'success';
  if (status === 404) return 'not_found';
  if (code === 'E_QUEUE_FULL') return 'queue_full';
  if (status === 503) return 'unavailable';
  if (status === 504) return 'timeout';
  if (status === 499) return 'cancelled';
  if (status < 500) return 'bad_request';
  return 'error';
}

/** Every process's prom-client JSON summed into one Prometheus text (gauges marked `first`/`min` excepted). */
export async function aggregateMetrics(reports: unknown[]): Promise<string> {
  const registry = client.AggregatorRegistry.aggregate(
    reports.filter((r) => Array.isArray(r)) as Parameters<typeof client.AggregatorRegistry.aggregate>[0],
  );
  return registry.metrics();
}
