/**
 * The transport-neutral inference endpoint: what KServe v2 / Triton offers (server and model metadata,
 * readiness, inference, the model repository, statistics, shared memory, metrics) as plain methods, with
 * typed errors (src/errors.ts) a transport turns into its own statuses. The HTTP layer (src/serve/server.ts)
 * calls it; a gRPC layer would call the same methods with requests parsed from its own messages.
 */
import type { DeviceOutputs, OutputMemory } from '../backends/backend.js';
import { backendEntry } from '../backends/index.js';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { YqpError, describeValue } from '../errors.js';
import type { Model } from '../model.js';
import type { TensorMap } from '../tensor.js';
import { DTYPE_BYTES, deviceTensor, elementCount } from '../tensor.js';
import type { ClusterMember, ReportKind, SharedOp } from './cluster-messages.js';
import { statusOf } from './http-status.js';
import {
  fillFromBytes,
  type InferRequest,
  type RequestInput,
  type ResponseOutput,
} from './inference-request.js';
import { tritonConfigJsonOf } from '../repository/triton-export.js';
import { ServerMetrics, aggregateMetrics, outcomeOf } from './metrics.js';
import { ModelManager } from './model-manager.js';
import { DEFAULT_BODY_LIMIT, DEFAULT_MAX_TIMEOUT_US, type EndpointOptions } from './options.js';
import {
  SharedMemoryRegistry,
  findCudaIpc,
  type CudaIpcOpen,
  type SharedMemoryKind,
} from './shared-memory.js';
import { checkInput, type InputHeader } from './input-check.js';
import { Semaphore } from './semaphore.js';
import { ModelStatistics, mergeStats, statsKey, type ModelStats } from './statistics.js';
import { DATATYPE_TO_DTYPE, DTYPE_TO_DATATYPE, bytesOfTyped } from './tensor-codec.js';

const PACKAGE_VERSION = (() => {
  try {
    const here = dirname(fileURLToPath(import.meta.url));
    return (JSON.parse(readFileSync(join(here, '..', '..', 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
})();

function platformOf(model: Model): string {
  return backendEntry(model.config.backend).platform;
}

/** One inference as a transport hands it over. */
export interface InferCall {
  model: string;
  version?: string;
  /**
   * Parses the transport's request into the neutral shape; called once the model is known, so a malformed
   * request counts as a failed request of that model (as Triton counts it). `check` is called with each
   * input's header before its data is decoded (it throws for what the model cannot take).
   */
  parse(check: (input: InputHeader) => void): InferRequest;
  /** Aborted when the client goes away: its queued work is dropped before it runs. */
  signal?: AbortSignal;
  /** Who asks (the transport's tell of a caller, e.g. its token's digest): shared memory serves its owner only. */
  owner?: string;
}

/**
 * The owner a transport gives its caller, from the Authorization it sent (HTTP's header, gRPC's `authorization`
 * metadata: the same token is the same caller over both): a digest, so the token itself is kept nowhere; '' for
 * callers that send none.
 */
export function ownerOfAuthorization(authorization: string | undefined): string {
  return authorization ? createHash('sha256').update(authorization).digest('hex').slice(0, 16) : '';
}

/** What a transport encodes into its response. */
export interface InferResult {
  model: { name: string; version: string };
  id?: string;
  /** In the order asked for (or the model's), shared-memory outputs already written. */
  outputs: ResponseOutput[];
}

export class InferenceEndpoint implements ClusterMember {
  readonly manager: ModelManager;
  readonly metrics = new ServerMetrics();
  readonly shm: SharedMemoryRegistry;
  readonly statistics = new ModelStatistics();
  private readonly workerLabel: string;
  private readonly cudaReason?: string;
  private draining = false;
  private readonly decodes: Semaphore;

  private constructor(
    readonly options: EndpointOptions,
    cuda: { open?: CudaIpcOpen; reason?: string },
  ) {
    this.workerLabel = String(options.cluster?.share.index ?? 0);
    this.cudaReason = cuda.open ? undefined : cuda.reason;
    this.shm = new SharedMemoryRegistry(cuda, {
      kinds: options.sharedMemory,
      keyPrefix: options.sharedMemoryKeyPrefix,
      maxRegions: options.sharedMemoryMaxRegions,
    });
    this.decodes = new Semaphore(options.maxImageDecodes ?? Math.max(1, availableParallelism()));
    this.manager = new ModelManager(
      options.modelRepository,
      options.loadOptions,
      options.perModel,
      options.cluster?.share,
    );
    this.manager.on('loaded', (m) => {
      this.metrics.track(m);
      this.statistics.follow(m);
    });
    this.manager.on('unloaded', (m) => this.metrics.untrack(m));
  }

  /** Creates the endpoint and loads the models (failures recorded, not thrown). */
  static async create(options: EndpointOptions): Promise<InferenceEndpoint> {
    if (typeof options.modelRepository !== 'string' || !existsSync(options.modelRepository))
      throw new YqpError(
        'E_NOT_FOUND',
        `Model repository ${JSON.stringify(options.modelRepository)} does not exist`,
        { argument: 'model-repository', expected: 'a folder of <name>/config.json entries' },
      );
    const endpoint = new InferenceEndpoint(options, options.cudaIpc ?? findCudaIpc());
    endpoint.metrics.enableGpu(options.nvmlSampler);
    await endpoint.manager.loadAll(options.models);
    return endpoint;
  }

  /** Not ready from now on (a drain began); requests still in flight finish. */
  stopAccepting(): void {
    this.draining = true;
  }

  /** Frees the models and the shared-memory regions (once the transports have drained). */
  async close(): Promise<void> {
    this.draining = true;
    await this.manager.closeAll();
    this.shm.close();
  }

  /** Why CUDA shared memory cannot be registered here, or undefined when it can. */
  get cudaSharedMemoryUnavailable(): string | undefined {
    return this.cudaReason;
  }

  // --- server ---

  serverMetadata(): { name: string; version: string; extensions: string[] } {
    return {
      name: 'yqp-trt',
      version: PACKAGE_VERSION,
      extensions: [
        'binary_tensor_data',
        'model_repository',
        'statistics',
        'system_shared_memory',
        'cuda_shared_memory',
      ],
    };
  }

  /** Every model asked for is loaded and no drain began. */
  ready(): boolean {
    return !this.draining && this.manager.ready();
  }

  /** Prometheus text: this process's, or every server process's sum. */
  async metricsText(): Promise<string> {
    const cluster = this.options.cluster;
    return cluster ? aggregateMetrics(await cluster.gather('metrics')) : this.metrics.text();
  }

  // --- models ---

  modelMetadata(name: string, version?: string) {
    const m = this.manager.get(name, version);
    return {
      name: m.name,
      versions: [String(m.version)],
      platform: platformOf(m),
      inputs: m.config.inputs.map((i) => ({
        name: i.name,
        datatype: DTYPE_TO_DATATYPE[i.dtype],
        shape: i.dims,
      })),
      outputs: m.config.outputs.map((o) => ({
        name: o.name,
        datatype: DTYPE_TO_DATATYPE[o.dtype],
        shape: o.dims,
      })),
    };
  }

  /** Throws E_NOT_FOUND for an unknown model and E_UNAVAILABLE-like errors for one that is not ready. */
  checkModelReady(name: string, version?: string): void {
    this.manager.get(name, version);
  }

  /** Triton's model configuration (config.pbtxt as read, or derived from config.json): src/repository/triton-export.ts */
  modelConfig(name: string, version?: string): Record<string, unknown> {
    return tritonConfigJsonOf(this.manager.get(name, version).entry);
  }

  /** The statistics extension: one model version, or every loaded one (summed over server processes). */
  async modelStatistics(name?: string, version?: string): Promise<{ model_stats: ModelStats[] }> {
    const models = name ? [this.manager.get(name, version)] : this.manager.loaded();
    const cluster = this.options.cluster;
    if (!cluster) return { model_stats: this.statistics.of(models) };
    const wanted = new Set(models.map((m) => statsKey(m.name, m.version)));
    return {
      model_stats: mergeStats((await cluster.gather('stats')) as ModelStats[][], (s) =>
        wanted.has(statsKey(s.name, s.version)),
      ),
    };
  }

  // --- inference ---

  /**
   * One inference: the model, the parsed request, shared memory read, images preprocessed, the run, outputs
   * selected (shared-memory ones written), then `encode` (the transport's response), with the metrics and
   * statistics of its outcome.
   */
  async infer<R>(call: InferCall, encode: (result: InferResult) => R): Promise<R> {
    const started = performance.now();
    const name = call.model;
    let model: Model | undefined;
    const label = this.manager.has(name) ? name : '(unknown)';
    this.metrics.inFlight.inc({ model: label });
    let status = 200;
    let code: string | undefined;
    const holds: (() => void)[] = []; // CUDA regions the run reads in place, held until it settles
    try {
      model = this.manager.get(name, call.version);
      const owner = call.owner ?? '';
      const config = model.config;
      const request = parseChecked(() => call.parse((h) => checkInput(config, h)));
      checkOutputNames(request);
      const timeoutUs = request.parameters.timeout;
      if (timeoutUs !== undefined && (typeof timeoutUs !== 'number' || !(timeoutUs >= 0)))
        throw new YqpError(
          'E_ARGUMENT',
          `Expected a non-negative number of microseconds for parameters.timeout but received ${describeValue(timeoutUs)}`,
          { argument: 'timeout' },
        );
      const feeds = await this.feedsOf(model, request.inputs, owner, holds);
      // Past Node's timer range a timeout would fire at once; a stated maximum keeps its meaning.
      const maxUs = this.options.maxTimeoutUs ?? DEFAULT_MAX_TIMEOUT_US;
      const outputs = await model.infer(feeds, {
        signal: call.signal,
        timeoutMs:
          typeof timeoutUs === 'number' && timeoutUs > 0 ? Math.min(timeoutUs, maxUs) / 1000 : undefined,
        outputs: this.deviceOutputsOf(model, request, owner, holds),
      });
      const selected = selectOutputs(model, request, outputs);
      for (const o of selected)
        if (o.sharedMemory && !o.tensor.device)
          this.shm.write(o.sharedMemory, bytesOfTyped(o.tensor.data), owner);
      return encode({
        model: { name: model.name, version: String(model.version) },
        id: request.id,
        outputs: selected,
      });
    } catch (e) {
      status = statusOf(e);
      code = (e as { code?: string }).code;
      throw e;
    } finally {
      for (const release of holds) release();
      const seconds = (performance.now() - started) / 1000;
      this.metrics.inFlight.dec({ model: label });
      this.metrics.requests.inc({ model: label, outcome: outcomeOf(status, code) });
      this.metrics.workerRequests.inc({ worker: this.workerLabel });
      if (model) {
        this.metrics.total.observe({ model: label }, seconds);
        this.statistics.record(model, status < 400, seconds);
      }
    }
  }

  /**
   * The outputs asked into CUDA regions on the model's own GPU, where its session writes outputs to device memory:
   * the run copies them there on the GPU (device to device, on its stream), not through the host. Each region is
   * held until the run settles. Undefined where there are none (the others are written after the run).
   */
  private deviceOutputsOf(
    model: Model,
    request: InferRequest,
    owner: string,
    holds: (() => void)[],
  ): DeviceOutputs | undefined {
    if (!model.deviceOutputs || !request.outputs) return undefined;
    let out: Record<string, OutputMemory> | undefined;
    for (const o of request.outputs) {
      if (!o.sharedMemory) continue;
      const view = this.shm.deviceView(o.sharedMemory, owner, model.device);
      if (!view) continue;
      holds.push(view.release);
      (out ??= {})[o.name] = { ptr: view.ptr, size: view.size };
    }
    return out;
  }

  /**
   * Tensors for the model from the request inputs: each checked against the model (name, datatype, element
   * count within its profiles) before shared memory is read or images decoded; images a bounded number of
   * requests at a time.
   */
  private async feedsOf(
    model: Model,
    inputs: RequestInput[],
    owner: string,
    holds: (() => void)[],
  ): Promise<TensorMap> {
    const feeds: TensorMap = {};
    for (const input of inputs) checkInput(model.config, input);
    for (const input of inputs) {
      if (input.sharedMemory) {
        const ref = input.sharedMemory;
        const count = elementCount(input.shape);
        const limit = this.options.bodyLimit ?? DEFAULT_BODY_LIMIT;
        const expected =
          input.datatype === 'BYTES' ? undefined : count * DTYPE_BYTES[DATATYPE_TO_DTYPE[input.datatype]];
        if (expected !== undefined ? ref.byteSize !== expected : ref.byteSize > limit)
          throw new YqpError(
            'E_SHAPE',
            expected !== undefined
              ? `Input ${JSON.stringify(input.name)} of shape [${input.shape.join(',')}] and datatype ${input.datatype} needs ${expected} bytes but shared_memory_byte_size is ${ref.byteSize}`
              : `Input ${JSON.stringify(input.name)} asks for ${ref.byteSize} bytes of BYTES from shared memory, more than the ${limit} a request may carry (--max-body-bytes)`,
            {
              argument: 'shared_memory_byte_size',
              expected: String(expected ?? limit),
              received: String(ref.byteSize),
            },
          );
        // A CUDA region on the model's own GPU is read by the run in place: no copy through the host.
        const view = expected !== undefined ? this.shm.deviceView(ref, owner, model.device) : undefined;
        if (view) {
          holds.push(view.release);
          const dtype = DATATYPE_TO_DTYPE[input.datatype];
          feeds[input.name] = deviceTensor(dtype, view, input.shape);
          continue;
        }
        fillFromBytes(input, this.shm.read(ref, owner), count);
      }
      if (input.bytes) {
        const bytes = input.bytes;
        if (bytes.length === 0)
          throw new YqpError('E_SHAPE', `Input ${JSON.stringify(input.name)} holds no images`, {
            argument: input.name,
          });
        feeds[input.name] = (await this.decodes.run(() => model.preprocess(bytes))).tensor;
      } else if (input.tensor) feeds[input.name] = input.tensor;
    }
    return feeds;
  }

  // --- repository ---

  index(readyOnly: boolean) {
    return this.manager.index(readyOnly);
  }

  /** Loads (or reloads) a model from the repository, in every server process. */
  async load(name: string, parameters: Record<string, unknown> = {}): Promise<void> {
    if (parameters.config !== undefined || Object.keys(parameters).some((k) => k.startsWith('file:')))
      throw new YqpError(
        'E_ARGUMENT',
        'Loading a model with an override config or files is not supported: load it from the repository',
        { argument: 'parameters' },
      );
    await this.shared({ op: 'load', model: name });
  }

  unload(name: string): Promise<void> {
    return this.shared({ op: 'unload', model: name });
  }

  // --- shared memory ---

  /** The owner's regions of a kind (or one of them). */
  sharedMemoryStatus(kind: SharedMemoryKind, region?: string, owner = '') {
    return kind === 'system' ? this.shm.systemStatus(region, owner) : this.shm.cudaStatus(region, owner);
  }

  /** Registers a region ({key, offset, byte_size} or {raw_handle, device_id, byte_size}) in every process. */
  async registerSharedMemory(
    kind: SharedMemoryKind,
    region: string,
    body: unknown,
    owner = '',
  ): Promise<void> {
    // Refused here too, so a disabled kind never reaches the primary.
    if (!this.shm.enabled(kind))
      throw new YqpError(
        'E_ARGUMENT',
        `${kind === 'system' ? 'System' : 'CUDA'} shared memory is disabled on this server (start it with --shared-memory ${kind})`,
        { argument: 'sharedmemory' },
      );
    await this.shared({ op: 'register', kind, region, body, owner });
  }

  /** Unregisters one of the owner's regions, or all of its regions of the kind. */
  unregisterSharedMemory(kind: SharedMemoryKind, region?: string, owner = ''): Promise<void> {
    return this.shared({ op: 'unregister', kind, region, owner });
  }

  // --- several server processes ---

  /** A change of the repository or shared-memory state: in every server process when there are several. */
  private shared(op: SharedOp): Promise<void> {
    return this.options.cluster ? this.options.cluster.broadcast(op) : this.apply(op);
  }

  /** Applies one change here (called for this process's own requests, or by the primary for another's). */
  async apply(op: SharedOp): Promise<void> {
    switch (op.op) {
      case 'load':
        await this.manager.load(op.model);
        return;
      case 'unload':
        await this.manager.unload(op.model);
        return;
      case 'register':
        if (op.kind === 'system') this.shm.registerSystem(op.region, op.body, op.owner);
        else this.shm.registerCuda(op.region, op.body, op.owner);
        return;
      case 'unregister':
        this.shm.unregister(op.kind, op.region, op.owner);
        return;
    }
  }

  /** This process's figures for the primary to sum: prom-client JSON, or the statistics of every model. */
  async report(what: ReportKind): Promise<unknown> {
    return what === 'metrics'
      ? this.metrics.registry.getMetricsAsJSON()
      : this.statistics.of(this.manager.loaded());
  }
}

/**
 * A transport's parse, its untyped failures (a RangeError of a hostile body, say) as the client's error: the
 * parsers check what they read, so what escapes them is still about the request.
 */
function parseChecked(parse: () => InferRequest): InferRequest {
  try {
    return parse();
  } catch (e) {
    if (e instanceof YqpError) throw e;
    throw new YqpError('E_ARGUMENT', `Malformed request: ${(e as Error).message ?? String(e)}`, {
      argument: 'body',
    });
  }
}

/** An output asked twice would be sent twice, or written into one region and not the other: refused, as inputs are. */
function checkOutputNames(request: InferRequest): void {
  const seen = new Set<string>();
  for (const o of request.outputs ?? []) {
    if (seen.has(o.name))
      throw new YqpError('E_ARGUMENT', `Output ${JSON.stringify(o.name)} appears twice`, {
        argument: o.name,
      });
    seen.add(o.name);
  }
}

/** The outputs a request asked for (or all of the model's, in its order), each with how it is to be sent. */
function selectOutputs(model: Model, request: InferRequest, outputs: TensorMap): ResponseOutput[] {
  if (!request.outputs)
    return model.config.outputs
      .filter((o) => outputs[o.name])
      .map((o) => ({ name: o.name, tensor: outputs[o.name], binary: request.binaryDataOutput }));
  return request.outputs.map((o) => {
    const t = outputs[o.name];
    if (!t)
      throw new YqpError(
        'E_ARGUMENT',
        `Unknown output ${JSON.stringify(o.name)}: the model's outputs are ${model.config.outputs.map((x) => JSON.stringify(x.name)).join(', ')}`,
        { argument: o.name },
      );
    return { name: o.name, tensor: t, binary: o.binary, sharedMemory: o.sharedMemory };
  });
}
