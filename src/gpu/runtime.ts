import { loadBinding } from '../binding.js';
import { YqpError, expectNonNegativeNumber, expectPositiveInteger, invalidParameter } from '../errors.js';

/**
 * Typed wrapper of the CUDA runtime core (trt/core): stream pools, pooled device and pinned buffers, copies
 * whose Promise settles from the stream (the event loop never blocks on the GPU), pool statistics, graph cache.
 */

export interface PoolStats {
  /** cudaMalloc / cudaHostAlloc calls. */
  allocations: number;
  /** Requests served from a cached block. */
  reuses: number;
  releases: number;
  bytesAllocated: number;
  bytesInUse: number;
  peakBytesAllocated: number;
}

export interface NativeDeviceBuffer {
  readonly ptr: bigint;
  readonly size: number;
  readonly capacity: number;
  readonly device: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativePinnedBuffer extends Omit<NativeDeviceBuffer, 'device'> {
  /** The pinned memory itself (no copy); detached by dispose(). */
  readonly array: Uint8Array;
}

export interface NativeStreamPool {
  readonly size: number;
  readonly device: number;
  handle(index: number): bigint;
  next(): bigint;
  synchronize(index?: number): Promise<void>;
  dispose(): void;
}

export interface NativeGraphCache {
  run(key: string, stream: bigint, ops: GraphOp[]): 'replayed' | 'captured' | 'eager';
  stats(): { captures: number; replays: number; eagerRuns: number; failedCaptures: number; graphs: number };
  clear(): void;
  readonly size: number;
  enabled: boolean;
}

export type GraphOp =
  | { op: 'memset'; dst: NativeDeviceBuffer; value: number; bytes?: number }
  | {
      op: 'copy';
      dst: NativeDeviceBuffer | NativePinnedBuffer;
      src: NativeDeviceBuffer | NativePinnedBuffer;
      bytes?: number;
    }
  | { op: 'query' };

export type CopyEnd = NativeDeviceBuffer | NativePinnedBuffer | ArrayBufferView;

export interface CopyOptions {
  bytes?: number;
  dstOffset?: number;
  srcOffset?: number;
}

export interface FrameMeta {
  cameraId?: number;
  /** One of FRAME_FORMATS' values. */
  format?: number;
  width?: number;
  height?: number;
  frameIndex?: number;
  timestampUs?: number;
  bytes?: number;
}

export interface FrameSlot extends Required<FrameMeta> {
  slot: number;
  seq: number;
  ptr: bigint;
}

export interface NativeFrameRing {
  readonly descriptor: string;
  readonly slotCount: number;
  readonly slotBytes: number;
  readonly owner: boolean;
  acquireWrite(options?: { overwrite?: boolean }): number;
  slotPtr(slot: number): bigint;
  commit(slot: number, meta: FrameMeta, stream: bigint): number;
  abort(slot: number): void;
  acquireRead(options?: { afterSeq?: number; cameraId?: number; oldest?: boolean }): FrameSlot | null;
  waitReady(slot: number, stream: bigint): void;
  release(slot: number): void;
  releaseAfter(slot: number, stream: bigint): void;
  slot(slot: number): FrameSlot & { state: 'free' | 'writing' | 'ready'; readers: number };
  dispose(): void;
}

export interface NativeRuntime {
  StreamPool: new (device: number, count: number) => NativeStreamPool;
  GraphCache: new () => NativeGraphCache;
  FrameRing: {
    new (options: { device?: number; slots: number; slotBytes: number }): NativeFrameRing;
    open(descriptor: string): NativeFrameRing;
  };
  allocDevice(bytes: number, device?: number): NativeDeviceBuffer;
  allocPinned(bytes: number): NativePinnedBuffer;
  copy(dst: CopyEnd, src: CopyEnd, stream: bigint, options?: CopyOptions): Promise<void>;
  done(stream: bigint): Promise<void>;
  poolStats(device?: number): { device: PoolStats; pinned: PoolStats };
  trimPools(device?: number): void;
}

/** Native errors (code E_CUDA, E_DISPOSED, E_FRAME_RING, E_INVALID_PARAMETER) as YqpErrors. */
export function nativeError(e: unknown): YqpError {
  if (e instanceof YqpError) return e;
  const err = e as { message?: string; code?: string };
  const code =
    err?.code === 'E_INVALID_PARAMETER' ? 'E_ARGUMENT' : err?.code === 'E_DISPOSED' ? 'E_CLOSED' : 'E_NATIVE';
  return new YqpError(code, err?.message ?? String(e), { cause: e });
}

/** The runtime exports of the addon, or why they are not there (never throws). */
export function loadRuntime(): { runtime?: NativeRuntime; reason?: string } {
  const loaded = loadBinding();
  if (!loaded.binding) return { reason: `the native addon did not load: ${loaded.errors.join('; ')}` };
  const runtime = loaded.binding.runtime as NativeRuntime | undefined;
  if (!runtime) return { reason: 'the native addon has no CUDA runtime core (built before it existed?)' };
  const info = loaded.binding.cudaInfo();
  if (info.driverError) return { reason: info.driverError };
  if (info.devices.length === 0) return { reason: info.deviceError ?? 'no CUDA device is visible' };
  return { runtime };
}

export function requireRuntime(): NativeRuntime {
  const { runtime, reason } = loadRuntime();
  if (!runtime)
    throw new YqpError('E_BACKEND_UNAVAILABLE', `the CUDA runtime is unavailable: ${reason}`, {
      solutions: ['npm run build:native (needs the CUDA toolkit)', 'run on a machine with an NVIDIA driver'],
    });
  return runtime;
}

/** A pool of non-blocking CUDA streams on one GPU. */
export function createStreamPool(count = 4, device = 0): NativeStreamPool {
  expectPositiveInteger('count', count);
  expectNonNegativeNumber('device', device);
  const rt = requireRuntime();
  try {
    return new rt.StreamPool(device, count);
  } catch (e) {
    throw nativeError(e);
  }
}

/** Device memory from the per-GPU pool (no cudaMalloc when a block of the size bucket is cached). */
export function allocDevice(bytes: number, device = 0): NativeDeviceBuffer {
  expectPositiveInteger('bytes', bytes);
  try {
    return requireRuntime().allocDevice(bytes, device);
  } catch (e) {
    throw nativeError(e);
  }
}

/** Pinned host memory from the pool, readable and writable as `.array`. */
export function allocPinned(bytes: number): NativePinnedBuffer {
  expectPositiveInteger('bytes', bytes);
  try {
    return requireRuntime().allocPinned(bytes);
  } catch (e) {
    throw nativeError(e);
  }
}

/**
 * cudaMemcpyAsync between any two of device buffer, pinned buffer, pageable ArrayBufferView, on `stream`;
 * resolves once the stream has done it. Pageable sources are staged by CUDA (slower, and the call itself waits).
 */
export async function copy(
  dst: CopyEnd,
  src: CopyEnd,
  stream: bigint,
  options: CopyOptions = {},
): Promise<void> {
  if (typeof stream !== 'bigint') throw invalidParameter('stream', 'a CUDA stream handle (bigint)', stream);
  try {
    await requireRuntime().copy(dst, src, stream, options);
  } catch (e) {
    throw nativeError(e);
  }
}

export function poolStats(device = 0): { device: PoolStats; pinned: PoolStats } {
  return requireRuntime().poolStats(device);
}
