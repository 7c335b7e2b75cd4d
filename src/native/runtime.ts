/** What trt/core puts on the addon as `runtime` (trt/core/runtime.cc): the TypeScript face of the CUDA core. */

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

/** CUDA IPC regions (trt/core/ipc_memory.cc), on `runtime` where the addon was built with them. */
export interface NativeIpcRegion {
  readonly byteSize: number;
  /** The region's device pointer in this process (on its GPU). */
  readonly ptr?: bigint;
  read(offset: number, length: number): Uint8Array;
  write(offset: number, bytes: Uint8Array): void;
  close(): void;
}

export interface NativeExportedIpcRegion extends NativeIpcRegion {
  readonly handle: Uint8Array;
}

export interface NativeIpcRuntime {
  exportIpcMemory?(byteSize: number, device: number): NativeExportedIpcRegion;
  openIpcMemHandle?(handle: Uint8Array, device: number, byteSize: number): NativeIpcRegion;
}
