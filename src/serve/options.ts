/** What `yqp-trt serve` is started with: the endpoint's options and the HTTP layer's. */
import type { ClusterChannel } from './cluster-messages.js';
import type { NvmlSampler } from './metrics.js';
import type { ModelLoadOptions } from './model-manager.js';
import type { CudaIpcOpen } from './shared-memory.js';

/** The transport-neutral part (src/serve/endpoint.ts): models, shared memory, metrics. */
export interface EndpointOptions {
  modelRepository: string;
  /** Load only these at start (default: every entry of the repository). */
  models?: string[];
  /** Options for every model (contexts, threadsPerContext, maxQueueSize, dynamicBatching). */
  loadOptions?: ModelLoadOptions;
  perModel?: Record<string, ModelLoadOptions>;
  /** Allow the shared-memory extensions (Triton: --allow-client-shm); default true on 127.0.0.1 only. */
  allowSharedMemory?: boolean;
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
  /** Largest request body in bytes (default 64 MiB). */
  bodyLimit?: number;
  /** Seconds a client is told to wait after a 503 (Retry-After). */
  retryAfterSeconds?: number;
  logger?: boolean;
  /** Serve gRPC too (src/serve/grpc/) on this port (Triton's 8001; 0: any free one), same host and token. */
  grpcPort?: number;
}

export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
