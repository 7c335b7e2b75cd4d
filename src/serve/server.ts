/**
 * The HTTP layer: KServe v2 / Triton HTTP/REST on fastify over the transport-neutral endpoint
 * (src/serve/endpoint.ts): routing, the optional bearer token, the body reader and limit, Triton's JSON and
 * binary framing (src/serve/protocol.ts), statuses and Retry-After, and a graceful drain.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { YqpError } from '../errors.js';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BODY_SCANNED, BODY_SLAB, BodyBudget, parseJsonBody, readBody } from './body-reader.js';
import { maxRequestElements } from './input-check.js';
import { JsonScanner } from './json-scan.js';
import { BufferPool } from './buffer-pool.js';
import { InferenceEndpoint, ownerOfAuthorization } from './endpoint.js';
import { statusOf } from './http-status.js';
import type { ServerMetrics } from './metrics.js';
import { describeIndexEntry, describeWarmup, type ModelManager } from './model-manager.js';
import {
  DEFAULT_BODY_LIMIT,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type ServerOptions,
} from './options.js';
import { HEADER_LENGTH, encodeInferResponse, parseInferRequest } from './protocol.js';
import type { SharedMemoryKind, SharedMemoryRegistry } from './shared-memory.js';

export { DEFAULT_BODY_LIMIT, type ServerOptions } from './options.js';

interface ModelParams {
  model: string;
  version?: string;
}

/**
 * Shared memory reaches memory outside the server: on an interface other than loopback it needs a token, or
 * anyone who can connect could register regions.
 */
function checkExposure(options: ServerOptions): void {
  const host = options.host ?? '127.0.0.1';
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if ((options.sharedMemory ?? []).length > 0 && !loopback && !options.authToken)
    throw new YqpError(
      'E_ARGUMENT',
      `Shared memory (--shared-memory) on ${host}, an interface other than loopback, needs an auth token (--auth-token, --auth-token-file or YQP_AUTH_TOKEN)`,
      { argument: '--shared-memory' },
    );
}

/** Who a request comes from, as far as it can be told: a digest of its Authorization header. */
function ownerOf(req: FastifyRequest): string {
  return ownerOfAuthorization(req.headers.authorization);
}

export class InferenceServer {
  readonly app: FastifyInstance;
  /** Request and response bodies (see BufferPool: fresh ones cost a full GC every few dozen requests). */
  private readonly buffers = new BufferPool();
  private readonly retryAfter: string;
  private readonly budget: BodyBudget;
  /** Paths a client must not see in messages (they stay in the server's log). */
  private readonly hidden: string[];
  private closing?: Promise<void>;
  /** Other transports on the same endpoint (gRPC): drained with this one. */
  private readonly transports: { close(): Promise<void> }[] = [];

  private constructor(
    readonly options: ServerOptions,
    readonly endpoint: InferenceEndpoint,
  ) {
    this.retryAfter = String(options.retryAfterSeconds ?? 1);
    const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
    this.budget = new BodyBudget(options.maxInflightBodyBytes ?? 4 * bodyLimit, this.retryAfter);
    const repo = resolve(options.modelRepository);
    this.hidden = [repo, resolve(repo, '..'), process.cwd()].filter((p) => p.length > 1);
    const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.app = Fastify({
      logger: options.logger ?? false,
      bodyLimit,
      // A closing server answers 503 on connections it still holds, instead of taking new work.
      return503OnClosing: true,
      // Socket idle: a connection silent this long is closed, whatever it was doing.
      connectionTimeout: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      requestTimeout,
      // Node checks the headers and request deadlines every connectionsCheckingInterval (30 s by default):
      // often enough here that a trickling client is dropped near its deadline.
      serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
        const server = createServer(
          {
            headersTimeout,
            requestTimeout,
            connectionsCheckingInterval: Math.max(100, Math.min(headersTimeout, requestTimeout) / 4),
          },
          handler,
        );
        server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
        return server;
      },
    });
    this.routes();
  }

  /** Creates the server and loads the models (failures recorded, not thrown). */
  static async create(options: ServerOptions): Promise<InferenceServer> {
    checkExposure(options);
    return new InferenceServer(options, await InferenceEndpoint.create(options));
  }

  get manager(): ModelManager {
    return this.endpoint.manager;
  }
  get metrics(): ServerMetrics {
    return this.endpoint.metrics;
  }
  get shm(): SharedMemoryRegistry {
    return this.endpoint.shm;
  }
  /** Why CUDA shared memory cannot be registered here, or undefined when it can. */
  get cudaSharedMemoryUnavailable(): string | undefined {
    return this.endpoint.cudaSharedMemoryUnavailable;
  }

  /** Adds a transport serving the same endpoint; close() drains it before the models are freed. */
  attach(transport: { close(): Promise<void> }): void {
    this.transports.push(transport);
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
      this.endpoint.stopAccepting();
      // Connections busy at close time go idle only after their answer; keep-alive would hold them (and
      // the process) open for its timeout, so they are told to close and idle ones are closed as they come.
      const sweep = setInterval(() => this.app.server.closeIdleConnections(), 20);
      try {
        // Every transport on the endpoint drains before the models go.
        await Promise.all([this.app.close(), ...this.transports.map((t) => t.close())]);
      } finally {
        clearInterval(sweep);
      }
      await this.endpoint.close();
    })();
    return this.closing;
  }

  private routes(): void {
    const app = this.app;
    const opts = this.options;
    const ep = this.endpoint;
    // Bodies arrive as raw bytes whatever the content type: JSON and binary framing are parsed here, so
    // every malformed body gets Triton's error JSON.
    app.removeAllContentTypeParsers();
    const limit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
    app.addContentTypeParser('*', (req, payload, done) =>
      readBody(req, payload, limit, this.buffers, done, {
        budget: this.budget,
        scanner: (r) => this.scannerFor(r),
      }),
    );
    // A request's share of the body budget goes back once it is answered or its client went away.
    app.addHook('onRequest', async (req, reply) => {
      reply.raw.once('close', () => this.budget.release(req));
    });

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

    app.setErrorHandler((error, req, reply) => {
      const status = statusOf(error);
      if (status === 503) reply.header('Retry-After', this.retryAfter);
      const message =
        (error as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? `Request body is larger than the limit of ${limit} bytes (--max-body-bytes)`
          : error instanceof Error
            ? error.message
            : String(error);
      if (status >= 500) req.log.error({ err: error }, 'request failed');
      reply.code(status).send({ error: this.forClient(message) });
    });
    app.setNotFoundHandler((req, reply) => {
      reply.code(404).send({ error: `Not found: ${req.method} ${req.url.split('?')[0]}` });
    });

    // --- server ---
    app.get('/v2', async () => ep.serverMetadata());
    app.get('/v2/health/live', async (_req, reply) => reply.code(200).send());
    app.get('/v2/health/ready', async (_req, reply) =>
      reply.code(this.closing === undefined && ep.ready() ? 200 : 503).send(),
    );
    app.get('/metrics', async (_req, reply) =>
      reply.header('Content-Type', this.metrics.contentType).send(await ep.metricsText()),
    );

    // --- models ---
    type ModelRequest = FastifyRequest<{ Params: ModelParams }>;
    const metadata = async (req: ModelRequest) => ep.modelMetadata(req.params.model, req.params.version);
    app.get('/v2/models/:model', metadata);
    app.get('/v2/models/:model/versions/:version', metadata);
    const ready = async (req: ModelRequest, reply: FastifyReply) => {
      try {
        ep.checkModelReady(req.params.model, req.params.version);
        return reply.code(200).send();
      } catch (e) {
        // Triton answers "not ready" with 400 and unknown models with 404.
        const status = statusOf(e) === 404 ? 404 : 400;
        return reply.code(status).send({ error: this.forClient((e as Error).message) });
      }
    };
    app.get('/v2/models/:model/ready', ready);
    app.get('/v2/models/:model/versions/:version/ready', ready);
    const config = async (req: ModelRequest) => ep.modelConfig(req.params.model, req.params.version);
    app.get('/v2/models/:model/config', config);
    app.get('/v2/models/:model/versions/:version/config', config);
    const stats = async (req: FastifyRequest<{ Params: Partial<ModelParams> }>) =>
      ep.modelStatistics(req.params.model, req.params.version);
    app.get('/v2/models/stats', stats);
    app.get('/v2/models/:model/stats', stats);
    app.get('/v2/models/:model/versions/:version/stats', stats);

    const infer = (req: ModelRequest, reply: FastifyReply) => this.infer(req, reply);
    app.post('/v2/models/:model/infer', infer);
    app.post('/v2/models/:model/versions/:version/infer', infer);

    // --- repository ---
    app.post('/v2/repository/index', async (req) =>
      ep
        .index(parseJsonBody(req.body).ready === true)
        .map((e) => (e.reason ? { ...e, reason: this.forClient(e.reason) } : e)),
    );
    app.post('/v2/repository/models/:model/load', async (req: ModelRequest, reply) => {
      const body = parseJsonBody(req.body);
      await ep.load(req.params.model, (body.parameters ?? {}) as Record<string, unknown>);
      return reply.code(200).send();
    });
    app.post('/v2/repository/models/:model/unload', async (req: ModelRequest, reply) => {
      parseJsonBody(req.body);
      await ep.unload(req.params.model);
      return reply.code(200).send();
    });

    // --- shared memory: the system and CUDA extensions have the same five endpoints ---
    type RegionRequest = FastifyRequest<{ Params: { region?: string } }>;
    for (const kind of ['system', 'cuda'] as SharedMemoryKind[]) {
      const base = `/v2/${kind}sharedmemory`;
      app.get(`${base}/status`, async (req) => ep.sharedMemoryStatus(kind, undefined, ownerOf(req)));
      app.get(`${base}/region/:region/status`, async (req: RegionRequest) =>
        ep.sharedMemoryStatus(kind, req.params.region, ownerOf(req)),
      );
      app.post(`${base}/region/:region/register`, async (req: RegionRequest, reply) => {
        await ep.registerSharedMemory(kind, req.params.region!, parseJsonBody(req.body), ownerOf(req));
        return reply.code(200).send();
      });
      app.post(`${base}/unregister`, async (req, reply) => {
        await ep.unregisterSharedMemory(kind, undefined, ownerOf(req));
        return reply.code(200).send();
      });
      app.post(`${base}/region/:region/unregister`, async (req: RegionRequest, reply) => {
        await ep.unregisterSharedMemory(kind, req.params.region, ownerOf(req));
        return reply.code(200).send();
      });
    }
  }

  /** The JSON limits of a request's body: an infer's by its model's largest inputs, the others' small. */
  private scannerFor(req: FastifyRequest): JsonScanner {
    const params = req.params as Partial<ModelParams> | undefined;
    if (req.method === 'POST' && params?.model && req.url.includes('/infer')) {
      const model = this.manager.loaded().find((m) => m.name === params.model);
      // Keys, names and parameters beside the data: a few thousand values.
      return new JsonScanner({ maxValues: (model ? maxRequestElements(model.config) : 0) + 4096 });
    }
    return new JsonScanner({ maxValues: 4096 });
  }

  /** A message without the server's own paths (the repository's, its folder's, the working folder's). */
  private forClient(message: string): string {
    let m = message;
    for (const p of this.hidden)
      m = m
        .split(p + '/')
        .join('')
        .split(p)
        .join('.');
    return m;
  }

  private async infer(req: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply): Promise<void> {
    // A client that goes away cancels its queued work (the scheduler drops it before it runs).
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort();
    };
    reply.raw.on('close', onClose);
    try {
      const encoded = await this.endpoint.infer(
        {
          model: req.params.model,
          version: req.params.version,
          parse: (check) =>
            parseInferRequest(
              Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
              req.headers[HEADER_LENGTH],
              {
                check,
                scanned: (req as { [BODY_SCANNED]?: boolean })[BODY_SCANNED] === true,
              },
            ),
          signal: abort.signal,
          owner: ownerOf(req),
        },
        (result) =>
          encodeInferResponse(result.model, result.id, result.outputs, (size) => this.buffers.take(size)),
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
    } finally {
      reply.raw.off('close', onClose);
      // Nothing reads the request body any more: its run has settled (a cancelled request never ran), and the
      // response is its own copy.
      const slab = (req as { [BODY_SLAB]?: Buffer })[BODY_SLAB];
      if (slab) this.buffers.give(slab);
    }
  }
}

/** Starts a server and stops it gracefully on SIGTERM/SIGINT (exit 0 once drained). */
export async function serve(
  options: ServerOptions,
  log: (line: string) => void = () => {},
): Promise<InferenceServer> {
  const server = await InferenceServer.create(options);
  for (const e of server.manager.index()) log(describeIndexEntry(e));
  for (const m of server.manager.loaded()) {
    for (const w of m.entry.warnings) log(`model ${m.name}: ${w}`);
    log(describeWarmup(m));
  }
  const address = await server.listen();
  log(
    `listening on ${address}${server.cudaSharedMemoryUnavailable ? ` (CUDA shared memory unavailable: ${server.cudaSharedMemoryUnavailable})` : ''}`,
  );
  if (options.grpcPort !== undefined) {
    const { GrpcServer } = await import('./grpc/grpc-server.js');
    const grpc = new GrpcServer(server.endpoint, {
      host: options.host,
      port: options.grpcPort,
      authToken: options.authToken,
      maxMessageBytes: options.bodyLimit,
    });
    server.attach(grpc);
    log(`gRPC listening on ${await grpc.listen()}`);
  }
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
