/**
 * Triton's system and CUDA shared-memory extensions. System regions are POSIX shared memory objects
 * (shm_open names, i.e. files under /dev/shm on Linux); Node cannot mmap, so tensors are read and written
 * with pread/pwrite on the object, which other processes' mappings see at once. CUDA regions are opened
 * through the GPU core's IPC support (src/binding.ts) when it is there; otherwise registering one answers
 * 501 with the reason and the status lists none.
 *
 * A region can reach memory of other processes, so (docs/serving-security.md): the extensions are off unless
 * enabled per kind, system keys must start with a configured prefix and name a regular file of the server's
 * own uid that no one else may read or write (opened without following links), sizes are checked against the
 * file at registration and against the region at every use, the number of regions is capped (each holds a
 * descriptor), and a region serves and lists only the caller that registered it (its owner, told apart by the
 * bearer token).
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
  /** The region's first byte in this process's address space on its GPU (a run reads it there in place). */
  readonly ptr?: bigint;
  read(offset: number, length: number): Uint8Array;
  write(offset: number, bytes: Uint8Array): void;
  close(): void;
}

export type CudaIpcOpen = (handle: Uint8Array, deviceId: number, byteSize: number) => CudaIpcMapping;

export type SharedMemoryKind = 'system' | 'cuda';

export interface SharedMemoryPolicy {
  /** The kinds clients may register (default none). */
  kinds?: readonly SharedMemoryKind[];
  /** System keys must start with this (default DEFAULT_KEY_PREFIX). */
  keyPrefix?: string;
  /** Regions registered at once, every kind and owner together (default DEFAULT_MAX_REGIONS). */
  maxRegions?: number;
}

export const DEFAULT_KEY_PREFIX = '/yqp';
export const DEFAULT_MAX_REGIONS = 64;

interface SystemRegion {
  kind: 'system';
  owner: string;
  name: string;
  key: string;
  offset: number;
  byteSize: number;
  fd: number;
}

interface CudaRegion {
  kind: 'cuda';
  owner: string;
  name: string;
  deviceId: number;
  byteSize: number;
  mapping: CudaIpcMapping;
  /** Runs reading the region in place; an unregistered region is closed when the last one settles. */
  inUse: number;
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
  private readonly kinds: ReadonlySet<SharedMemoryKind>;
  readonly keyPrefix: string;
  readonly maxRegions: number;

  constructor(
    private readonly cuda: { open?: CudaIpcOpen; reason?: string } = {},
    policy: SharedMemoryPolicy = {},
  ) {
    this.kinds = new Set(policy.kinds ?? []);
    this.keyPrefix = policy.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.maxRegions = policy.maxRegions ?? DEFAULT_MAX_REGIONS;
  }

  /** Whether clients may register regions of this kind here. */
  enabled(kind: SharedMemoryKind): boolean {
    return this.kinds.has(kind);
  }

  /** POST /v2/systemsharedmemory/region/<name>/register {key, offset, byte_size} */
  registerSystem(name: string, body: unknown, owner = ''): void {
    this.checkRegistration('system', name);
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
    const normal = key.startsWith('/') ? key : `/${key}`;
    if (!normal.startsWith(this.keyPrefix))
      throw new YqpError(
        'E_ARGUMENT',
        `Expected a shared memory key starting with ${JSON.stringify(this.keyPrefix)} (--shared-memory-key-prefix) but received ${JSON.stringify(key)}`,
        { argument: 'key', expected: `${this.keyPrefix}...`, received: key },
      );
    const offset = nonNegative(b.offset ?? 0, 'offset');
    const byteSize = nonNegative(b.byte_size, 'byte_size');
    const path = join(SHM_DIR, normal.slice(1));
    let fd: number;
    try {
      // O_NOFOLLOW: a link planted under the key cannot point the region at another file; O_NONBLOCK: a FIFO
      // cannot hold the open (it is refused below as no regular file).
      fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (e) {
      throw new YqpError(
        'E_NOT_FOUND',
        `Unable to open shared memory key ${JSON.stringify(key)}: ${(e as NodeJS.ErrnoException).code ?? 'failed'}`,
        { argument: 'key', received: key },
      );
    }
    try {
      const st = fstatSync(fd);
      const uid = process.getuid?.();
      if (!st.isFile())
        throw new YqpError('E_ARGUMENT', `Shared memory key ${JSON.stringify(key)} is no regular file`, {
          argument: 'key',
        });
      // Someone else's object, or one others may read or write, is not the caller's to hand to the server.
      if (uid !== undefined && st.uid !== uid)
        throw new YqpError(
          'E_ARGUMENT',
          `Shared memory key ${JSON.stringify(key)} is not owned by the server's user (uid ${uid}): create it as that user`,
          { argument: 'key' },
        );
      if ((st.mode & 0o077) !== 0)
        throw new YqpError(
          'E_ARGUMENT',
          `Shared memory key ${JSON.stringify(key)} has mode ${(st.mode & 0o777).toString(8)}: group and others must have no access (create it with mode 600)`,
          { argument: 'key', expected: 'mode 600', received: (st.mode & 0o777).toString(8) },
        );
      if (offset + byteSize > st.size)
        throw new YqpError(
          'E_ARGUMENT',
          `Shared memory key ${JSON.stringify(key)} holds ${st.size} bytes, fewer than offset ${offset} + byte_size ${byteSize}`,
          { argument: 'byte_size', expected: `at most ${st.size - offset}`, received: String(byteSize) },
        );
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    this.regions.set(name, { kind: 'system', owner, name, key, offset, byteSize, fd });
  }

  /** POST /v2/cudasharedmemory/region/<name>/register {raw_handle: {b64}, device_id, byte_size} */
  registerCuda(name: string, body: unknown, owner = ''): void {
    this.checkRegistration('cuda', name);
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
    this.regions.set(name, { kind: 'cuda', owner, name, deviceId, byteSize, mapping, inUse: 0 });
  }

  /** Unregisters one region or every region of the kind; only the owner's (Triton: an unknown one succeeds). */
  unregister(kind: SharedMemoryKind, name?: string, owner = ''): void {
    if (name !== undefined) {
      const r = this.regions.get(name);
      if (!r || r.kind !== kind || r.owner !== owner) return;
      this.release(r);
      return;
    }
    for (const r of [...this.regions.values()]) if (r.kind === kind && r.owner === owner) this.release(r);
  }

  systemStatus(name?: string, owner = ''): SystemRegionStatus[] {
    const list = [...this.regions.values()].filter(
      (r): r is SystemRegion => r.kind === 'system' && r.owner === owner,
    );
    if (name !== undefined && !list.some((r) => r.name === name)) throw notFound(name);
    return list
      .filter((r) => name === undefined || r.name === name)
      .map((r) => ({ name: r.name, key: r.key, offset: r.offset, byte_size: r.byteSize }));
  }

  cudaStatus(name?: string, owner = ''): CudaRegionStatus[] {
    const list = [...this.regions.values()].filter(
      (r): r is CudaRegion => r.kind === 'cuda' && r.owner === owner,
    );
    if (name !== undefined && !list.some((r) => r.name === name)) throw notFound(name);
    return list
      .filter((r) => name === undefined || r.name === name)
      .map((r) => ({ name: r.name, device_id: r.deviceId, byte_size: r.byteSize }));
  }

  /**
   * Copies `ref.byteSize` bytes out of one of the owner's regions (into memory the request owns); the caller
   * has checked that size against the tensor.
   */
  read(ref: SharedMemoryRef, owner = ''): Uint8Array {
    const r = this.bounded(ref, ref.byteSize, owner);
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

  /**
   * The device memory of `ref` when it lies in one of the owner's CUDA regions on `device` ('cuda:N'), held
   * until `release`; undefined for system regions, another GPU, or an opener that gives no pointer (then `read`).
   */
  deviceView(
    ref: SharedMemoryRef,
    owner: string,
    device: string,
  ): { ptr: bigint; size: number; release: () => void } | undefined {
    const r = this.bounded(ref, ref.byteSize, owner);
    if (r.kind !== 'cuda' || r.mapping.ptr === undefined || device !== `cuda:${r.deviceId}`) return undefined;
    r.inUse++;
    let released = false;
    return {
      ptr: r.mapping.ptr + BigInt(ref.offset),
      size: ref.byteSize,
      release: () => {
        if (released) return;
        released = true;
        if (--r.inUse === 0 && this.regions.get(r.name) !== r) r.mapping.close();
      },
    };
  }

  /** Writes an output into a region; it must fit the byte size the request gave. */
  write(ref: SharedMemoryRef, bytes: Uint8Array, owner = ''): void {
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
    const r = this.bounded(ref, bytes.byteLength, owner);
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

  private bounded(ref: SharedMemoryRef, length: number, owner: string): Region {
    const r = this.regions.get(ref.region);
    if (!r || r.owner !== owner) throw notFound(ref.region);
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
    else if (r.inUse === 0) r.mapping.close(); // else the last run reading it in place closes it
  }

  private checkRegistration(kind: SharedMemoryKind, name: string): void {
    if (!this.kinds.has(kind))
      throw new YqpError(
        'E_ARGUMENT',
        `${kind === 'system' ? 'System' : 'CUDA'} shared memory is disabled on this server (start it with --shared-memory ${kind})`,
        { argument: 'sharedmemory' },
      );
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
    if (this.regions.size >= this.maxRegions)
      throw new YqpError(
        'E_ARGUMENT',
        `${this.maxRegions} shared memory regions are registered already, the most this server holds (--shared-memory-max-regions): unregister one first`,
        { argument: 'name' },
      );
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
