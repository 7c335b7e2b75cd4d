/** What `yqp-trt serve` is started with: the endpoint's options and the HTTP layer's. */
import type { ClusterChannel } from './cluster-messages.js';
import type { NvmlSampler } from './metrics.js';
import type { ModelLoadOptions } from './model-manager.js';
import type { CudaIpcOpen, SharedMemoryKind } from './shared-memory.js';

/** The transport-neutral part (src/serve/endpoint.ts): models, shared memory, metrics. */
export interface EndpointOptions {
  modelRepository: string;
  /** Load only these at start (default: every entry of the repository). */
  models?: string[];
  /** Options for every model (contexts, threadsPerContext, maxQueueSize, dynamicBatching). */
  loadOptions?: ModelLoadOptions;
  perModel?: Record<string, ModelLoadOptions>;
  /**
   * The shared-memory extensions clients may use (`--shared-memory system,cuda`); default none. Refused on a
   * bind other than loopback unless an auth token is set (docs/serving-security.md).
   */
  sharedMemory?: readonly SharedMemoryKind[];
  /** System shared-memory keys must start with this (default "/yqp"). */
  sharedMemoryKeyPrefix?: string;
  /** Regions registered at once (default 64; each holds a file descriptor). */
  sharedMemoryMaxRegions?: number;
  /** Largest request body in bytes (default 64 MiB); also the bound of a BYTES input read from shared memory. */
  bodyLimit?: number;
  /** Requests decoding images at once (default: the cores); more wait their turn. */
  maxImageDecodes?: number;
  /** parameters.timeout above this many microseconds is taken as this (default 600 s). */
  maxTimeoutUs?: number;
  /** For tests: an opener for CUDA IPC regions instead of the GPU core's. */
  cudaIpc?: { open?: CudaIpcOpen; reason?: string };
  /** For tests: an NVML sampler instead of the GPU core's. */
  nvmlSampler?: NvmlSampler;
  /** Set in each process of `serve --http-workers N` (src/serve/cluster.ts); never by hand. */
  cluster?: ClusterChannel;
}

export interface ServerOptions extends EndpointOptions {
  /** Default 127.0.0.1: listening on other interfaces is a choice the user makes. */
  host?: string;
  /** Default 8000 (Triton's HTTP port); 0 picks a free one. */
  port?: number;
  /** Requests must carry `Authorization: Bearer <token>` (health endpoints excepted). */
  authToken?: string;
  /** Bytes of request bodies held at once, all connections together (default 4 x bodyLimit); past it 503. */
  maxInflightBodyBytes?: number;
  /** A request's headers must be in within this (default 10 s). */
  headersTimeoutMs?: number;
  /** A whole request, headers and body, must be in within this (default 120 s). */
  requestTimeoutMs?: number;
  /** A connection with nothing sent or received for this long is closed (default 30 s). */
  idleTimeoutMs?: number;
  /** Open connections at once (default 1024); more are refused at accept. */
  maxConnections?: number;
  /** Seconds a client is told to wait after a 503 (Retry-After). */
  retryAfterSeconds?: number;
  logger?: boolean;
  /** Serve gRPC too (src/serve/grpc/) on this port (Triton's 8001; 0: any free one), same host and token. */
  grpcPort?: number;
}

export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
export const DEFAULT_MAX_TIMEOUT_US = 600e6;
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_CONNECTIONS = 1024;
