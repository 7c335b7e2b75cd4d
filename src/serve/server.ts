/**
 * The HTTP server: KServe v2 / Triton HTTP/REST protocol on fastify, with the binary tensor data, model
 * repository, statistics and system/CUDA shared-memory extensions, Prometheus metrics, an optional bearer
 * token, a body limit, backpressure (503 + Retry-After) and a graceful drain.
 */
import { timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { backendEntry } from '../backends/index.js';
import { YqpError, describeValue } from '../errors.js';
import type { Model } from '../model.js';
import { preprocessImages } from '../preprocess/cpu.js';
import type { TensorMap } from '../tensor.js';
import { ServerMetrics, outcomeOf, type NvmlSampler } from './metrics.js';
import { ModelManager, describeIndexEntry, describeWarmup, type ModelLoadOptions } from './model-manager.js';
import {
  DTYPE_TO_DATATYPE,
  HEADER_LENGTH,
  bytesOfTyped,
  encodeInferResponse,
  fillFromBytes,
  parseInferRequest,
  statusOf,
  type RequestInput,
  type ResponseOutput,
} from './protocol.js';
import { SharedMemoryRegistry, findCudaIpc, type CudaIpcOpen } from './shared-memory.js';
import { BufferPool } from './buffer-pool.js';
import { aggregateMetrics, type ClusterLink, type ReportKind, type SharedOp } from './cluster.js';
import { elementCount } from '../tensor.js';

const PACKAGE_VERSION = (() => {
  try {
    const here = dirname(fileURLToPath(import.meta.url));
    return (JSON.parse(readFileSync(join(here, '..', '..', 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
})();

export interface ServerOptions {
  modelRepository: string;
  /** Default 127.0.0.1: listening on other interfaces is a choice the user makes. */
  host?: string;
  /** Default 8000 (Triton's HTTP port); 0 picks a free one. */
  port?: number;
  /** Requests must carry `Authorization: Bearer <token>` (health endpoints excepted). */
  authToken?: string;
  /** Largest request body in bytes (default 64 MiB). */
  bodyLimit?: number;
  /** Load only these at start (default: every entry of the repository). */
  models?: string[];
  /** Options for every model (contexts, threadsPerContext, maxQueueSize, dynamicBatching). */
  loadOptions?: ModelLoadOptions;
  perModel?: Record<string, ModelLoadOptions>;
  /** Seconds a client is told to wait after a 503 (Retry-After). */
  retryAfterSeconds?: number;
  /** Allow the shared-memory extensions (Triton: --allow-client-shm); default true on 127.0.0.1 only. */
  allowSharedMemory?: boolean;
  /** For tests: an opener for CUDA IPC regions instead of the GPU core's. */
  cudaIpc?: { open?: CudaIpcOpen; reason?: string };
  /** For tests: an NVML sampler instead of the GPU core's. */
  nvmlSampler?: NvmlSampler;
  logger?: boolean;
  /** Set in each process of `serve --http-workers N` (src/serve/cluster.ts); never by hand. */
  cluster?: ClusterLink;
}

export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;

function platformOf(model: Model): string {
  return backendEntry(model.config.backend).platform;
}

interface ModelParams {
  model: string;
  version?: string;
}

interface Stats {
  success: { count: number; ns: number };
  fail: { count: number; ns: number };
  queue: { count: number; ns: number };
  computeInfer: { count: number; ns: number };
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

export class InferenceServer {
  readonly app: FastifyInstance;
  readonly manager: ModelManager;
  readonly metrics = new ServerMetrics();
  readonly shm: SharedMemoryRegistry;
  private readonly stats = new Map<Model, Stats>();
  /** Request and response bodies (see BufferPool: fresh ones cost a full GC every few dozen requests). */
  private readonly buffers = new BufferPool();
  private readonly retryAfter: string;
  private readonly workerLabel: string;
  private closing?: Promise<void>;
  private cudaReason?: string;

  private constructor(
    readonly options: ServerOptions,
    cuda: { open?: CudaIpcOpen; reason?: string },
  ) {
    this.retryAfter = String(options.retryAfterSeconds ?? 1);
    this.workerLabel = String(options.cluster?.share.index ?? 0);
    this.cudaReason = cuda.open ? undefined : cuda.reason;
    this.shm = new SharedMemoryRegistry(cuda);
    this.manager = new ModelManager(
      options.modelRepository,
      options.loadOptions,
      options.perModel,
      options.cluster?.share,
    );
    this.manager.on('loaded', (m) => this.follow(m));
    this.manager.on('unloaded', (m) => this.metrics.untrack(m));
    this.app = Fastify({
      logger: options.logger ?? false,
      bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
      // A closing server answers 503 on connections it still holds, instead of taking new work.
      return503OnClosing: true,
    });
    this.routes();
  }

  /** Creates the server and loads the models (failures recorded, not thrown). */
  static async create(options: ServerOptions): Promise<InferenceServer> {
    if (typeof options.modelRepository !== 'string' || !existsSync(options.modelRepository))
      throw new YqpError(
        'E_NOT_FOUND',
        `Model repository ${JSON.stringify(options.modelRepository)} does not exist`,
        { argument: 'model-repository', expected: 'a folder of <name>/config.json entries' },
      );
    const cuda = options.cudaIpc ?? findCudaIpc();
    const server = new InferenceServer(options, cuda);
    server.metrics.enableGpu(options.nvmlSampler);
    await server.manager.loadAll(options.models);
    return server;
  }

  async listen(): Promise<string> {
    return this.app.listen({ host: this.options.host ?? '127.0.0.1', port: this.options.port ?? 8000 });
  }

  /**
   * Graceful stop: no new connections or requests, in-flight ones finish (their queued work included),
   * then models are freed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Connections busy at close time go idle only after their answer; keep-alive would hold them (and
      // the process) open for its timeout, so they are told to close and idle ones are closed as they come.
      const sweep = setInterval(() => this.app.server.closeIdleConnections(), 20);
      try {
        await this.app.close();
      } finally {
        clearInterval(sweep);
      }
      await this.manager.closeAll();
      this.shm.close();
    })();
    return this.closing;
  }

  private follow(model: Model): void {
    this.metrics.track(model);
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

  private routes(): void {
    const app = this.app;
    const opts = this.options;
    // Bodies arrive as raw bytes whatever the content type: JSON and binary framing are parsed here, so
    // every malformed body gets Triton's error JSON.
    app.removeAllContentTypeParsers();
    const limit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
    app.addContentTypeParser('*', (req, payload, done) => readBody(req, payload, limit, this.buffers, done));

    if (opts.authToken) {
      const expected = Buffer.from(`Bearer ${opts.authToken}`);
      app.addHook('onRequest', async (req, reply) => {
        if (req.url.startsWith('/v2/health/')) return;
        const given = Buffer.from(req.headers.authorization ?? '');
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          reply.header('WWW-Authenticate', 'Bearer');
          reply.code(401).send({ error: 'Missing or wrong bearer token in the Authorization header' });
          return reply;
        }
      });
    }

    app.addHook('onSend', async (_req, reply) => {
      if (this.closing) reply.header('Connection', 'close');
    });

    app.setErrorHandler((error, _req, reply) => {
      const status = statusOf(error);
      if (status === 503) reply.header('Retry-After', this.retryAfter);
      const message =
        (error as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? `Request body is larger than the limit of ${opts.bodyLimit ?? DEFAULT_BODY_LIMIT} bytes (--max-body-bytes)`
          : error instanceof Error
            ? error.message
            : String(error);
      reply.code(status).send({ error: message });
    });
    app.setNotFoundHandler((req, reply) => {
      reply.code(404).send({ error: `Not found: ${req.method} ${req.url.split('?')[0]}` });
    });

    // --- server ---
    app.get('/v2', async () => ({
      name: 'yqp-trt',
      version: PACKAGE_VERSION,
      extensions: [
        'binary_tensor_data',
        'model_repository',
        'statistics',
        'system_shared_memory',
        'cuda_shared_memory',
      ],
    }));
    app.get('/v2/health/live', async (_req, reply) => reply.code(200).send());
    app.get('/v2/health/ready', async (_req, reply) => {
      const ready = this.closing === undefined && this.manager.ready();
      return reply.code(ready ? 200 : 503).send();
    });
    app.get('/metrics', async (_req, reply) =>
      reply
        .header('Content-Type', this.metrics.contentType)
        .send(
          opts.cluster
            ? await aggregateMetrics(await opts.cluster.gather('metrics'))
            : await this.metrics.text(),
        ),
    );

    // --- models ---
    const metadata = async (req: FastifyRequest<{ Params: ModelParams }>) => {
      const m = this.manager.get(req.params.model, req.params.version);
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
    };
    app.get('/v2/models/:model', metadata);
    app.get('/v2/models/:model/versions/:version', metadata);
    const ready = async (req: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply) => {
      try {
        this.manager.get(req.params.model, req.params.version);
        return reply.code(200).send();
      } catch (e) {
        // Triton answers "not ready" with 400 and unknown models with 404.
        const status = statusOf(e) === 404 ? 404 : 400;
        return reply.code(status).send({ error: (e as Error).message });
      }
    };
    app.get('/v2/models/:model/ready', ready);
    app.get('/v2/models/:model/versions/:version/ready', ready);
    const config = async (req: FastifyRequest<{ Params: ModelParams }>) =>
      this.manager.get(req.params.model, req.params.version).config;
    app.get('/v2/models/:model/config', config);
    app.get('/v2/models/:model/versions/:version/config', config);
    const stats = async (req: FastifyRequest<{ Params: Partial<ModelParams> }>) => {
      const models = req.params.model
        ? [this.manager.get(req.params.model, req.params.version)]
        : this.manager.loaded();
      if (!opts.cluster) return { model_stats: this.statsOf(models) };
      const wanted = new Set(models.map((m) => statsKey(m.name, m.version)));
      return {
        model_stats: mergeStats((await opts.cluster.gather('stats')) as ModelStats[][], (s) =>
          wanted.has(statsKey(s.name, s.version)),
        ),
      };
    };
    app.get('/v2/models/stats', stats);
    app.get('/v2/models/:model/stats', stats);
    app.get('/v2/models/:model/versions/:version/stats', stats);

    const infer = (req: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply) =>
      this.infer(req, reply);
    app.post('/v2/models/:model/infer', infer);
    app.post('/v2/models/:model/versions/:version/infer', infer);

    // --- repository ---
    app.post('/v2/repository/index', async (req) => {
      const body = parseJsonBody(req.body);
      return this.manager.index(body.ready === true);
    });
    app.post(
      '/v2/repository/models/:model/load',
      async (req: FastifyRequest<{ Params: ModelParams }>, reply) => {
        const body = parseJsonBody(req.body);
        const params = (body.parameters ?? {}) as Record<string, unknown>;
        if (params.config !== undefined || Object.keys(params).some((k) => k.startsWith('file:')))
          throw new YqpError(
            'E_ARGUMENT',
            'Loading a model with an override config or files is not supported: load it from the repository',
            { argument: 'parameters' },
          );
        await this.shared({ op: 'load', model: req.params.model });
        return reply.code(200).send();
      },
    );
    app.post(
      '/v2/repository/models/:model/unload',
      async (req: FastifyRequest<{ Params: ModelParams }>, reply) => {
        parseJsonBody(req.body);
        await this.shared({ op: 'unload', model: req.params.model });
        return reply.code(200).send();
      },
    );

    // --- shared memory ---
    const shmAllowed = () => {
      if (opts.allowSharedMemory === false)
        throw new YqpError(
          'E_ARGUMENT',
          'Shared memory registration is disabled on this server (start it with --allow-shared-memory)',
          { argument: 'sharedmemory' },
        );
    };
    type RegionParams = { region?: string };
    // The system and CUDA extensions have the same five endpoints; only the region kind differs.
    const extensions = [
      { kind: 'system' as const, status: (region?: string) => this.shm.systemStatus(region) },
      { kind: 'cuda' as const, status: (region?: string) => this.shm.cudaStatus(region) },
    ];
    for (const { kind, status } of extensions) {
      const base = `/v2/${kind}sharedmemory`;
      app.get(`${base}/status`, async () => status());
      app.get(`${base}/region/:region/status`, async (req: FastifyRequest<{ Params: RegionParams }>) =>
        status(req.params.region),
      );
      app.post(
        `${base}/region/:region/register`,
        async (req: FastifyRequest<{ Params: RegionParams }>, reply) => {
          shmAllowed();
          await this.shared({
            op: 'register',
            kind,
            region: req.params.region!,
            body: parseJsonBody(req.body),
          });
          return reply.code(200).send();
        },
      );
      app.post(`${base}/unregister`, async (_req, reply) => {
        await this.shared({ op: 'unregister', kind });
        return reply.code(200).send();
      });
      app.post(
        `${base}/region/:region/unregister`,
        async (req: FastifyRequest<{ Params: RegionParams }>, reply) => {
          await this.shared({ op: 'unregister', kind, region: req.params.region });
          return reply.code(200).send();
        },
      );
    }
  }

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
        if (op.kind === 'system') this.shm.registerSystem(op.region, op.body);
        else this.shm.registerCuda(op.region, op.body);
        return;
      case 'unregister':
        this.shm.unregister(op.kind, op.region);
        return;
    }
  }

  /** This process's figures for the primary to sum: prom-client JSON, or the statistics of every model. */
  async report(what: ReportKind): Promise<unknown> {
    return what === 'metrics'
      ? this.metrics.registry.getMetricsAsJSON()
      : this.statsOf(this.manager.loaded());
  }

  private statsOf(models: Model[]): ModelStats[] {
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

  /** Why CUDA shared memory cannot be registered here, or undefined when it can. */
  get cudaSharedMemoryUnavailable(): string | undefined {
    return this.cudaReason;
  }

  private async infer(req: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply): Promise<void> {
    const started = performance.now();
    const name = req.params.model;
    let model: Model | undefined;
    // A client that goes away cancels its queued work (the scheduler drops it before it runs).
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort();
    };
    reply.raw.on('close', onClose);
    const label = this.manager.has(name) ? name : '(unknown)';
    this.metrics.inFlight.inc({ model: label });
    let status = 200;
    let code: string | undefined;
    try {
      model = this.manager.get(name, req.params.version);
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const request = parseInferRequest(body, req.headers[HEADER_LENGTH]);
      const feeds = await this.feedsOf(model, request.inputs);
      const timeoutUs = request.parameters.timeout;
      if (timeoutUs !== undefined && (typeof timeoutUs !== 'number' || !(timeoutUs >= 0)))
        throw new YqpError(
          'E_ARGUMENT',
          `Expected a non-negative number of microseconds for parameters.timeout but received ${describeValue(timeoutUs)}`,
          { argument: 'timeout' },
        );
      const outputs = await model.infer(feeds, {
        signal: abort.signal,
        timeoutMs: typeof timeoutUs === 'number' && timeoutUs > 0 ? timeoutUs / 1000 : undefined,
      });
      const selected: ResponseOutput[] = request.outputs
        ? request.outputs.map((o) => {
            const t = outputs[o.name];
            if (!t)
              throw new YqpError(
                'E_ARGUMENT',
                `Unknown output ${JSON.stringify(o.name)}: the model's outputs are ${model!.config.outputs.map((x) => JSON.stringify(x.name)).join(', ')}`,
                { argument: o.name },
              );
            return { name: o.name, tensor: t, binary: o.binary, sharedMemory: o.sharedMemory };
          })
        : model.config.outputs
            .filter((o) => outputs[o.name])
            .map((o) => ({ name: o.name, tensor: outputs[o.name], binary: request.binaryDataOutput }));
      for (const o of selected)
        if (o.sharedMemory) this.shm.write(o.sharedMemory, bytesOfTyped(o.tensor.data));
      const encoded = encodeInferResponse(
        { name: model.name, version: String(model.version) },
        request.id,
        selected,
        (size) => this.buffers.take(size),
      );
      if (encoded.headerLength !== undefined) {
        reply.header('Content-Type', 'application/octet-stream');
        reply.header('Inference-Header-Content-Length', String(encoded.headerLength));
      } else reply.header('Content-Type', 'application/json');
      // The response bytes are a pooled slab too: it goes back once Node has handed them to the socket.
      if (encoded.slab) {
        const slab = encoded.slab;
        const release = () => {
          reply.raw.off('finish', release).off('close', release);
          this.buffers.give(slab);
        };
        reply.raw.once('finish', release).once('close', release);
      }
      await reply.code(200).send(encoded.body);
    } catch (e) {
      status = statusOf(e);
      code = (e as { code?: string }).code;
      throw e;
    } finally {
      reply.raw.off('close', onClose);
      // Nothing reads the request body any more: its run has settled (a cancelled request never ran), and the
      // response is its own copy.
      const slab = (req as { [BODY_SLAB]?: Buffer })[BODY_SLAB];
      if (slab) this.buffers.give(slab);
      const seconds = (performance.now() - started) / 1000;
      this.metrics.inFlight.dec({ model: label });
      this.metrics.requests.inc({ model: label, outcome: outcomeOf(status, code) });
      this.metrics.workerRequests.inc({ worker: this.workerLabel });
      if (model) {
        this.metrics.total.observe({ model: label }, seconds);
        const s = this.stats.get(model);
        if (s) {
          const bucket = status < 400 ? s.success : s.fail;
          bucket.count++;
          bucket.ns += Math.round(seconds * 1e9);
          s.lastInference = Date.now();
        }
      }
    }
  }

  /** Tensors for the model from the request inputs: shared memory read, image bytes preprocessed. */
  private async feedsOf(model: Model, inputs: RequestInput[]): Promise<TensorMap> {
    const feeds: TensorMap = {};
    for (const input of inputs) {
      if (input.sharedMemory)
        fillFromBytes(input, this.shm.read(input.sharedMemory), elementCount(input.shape));
      if (input.bytes) {
        const spec = model.config.preprocessing;
        if (!spec || spec.input !== input.name) {
          const declared = model.config.inputs.find((i) => i.name === input.name);
          throw new YqpError(
            'E_DTYPE',
            declared
              ? `Input ${JSON.stringify(input.name)} expects datatype ${DTYPE_TO_DATATYPE[declared.dtype]} but received BYTES (only the model's image input takes encoded images)`
              : `Unknown input ${JSON.stringify(input.name)}: the model's inputs are ${model.config.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`,
            {
              argument: input.name,
              expected: declared ? DTYPE_TO_DATATYPE[declared.dtype] : undefined,
              received: 'BYTES',
            },
          );
        }
        if (input.bytes.length === 0)
          throw new YqpError('E_SHAPE', `Input ${JSON.stringify(input.name)} holds no images`, {
            argument: input.name,
          });
        const { tensor } = await preprocessImages(input.bytes, spec);
        feeds[input.name] = tensor;
      } else if (input.tensor) feeds[input.name] = input.tensor;
    }
    return feeds;
  }
}

interface ModelStats {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<'success' | 'fail' | 'queue' | 'compute_infer', { count: number; ns: number }>;
}

/** One model version's key among statistics (a name cannot hold NUL). */
const statsKey = (name: string, version: string | number) => `${name}\u0000${version}`;

/** Several processes' statistics summed per model and version (Triton's statistics extension shape). */
function mergeStats(reports: ModelStats[][], keep: (s: ModelStats) => boolean): ModelStats[] {
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

/** Where a request keeps the pooled slab its body was read into, to give it back once the request is done. */
const BODY_SLAB = Symbol('yqp.bodySlab');

/**
 * Reads a request body into a pooled slab (Fastify's own reader concatenates into a fresh buffer per request).
 * With a Content-Length the bytes are copied once into place; without one (chunked) they are gathered and joined.
 * Over `limit` bytes is Fastify's 413 error, so the error handler words it as before.
 */
function readBody(
  req: FastifyRequest,
  payload: NodeJS.ReadableStream,
  limit: number,
  pool: BufferPool,
  done: (err: Error | null, body?: Buffer) => void,
): void {
  const tooLarge = () =>
    Object.assign(new Error('Request body is too large'), {
      code: 'FST_ERR_CTP_BODY_TOO_LARGE',
      statusCode: 413,
    });
  const declared = req.headers['content-length'];
  const length = declared === undefined ? undefined : Number(declared);
  if (length !== undefined && length > limit) {
    payload.resume();
    done(tooLarge());
    return;
  }
  const sized = length !== undefined && Number.isSafeInteger(length) && length >= 0;
  const slab = sized ? pool.take(length) : undefined;
  const chunks: Buffer[] = [];
  let received = 0;
  let failed = false;
  const fail = (e: Error) => {
    if (failed) return;
    failed = true;
    if (slab) pool.give(slab);
    done(e);
  };
  payload.on('data', (chunk: Buffer) => {
    if (failed) return;
    if (received + chunk.length > (sized ? length : limit)) {
      fail(
        !sized
          ? tooLarge()
          : Object.assign(new Error(`Request body is longer than its Content-Length of ${length} bytes`), {
              statusCode: 400,
            }),
      );
      return;
    }
    if (slab) chunk.copy(slab, received);
    else chunks.push(chunk);
    received += chunk.length;
  });
  payload.on('error', (e: Error) => fail(e));
  payload.on('end', () => {
    if (failed) return;
    if (!slab) {
      done(null, Buffer.concat(chunks, received));
      return;
    }
    if (received !== length) {
      fail(
        Object.assign(new Error(`Request body ended after ${received} of its ${length} bytes`), {
          statusCode: 400,
        }),
      );
      return;
    }
    (req as { [BODY_SLAB]?: Buffer })[BODY_SLAB] = slab;
    done(null, slab.subarray(0, received));
  });
}

/** Bodies of the control endpoints: empty or a JSON object. */
function parseJsonBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : String(body);
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new YqpError('E_ARGUMENT', `Malformed JSON in the request body: ${(e as Error).message}`, {
      argument: 'body',
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a JSON object as the request body but received ${describeValue(parsed)}`,
      {
        argument: 'body',
      },
    );
  return parsed as Record<string, unknown>;
}

/** Starts a server and stops it gracefully on SIGTERM/SIGINT (exit 0 once drained). */
export async function serve(
  options: ServerOptions,
  log: (line: string) => void = () => {},
): Promise<InferenceServer> {
  const server = await InferenceServer.create(options);
  for (const e of server.manager.index()) log(describeIndexEntry(e));
  for (const m of server.manager.loaded()) log(describeWarmup(m));
  const address = await server.listen();
  log(
    `listening on ${address}${server.cudaSharedMemoryUnavailable ? ` (CUDA shared memory unavailable: ${server.cudaSharedMemoryUnavailable})` : ''}`,
  );
  const stop = drainThenExit(server, log, true);
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return server;
}

/**
 * An idempotent stop for a serving process: drains `server` (in-flight and queued requests answered), then exits
 * 0, or 1 when draining failed (said through `log`). `announce` logs the drain's start and end (the one process
 * a user watches; the processes of `--http-workers` leave that to their primary).
 */
export function drainThenExit(
  server: InferenceServer,
  log: (line: string) => void,
  announce: boolean,
): (why: string) => void {
  let stopping = false;
  return (why) => {
    if (stopping) return;
    stopping = true;
    if (announce) log(`${why}: draining`);
    server.close().then(
      () => {
        if (announce) log('drained, exiting');
        process.exit(0);
      },
      (e: unknown) => {
        log(`error while draining: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
}
