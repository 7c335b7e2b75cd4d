import { loadBinding } from '../native/binding.js';
import type { NativeIpcRuntime, NativeRuntime } from '../native/runtime.js';
import { YqpError, expectNonNegativeNumber, expectPositiveInteger, invalidParameter } from '../errors.js';

export type {
  PoolStats,
  NativeDeviceBuffer,
  NativePinnedBuffer,
  NativeStreamPool,
  NativeGraphCache,
  GraphOp,
  CopyEnd,
  CopyOptions,
  FrameMeta,
  FrameSlot,
  NativeFrameRing,
  NativeRuntime,
} from '../native/runtime.js';
import type {
  PoolStats,
  NativeDeviceBuffer,
  NativePinnedBuffer,
  NativeStreamPool,
  CopyEnd,
  CopyOptions,
} from '../native/runtime.js';

/**
 * Typed wrapper of the CUDA runtime core (trt/core): stream pools, pooled device and pinned buffers, copies
 * whose Promise settles from the stream (the event loop never blocks on the GPU), pool statistics, graph cache.
 */

/** Native errors (code E_CUDA, E_DISPOSED, E_FRAME_RING, E_INVALID_PARAMETER) as YqpErrors. */
export function nativeError(e: unknown): YqpError {
  if (e instanceof YqpError) return e;
  const err = e as { message?: string; code?: string };
  const code =
    err?.code === 'E_INVALID_PARAMETER' ? 'E_ARGUMENT' : err?.code === 'E_DISPOSED' ? 'E_CLOSED' : 'E_NATIVE';
  return new YqpError(code, err?.message ?? String(e), { cause: e });
}

let loadedRuntime: { runtime?: NativeRuntime & NativeIpcRuntime; reason?: string } | undefined;

/**
 * The runtime exports of the addon, or why they are not there (never throws). Decided once per process: the
 * check asks the driver for every device's properties and free memory (cudaInfo, about 30 us on the H200), and
 * allocDevice, copy and the frame ring called it on every request before. A driver that failed to initialize
 * stays failed for the process's life (CUDA's initialization error is sticky), so the answer does not change.
 */
export function loadRuntime(): { runtime?: NativeRuntime & NativeIpcRuntime; reason?: string } {
  if (loadedRuntime) return loadedRuntime;
  const loaded = loadBinding();
  if (!loaded.binding) return { reason: `the native addon did not load: ${loaded.errors.join('; ')}` };
  const runtime = loaded.binding.runtime;
  if (!runtime) return { reason: 'the native addon has no CUDA runtime core (built before it existed?)' };
  const info = loaded.binding.cudaInfo();
  if (info.driverError) return (loadedRuntime = { reason: info.driverError });
  if (info.devices.length === 0)
    return (loadedRuntime = { reason: info.deviceError ?? 'no CUDA device is visible' });
  return (loadedRuntime = { runtime });
}

export function requireRuntime(): NativeRuntime & NativeIpcRuntime {
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
