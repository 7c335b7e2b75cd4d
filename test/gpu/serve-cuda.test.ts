// serve on the GPU (issue 20, item 7): a model loaded with device cuda, inputs in CUDA shared memory (a region
// another process exported, registered by its cudaIpcMemHandle_t) read by the run in place on the device, with no
// copy through the host, and outputs asked into the region written there on the GPU; the results equal a JSON
// request's.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpuOnnxruntimeStatus } from '../../src/backends/onnxruntime-gpu.js';
import type { OnnxruntimeSession } from '../../src/backends/onnxruntime.js';
import { preprocessImages } from '../../src/preprocess/cpu.js';
import { InferenceServer } from '../../src/serve/server.js';
import { MEDIA_DIR, ROOT } from '../helpers/data.js';
import { tempRepo, writeBlazeFace } from '../serve-fixtures.js';
import { NO_GPU, skipNote } from './gpu-env.js';

const status = NO_GPU ? undefined : await gpuOnnxruntimeStatus();
const cuda = status?.providers.find((p) => p.name === 'CUDAExecutionProvider');
const EXPORTER = join(ROOT, 'test/gpu/ipc-exporter.mjs');
const SKIP = NO_GPU || !cuda?.usable;
const note = NO_GPU ? skipNote : cuda?.usable ? '' : ` (skipped: ${cuda?.reason})`;

/** The exporter child: its region's handle, reads of the region (as the client would), and close. */
async function startExporter(regionBytes: number, file: string, offset: number) {
  const exporter = spawn(process.execPath, [EXPORTER, String(regionBytes), file, String(offset)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  let partial = '';
  exporter.stdout!.on('data', (d: Buffer) => {
    partial += d.toString();
    for (let i = partial.indexOf('\n'); i >= 0; i = partial.indexOf('\n')) {
      const line = partial.slice(0, i);
      partial = partial.slice(i + 1);
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const exited = new Promise<never>((_, reject) =>
    exporter.on('exit', (code) => reject(new Error(`the exporter exited with ${code}`))),
  );
  const next = () =>
    Promise.race([new Promise<string>((r) => (lines.length ? r(lines.shift()!) : waiting.push(r))), exited]);
  const { handle } = JSON.parse(await next()) as { handle: string };
  return {
    handle: Buffer.from(handle, 'hex').toString('base64'),
    async read(at: number, length: number): Promise<Uint8Array> {
      exporter.stdin!.write(`read ${at} ${length}\n`);
      return Buffer.from((JSON.parse(await next()) as { b64: string }).b64, 'base64');
    },
    close: () => exporter.stdin!.end(),
  };
}

async function post(base: string, path: string, body: unknown) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  // Registering answers 200 with an empty body, as Triton does.
  const text = await r.text();
  return { status: r.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

async function startServer() {
  const repo = tempRepo('yqp-serve-cuda-');
  const { entry } = await writeBlazeFace(repo);
  const server = await InferenceServer.create({
    modelRepository: repo,
    port: 0,
    models: ['face'],
    sharedMemory: ['cuda'],
    loadOptions: { device: 'cuda', contexts: 1, dynamicBatching: false },
  });
  const base = await server.listen();
  const input = await preprocessImages([`${MEDIA_DIR}/audrey.jpg`], entry.config.preprocessing!);
  const x = input.tensor.data as Float32Array;
  const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const file = join(repo, 'input.bin');
  writeFileSync(file, bytes);
  const session = (server.manager.get('face').scheduler.session as OnnxruntimeSession).nativeSessions[0];
  const stats = () => session.copyStats() as Record<string, number>;
  return { server, base, entry, input, x, bytes, file, stats };
}

const outputsOf = (r: { json: Record<string, unknown> }) =>
  Object.fromEntries((r.json.outputs as { name: string; data: number[] }[]).map((o) => [o.name, o.data]));

describe.skipIf(SKIP)(`serve --device cuda with CUDA shared memory${note}`, () => {
  it('reads a CUDA region in place on the GPU: results of the JSON body, no host copy of the input', async () => {
    const { server, base, input, x, bytes, file, stats } = await startServer();
    // The region comes from another process, as a capture process's would (CUDA refuses to open a handle in the
    // process that exported it).
    const exporter = await startExporter(bytes.byteLength + 256, file, 256);
    try {
      const reg = await post(base, '/v2/cudasharedmemory/region/frames/register', {
        raw_handle: { b64: exporter.handle },
        device_id: 0,
        byte_size: bytes.byteLength + 256,
      });
      expect(reg.status, JSON.stringify(reg.json)).toBe(200);
      const before = stats();
      const viaShm = await post(base, '/v2/models/face/infer', {
        inputs: [
          {
            name: 'input:0',
            datatype: 'FP32',
            shape: input.tensor.dims,
            parameters: {
              shared_memory_region: 'frames',
              shared_memory_offset: 256,
              shared_memory_byte_size: bytes.byteLength,
            },
          },
        ],
      });
      const after = stats();
      expect(viaShm.status, JSON.stringify(viaShm.json)).toBe(200);
      expect(after.hostToDeviceBytes - before.hostToDeviceBytes).toBe(0);
      expect(after.deviceToDeviceBytes - before.deviceToDeviceBytes).toBe(bytes.byteLength);
      const viaJson = await post(base, '/v2/models/face/infer', {
        inputs: [{ name: 'input:0', datatype: 'FP32', shape: input.tensor.dims, data: Array.from(x) }],
      });
      expect(viaJson.status).toBe(200);
      const a = outputsOf(viaShm);
      const b = outputsOf(viaJson);
      for (const k of Object.keys(b)) expect(a[k]).toEqual(b[k]);
      // Unregistering while nothing reads it closes the mapping; a later request names the region as unknown.
      expect((await post(base, '/v2/cudasharedmemory/region/frames/unregister', {})).status).toBe(200);
    } finally {
      exporter.close();
      await server.close();
    }
  });

  it('writes outputs asked into the region on the GPU (device to device): nothing crosses to the host', async () => {
    const { server, base, entry, input, x, bytes, file, stats } = await startServer();
    // The region: the input at 256, then each output at a 256-byte boundary (as a client lays out its slots).
    const align = (n: number) => Math.ceil(n / 256) * 256;
    const outputs = entry.config.outputs.map((o) => ({
      name: o.name,
      byteSize: o.dims.slice(1).reduce((p, d) => p * d, 1) * 4,
      offset: 0,
    }));
    let end = 256 + align(bytes.byteLength);
    for (const o of outputs) {
      o.offset = end;
      end += align(o.byteSize);
    }
    const exporter = await startExporter(end, file, 256);
    try {
      const reg = await post(base, '/v2/cudasharedmemory/region/slot/register', {
        raw_handle: { b64: exporter.handle },
        device_id: 0,
        byte_size: end,
      });
      expect(reg.status, JSON.stringify(reg.json)).toBe(200);
      const request = (byteSize: (o: (typeof outputs)[number]) => number) => ({
        inputs: [
          {
            name: 'input:0',
            datatype: 'FP32',
            shape: input.tensor.dims,
            parameters: {
              shared_memory_region: 'slot',
              shared_memory_offset: 256,
              shared_memory_byte_size: bytes.byteLength,
            },
          },
        ],
        outputs: outputs.map((o) => ({
          name: o.name,
          parameters: {
            shared_memory_region: 'slot',
            shared_memory_offset: o.offset,
            shared_memory_byte_size: byteSize(o),
          },
        })),
      });
      const before = stats();
      const viaShm = await post(
        base,
        '/v2/models/face/infer',
        request((o) => o.byteSize),
      );
      const after = stats();
      expect(viaShm.status, JSON.stringify(viaShm.json)).toBe(200);
      const total = outputs.reduce((sum, o) => sum + o.byteSize, 0);
      expect(after.hostToDeviceBytes - before.hostToDeviceBytes).toBe(0);
      expect(after.deviceToHostBytes - before.deviceToHostBytes).toBe(0);
      expect(after.deviceToDeviceBytes - before.deviceToDeviceBytes).toBe(bytes.byteLength + total);
      // The response names where each output is, with its size, and carries no data.
      for (const o of viaShm.json.outputs as {
        name: string;
        data?: unknown;
        parameters: Record<string, unknown>;
      }[]) {
        const want = outputs.find((w) => w.name === o.name)!;
        expect(o.data).toBeUndefined();
        expect(o.parameters).toMatchObject({
          shared_memory_region: 'slot',
          shared_memory_byte_size: want.byteSize,
        });
      }
      const viaJson = await post(base, '/v2/models/face/infer', {
        inputs: [{ name: 'input:0', datatype: 'FP32', shape: input.tensor.dims, data: Array.from(x) }],
      });
      const expected = outputsOf(viaJson);
      for (const o of outputs) {
        const read = await exporter.read(o.offset, o.byteSize);
        const values = Array.from(new Float32Array(read.buffer, read.byteOffset, o.byteSize / 4));
        expect(values, o.name).toEqual(expected[o.name]);
      }
      // Too small a slot for an output is the client's error, before anything runs.
      const small = await post(
        base,
        '/v2/models/face/infer',
        request((o) => o.byteSize - 4),
      );
      expect(small.status).toBe(400);
      expect(String(small.json.error)).toMatch(
        /Expected at least \d+ bytes \(batch 1\) for outputs\.\S+\.size/,
      );
    } finally {
      exporter.close();
      await server.close();
    }
  });
});
