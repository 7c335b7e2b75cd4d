// serve on the GPU (issue 20, item 7): a model loaded with device cuda, inputs in CUDA shared memory (a region
// another process exported, registered by its cudaIpcMemHandle_t) read by the run in place on the device, with no
// copy through the host; the results equal a binary-body request's.
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

describe.skipIf(SKIP)(`serve --device cuda with CUDA shared memory${note}`, () => {
  it('reads a CUDA region in place on the GPU: results of the binary body, no host copy of the input', async () => {
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
    // The region comes from another process, as a capture process's would (CUDA refuses to open a handle in the
    // process that exported it).
    const file = join(repo, 'input.bin');
    writeFileSync(file, bytes);
    const exporter = spawn(process.execPath, [EXPORTER, String(bytes.byteLength + 256), file, '256'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const handle = await new Promise<string>((resolve, reject) => {
      let out = '';
      exporter.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0]) as { handle: string }).handle);
      });
      exporter.on('exit', (code) => reject(new Error(`the exporter exited with ${code}`)));
    });
    try {
      const post = async (path: string, body: unknown) => {
        const r = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        // Registering answers 200 with an empty body, as Triton does.
        const text = await r.text();
        return { status: r.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
      };
      const reg = await post('/v2/cudasharedmemory/region/frames/register', {
        raw_handle: { b64: Buffer.from(handle, 'hex').toString('base64') },
        device_id: 0,
        byte_size: bytes.byteLength + 256,
      });
      expect(reg.status, JSON.stringify(reg.json)).toBe(200);
      const session = (server.manager.get('face').scheduler.session as OnnxruntimeSession).nativeSessions[0];
      const before = session.copyStats() as Record<string, number>;
      const viaShm = await post('/v2/models/face/infer', {
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
      const after = session.copyStats() as Record<string, number>;
      expect(viaShm.status, JSON.stringify(viaShm.json)).toBe(200);
      expect(after.hostToDeviceBytes - before.hostToDeviceBytes).toBe(0);
      expect(after.deviceToDeviceBytes - before.deviceToDeviceBytes).toBe(bytes.byteLength);
      const viaJson = await post('/v2/models/face/infer', {
        inputs: [{ name: 'input:0', datatype: 'FP32', shape: input.tensor.dims, data: Array.from(x) }],
      });
      expect(viaJson.status).toBe(200);
      const outs = (r: { json: Record<string, unknown> }) =>
        Object.fromEntries(
          (r.json.outputs as { name: string; data: number[] }[]).map((o) => [o.name, o.data]),
        );
      const a = outs(viaShm);
      const b = outs(viaJson);
      for (const k of Object.keys(b)) expect(a[k]).toEqual(b[k]);
      // Unregistering while nothing reads it closes the mapping; a later request names the region as unknown.
      expect((await post('/v2/cudasharedmemory/region/frames/unregister', {})).status).toBe(200);
    } finally {
      exporter.stdin!.end();
      await server.close();
    }
  });
});
