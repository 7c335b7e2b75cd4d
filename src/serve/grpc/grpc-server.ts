/**
 * The gRPC layer: KServe v2 inference.GRPCInferenceService with Triton's extensions on @grpc/grpc-js, over the
 * same transport-neutral endpoint (src/serve/endpoint.ts) as HTTP: the same models, scheduler, queue limits,
 * shared memory, statistics and metrics. It adds the bearer token from `authorization` metadata, the message size
 * limit, cancellation of a call's queued work when the client goes away, and a drain that lets calls in flight
 * (streams included) finish. ModelInfer itself is answered on grpc-js's HTTP/2 streams by our own hot path
 * (src/serve/grpc/unary-infer.ts); grpc-js serves the rest. Shared memory is its caller's (the digest of the
 * `authorization` metadata, as HTTP's header: src/serve/endpoint.ts `ownerOfAuthorization`).
 */
import { timingSafeEqual } from 'node:crypto';
import {
  Server,
  ServerCredentials,
  status,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Http2Session, Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { YqpError } from '../../errors.js';
import { modelConfigType } from '../../repository/triton-config.js';
import { tritonConfigOf } from '../../repository/triton-export.js';
import { BufferPool } from '../buffer-pool.js';
import { ownerOfAuthorization, type InferResult, type InferenceEndpoint } from '../endpoint.js';
import { grpcInferResponse, parameterValue, parseGrpcInferRequest } from './infer-messages.js';
import { inferenceService, toInt, type Message } from './service.js';
import { toServiceError } from './status.js';
import { serveUnaryInfer, takesStream, type UnaryInferHost } from './unary-infer.js';

export interface GrpcOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8001 (Triton's gRPC port); 0 picks a free one. */
  port?: number;
  /** Calls must carry `authorization: Bearer <token>` metadata (ServerLive and ServerReady excepted). */
  authToken?: string;
  /** Largest request message in bytes (default 64 MiB, as the HTTP body limit). */
  maxMessageBytes?: number;
}

type SharedMemoryKind = 'system' | 'cuda';

/** The RPCs a load balancer's health check makes without credentials (HTTP's /v2/health/* likewise). */
const OPEN_RPCS = new Set(['ServerLive', 'ServerReady']);

type Unary = (request: Message, call: ServerUnaryCall<Message, Message>, owner: string) => Promise<Message>;

/** The `authorization` metadata of a grpc-js call. */
function authorizationOf(metadata: { get(key: string): unknown[] }): string | undefined {
  const v = metadata.get('authorization')[0];
  return v === undefined ? undefined : String(v);
}

/** A repository or infer parameter map of oneofs as plain values ({string_param: 'x'} -> 'x'). */
function plainParameters(map: Message | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(map ?? {})) out[k] = parameterValue(p as Message);
  return out;
}

/**
 * HTTP/2's default 64 KiB flow-control windows stall a tensor request (a BlazeFace frame is 192 KiB) until the
 * server's event loop, busy with other requests, acknowledges each 64 KiB: the request waits for the server, not
 * the network. grpc-js has no server option for the windows, so they are set on the HTTP/2 server it creates: the
 * stream window in the SETTINGS it advertises, the connection window on each session; and no Nagle delay.
 */
const FLOW_WINDOW = 16 * 1024 * 1024;
function widenFlowControl(server: Server): void {
  const internals = server as unknown as { commonServerOptions?: { settings?: Record<string, unknown> } };
  if (internals.commonServerOptions)
    internals.commonServerOptions.settings = {
      ...internals.commonServerOptions.settings,
      initialWindowSize: FLOW_WINDOW,
    };
}

/** The HTTP/2 servers grpc-js listens with (it has no API for them). */
function http2ServersOf(server: Server): Http2Server[] {
  const internals = server as unknown as { http2Servers?: Map<Http2Server, unknown> };
  return [...(internals.http2Servers?.keys() ?? [])];
}

function widenSessions(h2: Http2Server): void {
  h2.on('session', (session: Http2Session) => {
    session.once('localSettings', () => session.setLocalWindowSize(FLOW_WINDOW));
  });
  // Nagle's algorithm against the client's delayed ACKs holds a response's last segment for up to 40 ms (grpc-js
  // turns it off on its client sockets, not on its server's).
  h2.on('connection', (socket: Socket) => socket.setNoDelay(true));
}

/**
 * Streams of ModelInfer go to our hot path, the rest to grpc-js's own 'stream' listener: grpc-js keeps the
 * sessions (and so the drain: a session it closes waits for our streams too), keepalive and every other RPC.
 */
function routeModelInfer(h2: Http2Server, host: UnaryInferHost): void {
  const grpcJs = h2.listeners('stream') as ((...args: unknown[]) => void)[];
  h2.removeAllListeners('stream');
  h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ...rest: unknown[]) => {
    if (takesStream(headers)) serveUnaryInfer(host, stream, headers);
    else for (const listener of grpcJs) listener.call(h2, stream, headers, ...rest);
  });
}

export class GrpcServer {
  readonly server: Server;
  private readonly expected?: Buffer;
  private closing?: Promise<void>;
  /** Open ModelStreamInfer calls with their requests still running: ended once those finish on a drain. */
  private readonly streams = new Map<ServerDuplexStream<Message, Message>, { pending: number }>();
  /** Request and response messages of the ModelInfer hot path (fresh ones would cost GC, as HTTP bodies did). */
  private readonly pool = new BufferPool();
  private readonly limit: number;

  constructor(
    readonly endpoint: InferenceEndpoint,
    readonly options: GrpcOptions = {},
  ) {
    const limit = options.maxMessageBytes ?? 64 * 1024 * 1024;
    this.limit = limit;
    this.server = new Server({
      'grpc.max_receive_message_length': limit,
      'grpc.max_send_message_length': -1,
      // Channelz's per-call bookkeeping has no reader here.
      'grpc.enable_channelz': 0,
    });
    widenFlowControl(this.server);
    if (options.authToken) this.expected = Buffer.from(`Bearer ${options.authToken}`);
    this.server.addService(inferenceService(), this.handlers());
  }

  /** Binds and starts; resolves to host:port. */
  listen(): Promise<string> {
    const host = this.options.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      this.server.bindAsync(
        `${host.includes(':') ? `[${host}]` : host}:${this.options.port ?? 8001}`,
        ServerCredentials.createInsecure(),
        (err, port) => {
          if (err) return reject(err);
          for (const h2 of http2ServersOf(this.server)) {
            widenSessions(h2);
            routeModelInfer(h2, this.unaryInferHost());
          }
          resolve(`${host}:${port}`);
        },
      );
    });
  }

  /**
   * Graceful stop: new calls are refused, calls in flight finish (streams end once their requests are
   * answered). The endpoint itself is closed by its owner (the HTTP server), after this. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const [call, s] of this.streams) if (s.pending === 0) call.end();
      this.server.tryShutdown(() => resolve());
    });
    return this.closing;
  }

  private authorized(authorization: string | undefined): boolean {
    if (!this.expected) return true;
    const given = Buffer.from(authorization ?? '');
    return given.length === this.expected.length && timingSafeEqual(given, this.expected);
  }

  private refusal(
    name: string,
    authorization: string | undefined,
  ): { code: status; details: string } | undefined {
    if (this.closing) return { code: status.UNAVAILABLE, details: 'The server is shutting down' };
    if (!OPEN_RPCS.has(name) && !this.authorized(authorization))
      return {
        code: status.UNAUTHENTICATED,
        details: 'Missing or wrong bearer token in the authorization metadata',
      };
    return undefined;
  }

  private unaryInferHost(): UnaryInferHost {
    return {
      pool: this.pool,
      maxMessageBytes: this.limit,
      refusal: (authorization) => this.refusal('ModelInfer', authorization),
      infer: (request, signal, authorization, encode) =>
        this.infer(request, signal, ownerOfAuthorization(authorization), encode),
    };
  }

  private handlers(): UntypedServiceImplementation {
    const ep = this.endpoint;
    const region = (name: unknown) => (typeof name === 'string' && name !== '' ? name : undefined);
    const version = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    const shmStatus = (kind: SharedMemoryKind) => async (r: Message, _call: unknown, owner: string) => ({
      regions: Object.fromEntries(
        (ep.sharedMemoryStatus(kind, region(r.name), owner) as { name: string }[]).map((s) => [s.name, s]),
      ),
    });
    const unary: Record<string, Unary> = {
      ServerLive: async () => ({ live: true }),
      ServerReady: async () => ({ ready: !this.closing && ep.ready() }),
      ModelReady: async (r) => {
        try {
          ep.checkModelReady(r.name, version(r.version));
          return { ready: true };
        } catch {
          return { ready: false };
        }
      },
      ServerMetadata: async () => ep.serverMetadata(),
      ModelMetadata: async (r) => ep.modelMetadata(r.name, version(r.version)),
      // Compressed ModelInfer calls (the others take the hot path, src/serve/grpc/unary-infer.ts).
      ModelInfer: (r, call, owner) => {
        // grpc-js emits 'cancelled' on every call's stream close, answered ones too: only a call still running
        // is aborted (an abort costs a DOMException and the scheduler's rejection handling).
        const abort = new AbortController();
        const onCancel = () => abort.abort();
        call.once('cancelled', onCancel);
        return this.infer(r, abort.signal, owner, grpcInferResponse).finally(() =>
          call.off('cancelled', onCancel),
        );
      },
      // fromObject: enums go on the wire as numbers.
      ModelConfig: async (r) => ({
        config: modelConfigType().fromObject(
          tritonConfigOf(ep.manager.get(r.name, version(r.version)).entry),
        ),
      }),
      ModelStatistics: async (r) => ep.modelStatistics(region(r.name), version(r.version)),
      RepositoryIndex: async (r) => ({ models: ep.index(r.ready === true) }),
      RepositoryModelLoad: async (r) => {
        await ep.load(r.model_name, plainParameters(r.parameters));
        return {};
      },
      RepositoryModelUnload: async (r) => {
        await ep.unload(r.model_name);
        return {};
      },
      SystemSharedMemoryStatus: shmStatus('system'),
      SystemSharedMemoryRegister: async (r, _call, owner) => {
        await ep.registerSharedMemory(
          'system',
          r.name,
          { key: r.key, offset: toInt(r.offset), byte_size: toInt(r.byte_size) },
          owner,
        );
        return {};
      },
      SystemSharedMemoryUnregister: async (r, _call, owner) => {
        await ep.unregisterSharedMemory('system', region(r.name), owner);
        return {};
      },
      CudaSharedMemoryStatus: shmStatus('cuda'),
      CudaSharedMemoryRegister: async (r, _call, owner) => {
        await ep.registerSharedMemory(
          'cuda',
          r.name,
          {
            raw_handle: {
              b64: Buffer.from((r.raw_handle as Uint8Array | undefined) ?? []).toString('base64'),
            },
            device_id: toInt(r.device_id),
            byte_size: toInt(r.byte_size),
          },
          owner,
        );
        return {};
      },
      CudaSharedMemoryUnregister: async (r, _call, owner) => {
        await ep.unregisterSharedMemory('cuda', region(r.name), owner);
        return {};
      },
    };
    const impl: UntypedServiceImplementation = {};
    for (const [name, fn] of Object.entries(unary))
      impl[name] = (call: ServerUnaryCall<Message, Message>, callback: sendUnaryData<Message>) => {
        const authorization = authorizationOf(call.metadata);
        const refused = this.refusal(name, authorization);
        if (refused) return callback(refused as never, null);
        fn(call.request, call, ownerOfAuthorization(authorization)).then(
          (res) => callback(null, res),
          (e: unknown) => callback(toServiceError(e) as never, null),
        );
      };
    impl.ModelStreamInfer = (call: ServerDuplexStream<Message, Message>) => this.stream(call);
    return impl;
  }

  /**
   * One inference of `owner`'s (its shared memory); `signal` aborts when the client goes away (its queued work is
   * dropped before it runs).
   */
  private infer<R>(
    r: Message,
    signal: AbortSignal,
    owner: string,
    encode: (result: InferResult) => R,
  ): Promise<R> {
    return this.endpoint.infer(
      {
        model: r.model_name,
        version: typeof r.model_version === 'string' && r.model_version !== '' ? r.model_version : undefined,
        parse: () => parseGrpcInferRequest(r),
        signal,
        owner,
      },
      encode,
    );
  }

  /**
   * ModelStreamInfer: each request answered on the stream as it completes (clients match answers by id); a
   * failed request answers error_message and the stream goes on, as in Triton.
   */
  private stream(call: ServerDuplexStream<Message, Message>): void {
    const authorization = authorizationOf(call.metadata);
    const refused = this.refusal('ModelStreamInfer', authorization);
    const owner = ownerOfAuthorization(authorization);
    if (refused) {
      call.emit('error', refused);
      return;
    }
    const state = { pending: 0 };
    this.streams.set(call, state);
    let ended = false;
    const abort = new AbortController();
    const finish = () => {
      if ((ended || this.closing) && state.pending === 0) {
        this.streams.delete(call);
        call.end();
      }
    };
    call.on('cancelled', () => abort.abort());
    call.on('data', (r: Message) => {
      if (this.closing) {
        call.write({
          error_message: 'The server is shutting down',
          infer_response: { id: r.id ?? '', model_name: r.model_name ?? '' },
        });
        return;
      }
      state.pending++;
      this.infer(r, abort.signal, owner, grpcInferResponse)
        .then(
          (res) => call.write({ error_message: '', infer_response: res }),
          (e: unknown) =>
            call.write({
              error_message: e instanceof YqpError || e instanceof Error ? e.message : String(e),
              infer_response: {
                id: r.id ?? '',
                model_name: r.model_name ?? '',
                model_version: r.model_version ?? '',
              },
            }),
        )
        .finally(() => {
          state.pending--;
          finish();
        });
    });
    call.on('end', () => {
      ended = true;
      finish();
    });
    call.on('error', () => {
      ended = true;
      abort.abort();
    });
  }
}
