/**
 * Triton's system and CUDA shared-memory extensions. System regions are POSIX shared memory objects
 * (shm_open names, i.e. files under /dev/shm on Linux); Node cannot mmap, so tensors are read and written
 * with pread/pwrite on the object, which other processes' mappings see at once. CUDA regions are opened
 * through the GPU core's IPC support (src/binding.ts) when it is there; otherwise registering one answers
 * 501 with the reason and the status lists none.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { YqpError, describeValue } from '../errors.js';
import { loadRuntime } from '../gpu/runtime.js';
import { openIpcMemHandle } from '../gpu/ipc-memory.js';
import type { SharedMemoryRef } from './inference-request.js';

export interface SystemRegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

export interface CudaRegionStatus {
  name: string;
  device_id: number;
  byte_size: number;
}

/** What the GPU core's IPC support must give for a CUDA region (an opened cudaIpcMemHandle_t). */
export interface CudaIpcMapping {
  read(offset: number, length: number): Uint8Array;
  write(offset: number, bytes: Uint8Array): void;
  close(): void;
}

export type CudaIpcOpen = (handle: Uint8Array, deviceId: number, byteSize: number) => CudaIpcMapping;

interface SystemRegion {
  kind: 'system';
  name: string;
  key: string;
  offset: number;
  byteSize: number;
  fd: number;
}

interface CudaRegion {
  kind: 'cuda';
  name: string;
  deviceId: number;
  byteSize: number;
  mapping: CudaIpcMapping;
}

type Region = SystemRegion | CudaRegion;

const SHM_DIR = '/dev/shm';
const REGION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function notFound(name: string): YqpError {
  return new YqpError('E_NOT_FOUND', `Unable to find shared memory region: ${JSON.stringify(name)}`, {
    argument: 'shared_memory_region',
    received: name,
  });
}

/**
 * The raw-handle IPC opener of the GPU core (src/gpu/ipc-memory.ts): a Triton client registers a bare
 * cudaIpcMemHandle_t of a whole allocation. Without the addon, a driver or a GPU the reason is reported, never
 * thrown, and the cudasharedmemory endpoints answer 501 with it.
 */
export function findCudaIpc(): { open?: CudaIpcOpen; reason?: string } {
  const { runtime, reason } = loadRuntime();
  if (!runtime) return { reason };
  if (typeof (runtime as unknown as Record<string, unknown>).openIpcMemHandle !== 'function')
    return {
      reason: 'this build of the native addon has no CUDA IPC regions (rebuild it: npm run build:native)',
    };
  return { open: (handle, deviceId, byteSize) => openIpcMemHandle(handle, deviceId, byteSize) };
}

export class SharedMemoryRegistry {
  private readonly regions = new Map<string, Region>();

  constructor(private readonly cuda: { open?: CudaIpcOpen; reason?: string } = {}) {}

  /** POST /v2/systemsharedmemory/region/<name>/register {key, offset, byte_size} */
  registerSystem(name: string, body: unknown): void {
    this.checkName(name);
    const b = (body ?? {}) as Record<string, unknown>;
    const key = b.key;
    if (
      typeof key !== 'string' ||
      !/^\/?[A-Za-z0-9_.-]+$/.test(key) ||
      key.replace(/^\//, '').startsWith('..')
    )
      throw new YqpError(
        'E_ARGUMENT',
        `Expected a POSIX shared memory key such as "/my_region" for key but received ${describeValue(key)}`,
        { argument: 'key' },
      );
    const offset = nonNegative(b.offset ?? 0, 'offset');
    const byteSize = nonNegative(b.byte_size, 'byte_size');
    const path = join(SHM_DIR, key.replace(/^\//, ''));
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (e) {
      throw new YqpError(
        'E_NOT_FOUND',
        `Unable to open shared memory key ${JSON.stringify(key)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        { argument: 'key', received: key },
      );
    }
    const size = fstatSync(fd).size;
    if (offset + byteSize > size) {
      closeSync(fd);
      throw new YqpError(
        'E_ARGUMENT',
        `Shared memory key ${JSON.stringify(key)} holds ${size} bytes, fewer than offset ${offset} + byte_size ${byteSize}`,
        { argument: 'byte_size', expected: `at most ${size - offset}`, received: String(byteSize) },
      );
    }
    this.regions.set(name, { kind: 'system', name, key, offset, byteSize, fd });
  }

  /** POST /v2/cudasharedmemory/region/<name>/register {raw_handle: {b64}, device_id, byte_size} */
  registerCuda(name: string, body: unknown): void {
    this.checkName(name);
    if (!this.cuda.open)
      throw new YqpError(
        'E_BACKEND_UNAVAILABLE',
        `CUDA shared memory is not available on this server: ${this.cuda.reason ?? 'no CUDA IPC support'}`,
        { argument: 'cudasharedmemory' },
      );
    const b = (body ?? {}) as Record<string, unknown>;
    const raw = b.raw_handle as Record<string, unknown> | undefined;
    const b64 = raw?.b64;
    if (typeof b64 !== 'string')
      throw new YqpError(
        'E_ARGUMENT',
        `Expected {"b64": "<base64 cudaIpcMemHandle_t>"} for raw_handle but received ${describeValue(raw)}`,
        { argument: 'raw_handle' },
      );
    const handle = Buffer.from(b64, 'base64');
    if (handle.length !== 64)
      throw new YqpError(
        'E_ARGUMENT',
        `Expected a 64-byte cudaIpcMemHandle_t in raw_handle.b64 but received ${handle.length} bytes`,
        { argument: 'raw_handle' },
      );
    const deviceId = nonNegative(b.device_id ?? 0, 'device_id');
    const byteSize = nonNegative(b.byte_size, 'byte_size');
    const mapping = this.cuda.open(handle, deviceId, byteSize);
    this.regions.set(name, { kind: 'cuda', name, deviceId, byteSize, mapping });
  }

  unregister(kind: 'system' | 'cuda', name?: string): void {
    if (name !== undefined) {
      const r = this.regions.get(name);
      if (!r || r.kind !== kind) return; // Triton: unregistering an unknown region succeeds
      this.release(r);
      return;
    }
    for (const r of [...this.regions.values()]) if (r.kind === kind) this.release(r);
  }

  systemStatus(name?: string): SystemRegionStatus[] {
    const list = [...this.regions.values()].filter((r): r is SystemRegion => r.kind === 'system');
    if (name !== undefined && !list.some((r) => r.name === name)) throw notFound(name);
    return list
      .filter((r) => name === undefined || r.name === name)
      .map((r) => ({ name: r.name, key: r.key, offset: r.offset, byte_size: r.byteSize }));
  }

  cudaStatus(name?: string): CudaRegionStatus[] {
    const list = [...this.regions.values()].filter((r): r is CudaRegion => r.kind === 'cuda');
    if (name !== undefined && !list.some((r) => r.name === name)) throw notFound(name);
    return list
      .filter((r) => name === undefined || r.name === name)
      .map((r) => ({ name: r.name, device_id: r.deviceId, byte_size: r.byteSize }));
  }

  /** Copies `ref.byteSize` bytes out of a region (into memory the request owns). */
  read(ref: SharedMemoryRef): Uint8Array {
    const r = this.bounded(ref, ref.byteSize);
    if (r.kind === 'cuda') return r.mapping.read(ref.offset, ref.byteSize);
    const out = new Uint8Array(ref.byteSize);
    let done = 0;
    while (done < out.length) {
      const n = readSync(r.fd, out, done, out.length - done, r.offset + ref.offset + done);
      if (n === 0) break;
      done += n;
    }
    if (done !== out.length)
      throw new YqpError(
        'E_ARGUMENT',
        `Shared memory region ${ref.region} ended after ${done} of ${out.length} bytes`,
        {
          argument: 'shared_memory_byte_size',
        },
      );
    return out;
  }

  /** Writes an output into a region; it must fit the byte size the request gave. */
  write(ref: SharedMemoryRef, bytes: Uint8Array): void {
    if (bytes.byteLength > ref.byteSize)
      throw new YqpError(
        'E_ARGUMENT',
        `Output needs ${bytes.byteLength} bytes but shared_memory_byte_size gives ${ref.byteSize} in region ${ref.region}`,
        {
          argument: 'shared_memory_byte_size',
          expected: `>= ${bytes.byteLength}`,
          received: String(ref.byteSize),
        },
      );
    const r = this.bounded(ref, bytes.byteLength);
    if (r.kind === 'cuda') {
      r.mapping.write(ref.offset, bytes);
      return;
    }
    let done = 0;
    while (done < bytes.byteLength)
      done += writeSync(r.fd, bytes, done, bytes.byteLength - done, r.offset + ref.offset + done);
  }

  close(): void {
    for (const r of [...this.regions.values()]) this.release(r);
  }

  private bounded(ref: SharedMemoryRef, length: number): Region {
    const r = this.regions.get(ref.region);
    if (!r) throw notFound(ref.region);
    if (ref.offset + length > r.byteSize)
      throw new YqpError(
        'E_ARGUMENT',
        `Offset ${ref.offset} + ${length} bytes exceeds the ${r.byteSize} bytes of shared memory region ${ref.region}`,
        { argument: 'shared_memory_offset' },
      );
    return r;
  }

  private release(r: Region): void {
    this.regions.delete(r.name);
    if (r.kind === 'system') closeSync(r.fd);
    else r.mapping.close();
  }

  private checkName(name: string): void {
    if (!REGION_NAME.test(name))
      throw new YqpError(
        'E_ARGUMENT',
        `Expected a region name of letters, digits, '_', '.', '-' but received ${JSON.stringify(name)}`,
        { argument: 'name' },
      );
    if (this.regions.has(name))
      throw new YqpError('E_ARGUMENT', `Shared memory region ${JSON.stringify(name)} is already registered`, {
        argument: 'name',
      });
  }
}

function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a non-negative integer for ${name} but received ${describeValue(v)}`,
      {
        argument: name,
      },
    );
  return v;
}
