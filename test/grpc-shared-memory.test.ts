/**
 * Shared memory over gRPC is its caller's, as over HTTP (#13, docs/serving-security.md): two callers told apart by
 * their `authorization` metadata, each seeing, using and unregistering only its own system and CUDA regions, on
 * every path that reads a region (ModelInfer's own path, grpc-js's for a compressed call, ModelStreamInfer); the
 * same token over HTTP is the same caller.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { status, type Client, type ClientDuplexStream, type Metadata } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcServer } from '../src/serve/grpc/grpc-server.js';
import type { Message } from '../src/serve/grpc/service.js';
import type { CudaIpcMapping } from '../src/serve/shared-memory.js';
import { InferenceServer } from '../src/serve/server.js';
import { tempRepo, writeTiny } from './serve-fixtures.js';
import { bearer, connect, failure, type Rpc } from './grpc-helpers.js';

const shm = existsSync('/dev/shm');
const key = `/yqp-grpc-owner-${process.pid}`;
const file = `/dev/shm${key}`;
const alice = bearer('alice');
const bob = bearer('bob');

/** A host-memory double of an opened cudaIpcMemHandle_t: the server's side of the protocol is what runs. */
const gpuMemory = new Uint8Array(64);
let gpuClosed = 0;
const mapping: CudaIpcMapping = {
  read: (offset, length) => gpuMemory.slice(offset, offset + length),
  write: (offset, bytes) => gpuMemory.set(bytes, offset),
  close: () => void gpuClosed++,
};

let repo: string;
let server: InferenceServer;
let httpUrl: string;
let plain: { rpc: Record<string, Rpc>; client: Client };
let gzip: { rpc: Record<string, Rpc>; client: Client };

const p = (v: string | number) => (typeof v === 'string' ? { string_param: v } : { int64_param: v });
/** tiny's x from `region` (16 bytes at 0), y written back to it at 32. */
const throughRegion = (region: string): Message => ({
  model_name: 'tiny',
  inputs: [
    {
      name: 'x',
      datatype: 'FP32',
      shape: [1, 4],
      parameters: { shared_memory_region: p(region), shared_memory_byte_size: p(16) },
    },
  ],
  outputs: [
    {
      name: 'y',
      parameters: {
        shared_memory_region: p(region),
        shared_memory_byte_size: p(16),
        shared_memory_offset: p(32),
      },
    },
  ],
});
const floats = (b: Uint8Array) => Array.from(new Float32Array(Uint8Array.from(b).buffer));
const names = async (rpc: Rpc, metadata?: Metadata) => Object.keys((await rpc({}, metadata)).regions);

beforeAll(async () => {
  repo = tempRepo('yqp-grpc-shm-');
  await writeTiny(repo, 'tiny');
  server = await InferenceServer.create({
    modelRepository: repo,
    port: 0,
    models: ['tiny'],
    sharedMemory: ['system', 'cuda'],
    cudaIpc: { open: () => mapping },
  });
  httpUrl = await server.listen();
  const grpc = new GrpcServer(server.endpoint, { port: 0 });
  server.attach(grpc);
  const address = await grpc.listen();
  plain = connect(address);
  gzip = connect(address, { 'grpc.default_compression_algorithm': 2 }); // served by grpc-js, not the hot path
}, 120_000);

afterAll(async () => {
  plain?.client.close();
  gzip?.client.close();
  await server?.close();
  rmSync(file, { force: true });
  rmSync(repo, { recursive: true, force: true });
});

/** ModelStreamInfer of one request as `metadata`'s caller: its one answer. */
async function streamOnce(request: Message, metadata: Metadata): Promise<Message> {
  const call = (
    plain.client as unknown as { ModelStreamInfer(m: Metadata): ClientDuplexStream<Message, Message> }
  ).ModelStreamInfer(metadata);
  const answers: Message[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (m: Message) => answers.push(m));
    call.on('end', () => resolve());
    call.on('error', reject);
  });
  call.write(request);
  call.end();
  await done;
  return answers[0];
}

describe.skipIf(!shm)(`system shared memory over gRPC${shm ? '' : ' (skipped: no /dev/shm)'}`, () => {
  it('lists, serves and unregisters a region for the caller that registered it only', async () => {
    const { rpc } = plain;
    writeFileSync(file, Buffer.alloc(64), { mode: 0o600 }); // owner-only, as the server requires
    writeFileSync(
      file,
      Buffer.concat([Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), Buffer.alloc(48)]),
    );
    await rpc.SystemSharedMemoryRegister({ name: 'mine', key, offset: 0, byte_size: 64 }, alice);
    expect(await names(rpc.SystemSharedMemoryStatus, alice)).toEqual(['mine']);
    expect(await names(rpc.SystemSharedMemoryStatus, bob)).toEqual([]);
    expect(await names(rpc.SystemSharedMemoryStatus)).toEqual([]);
    const hidden = await failure(rpc.SystemSharedMemoryStatus({ name: 'mine' }, bob));
    expect([hidden.code, hidden.details]).toEqual([
      status.NOT_FOUND,
      'Unable to find shared memory region: "mine"',
    ]);

    // Alice's inference reads and writes her region; Bob's finds none, on every path.
    await rpc.ModelInfer(throughRegion('mine'), alice);
    expect(floats(readFileSync(file).subarray(32, 48))).toEqual([2, 4, 6, 8]);
    for (const client of [plain, gzip]) {
      const e = await failure(client.rpc.ModelInfer(throughRegion('mine'), bob));
      expect([e.code, e.details]).toEqual([status.NOT_FOUND, 'Unable to find shared memory region: "mine"']);
    }
    expect((await streamOnce(throughRegion('mine'), bob)).error_message).toBe(
      'Unable to find shared memory region: "mine"',
    );
    expect((await streamOnce(throughRegion('mine'), alice)).error_message).toBe('');

    // Region names are one namespace: Bob cannot take Alice's; his unregister calls leave hers.
    const taken = await failure(
      rpc.SystemSharedMemoryRegister({ name: 'mine', key, offset: 0, byte_size: 64 }, bob),
    );
    expect(taken.details).toMatch(/"mine" is already registered/);
    await rpc.SystemSharedMemoryUnregister({ name: 'mine' }, bob);
    await rpc.SystemSharedMemoryUnregister({}, bob);
    await rpc.SystemSharedMemoryUnregister({});
    expect(await names(rpc.SystemSharedMemoryStatus, alice)).toEqual(['mine']);

    // The same token over HTTP is the same caller.
    const http = async (token: string) =>
      (await fetch(`${httpUrl}/v2/systemsharedmemory/status`, {
        headers: { authorization: `Bearer ${token}` },
      }).then((r) => r.json())) as { name: string }[];
    expect((await http('alice')).map((r) => r.name)).toEqual(['mine']);
    expect(await http('bob')).toEqual([]);

    await rpc.SystemSharedMemoryUnregister({ name: 'mine' }, alice);
    expect(await names(rpc.SystemSharedMemoryStatus, alice)).toEqual([]);
  });
});

describe('CUDA shared memory over gRPC', () => {
  it('lists, serves and unregisters a region for the caller that registered it only', async () => {
    const { rpc } = plain;
    gpuMemory.set(new Uint8Array(new Float32Array([3, 1, 4, 1]).buffer), 0);
    const region = { name: 'g', raw_handle: Buffer.alloc(64, 7), device_id: 0, byte_size: 64 };
    await rpc.CudaSharedMemoryRegister(region, alice);
    expect(await names(rpc.CudaSharedMemoryStatus, alice)).toEqual(['g']);
    expect(await names(rpc.CudaSharedMemoryStatus, bob)).toEqual([]);
    expect((await failure(rpc.CudaSharedMemoryStatus({ name: 'g' }, bob))).code).toBe(status.NOT_FOUND);

    await rpc.ModelInfer(throughRegion('g'), alice);
    expect(floats(gpuMemory.subarray(32, 48))).toEqual([6, 2, 8, 2]);
    const e = await failure(rpc.ModelInfer(throughRegion('g'), bob));
    expect([e.code, e.details]).toEqual([status.NOT_FOUND, 'Unable to find shared memory region: "g"']);

    expect((await failure(rpc.CudaSharedMemoryRegister(region, bob))).details).toMatch(/already registered/);
    await rpc.CudaSharedMemoryUnregister({ name: 'g' }, bob);
    await rpc.CudaSharedMemoryUnregister({}, bob);
    expect(await names(rpc.CudaSharedMemoryStatus, alice)).toEqual(['g']);
    expect(gpuClosed).toBe(0);
    await rpc.CudaSharedMemoryUnregister({}, alice);
    expect(await names(rpc.CudaSharedMemoryStatus, alice)).toEqual([]);
    expect(gpuClosed).toBe(1);
  });
});
