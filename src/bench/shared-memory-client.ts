/**
 * Requests whose tensors are in shared memory, as perf_analyzer's `--shared-memory system|cuda`: the inputs are
 * written once into a region this process creates and registers with the server (Triton's system or CUDA
 * shared-memory extension), each request's outputs go to a slot of the same region, and the bodies carry no
 * tensor. A system region is a POSIX shared memory object (a mode-600 file under /dev/shm whose key starts with
 * the server's --shared-memory-key-prefix); a CUDA region is device memory exported over CUDA IPC (the server, in
 * another process, reads the inputs on the GPU in place).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { invalidParameter, YqpError } from '../errors.js';
import { exportIpcMemory, type ExportedIpcRegion } from '../gpu/ipc-memory.js';
import type { TensorMap } from '../tensor.js';
import { DTYPE_TO_DATATYPE } from '../serve/tensor-codec.js';

export type BenchSharedMemoryKind = 'system' | 'cuda';

export interface BenchSharedMemoryOptions {
  /** The server, e.g. http://127.0.0.1:8000. */
  url: string;
  model: string;
  kind: BenchSharedMemoryKind;
  /** The inputs, written once into the region. */
  feeds: TensorMap;
  /** Each output's name and bytes per request. */
  outputs: { name: string; byteSize: number }[];
  /** Output slots: one per request in flight (the bodies take them in turn). */
  slots: number;
  /** system: the server's --shared-memory-key-prefix (default '/yqp'). */
  keyPrefix?: string;
  /** cuda: the GPU the region is allocated on (default 0). */
  device?: number;
  authToken?: string;
}

export interface BenchSharedMemory {
  /** One JSON request body per output slot. */
  readonly bodies: Buffer[];
  /** Bytes of the region. */
  readonly byteSize: number;
  /** Where each slot's outputs go in the region, per slot in the outputs' order. */
  readonly outputOffsets: number[][];
  /** system: the POSIX shared memory key (its file is /dev/shm + key). */
  readonly key?: string;
  /** Unregisters the region and frees it. */
  close(): Promise<void>;
}

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
let regions = 0;

/** Creates, fills and registers the region; returns the request bodies that point into it. */
export async function openBenchSharedMemory(o: BenchSharedMemoryOptions): Promise<BenchSharedMemory> {
  if (o.kind !== 'system' && o.kind !== 'cuda')
    throw invalidParameter('sharedMemory', "'system' or 'cuda'", o.kind);
  if (!Number.isInteger(o.slots) || o.slots < 1)
    throw invalidParameter('slots', 'a positive integer', o.slots);
  const inputs = Object.entries(o.feeds).map(([name, t]) => ({
    name,
    tensor: t,
    bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  }));
  let offset = 0;
  const inputAt = inputs.map((i) => {
    const at = offset;
    offset = align(offset + i.bytes.byteLength);
    return at;
  });
  const slotBytes = o.outputs.reduce((s, out) => s + align(out.byteSize), 0);
  const outputsAt = offset;
  const byteSize = outputsAt + slotBytes * o.slots;
  const name = `bench-${process.pid}-${regions++}`;
  const headers = {
    'content-type': 'application/json',
    ...(o.authToken ? { authorization: `Bearer ${o.authToken}` } : {}),
  };
  const post = async (path: string, body: unknown) => {
    const r = await fetch(new URL(path, o.url), { method: 'POST', headers, body: JSON.stringify(body) });
    if (!r.ok)
      throw new YqpError('E_BACKEND', `${path}: HTTP ${r.status}: ${await r.text()}`, {
        argument: 'sharedMemory',
      });
  };
  // The region, filled with the inputs, and what registering it tells the server.
  let release: () => void;
  let registration: Record<string, unknown>;
  let key: string | undefined;
  if (o.kind === 'system') {
    key = `${o.keyPrefix ?? '/yqp'}-${name}`;
    const file = `/dev/shm${key}`;
    const image = Buffer.alloc(byteSize);
    inputs.forEach((i, k) => image.set(i.bytes, inputAt[k]));
    writeFileSync(file, image, { mode: 0o600 });
    release = () => rmSync(file, { force: true });
    registration = { key, offset: 0, byte_size: byteSize };
  } else {
    const region: ExportedIpcRegion = exportIpcMemory(byteSize, o.device ?? 0);
    release = () => region.close();
    registration = {
      raw_handle: { b64: Buffer.from(region.handle).toString('base64') },
      device_id: o.device ?? 0,
      byte_size: byteSize,
    };
    try {
      inputs.forEach((i, k) => region.write(inputAt[k], i.bytes));
    } catch (e) {
      release();
      throw e;
    }
  }
  const endpoint = `/v2/${o.kind}sharedmemory/region/${name}`;
  try {
    await post(`${endpoint}/register`, registration);
  } catch (e) {
    release();
    throw e;
  }
  const outputOffsets = Array.from({ length: o.slots }, (_, slot) => {
    let at = outputsAt + slot * slotBytes;
    return o.outputs.map((out) => {
      const here = at;
      at += align(out.byteSize);
      return here;
    });
  });
  const bodies = outputOffsets.map((offsets) =>
    Buffer.from(
      JSON.stringify({
        inputs: inputs.map((i, k) => ({
          name: i.name,
          datatype: DTYPE_TO_DATATYPE[i.tensor.dtype],
          shape: i.tensor.dims,
          parameters: {
            shared_memory_region: name,
            shared_memory_offset: inputAt[k],
            shared_memory_byte_size: i.bytes.byteLength,
          },
        })),
        outputs: o.outputs.map((out, k) => ({
          name: out.name,
          parameters: {
            shared_memory_region: name,
            shared_memory_offset: offsets[k],
            shared_memory_byte_size: out.byteSize,
          },
        })),
      }),
    ),
  );
  return {
    bodies,
    byteSize,
    outputOffsets,
    key,
    async close() {
      try {
        await post(`${endpoint}/unregister`, {});
      } finally {
        release();
      }
    },
  };
}
