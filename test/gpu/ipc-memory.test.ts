import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportIpcMemory, type ExportedIpcRegion } from '../../src/gpu/ipc-memory.js';
import { loadModel } from '../../src/model.js';
import { preprocessImages } from '../../src/preprocess/cpu.js';
import { ROOT, MEDIA_DIR } from '../helpers/data.js';
import { tempRepo, writeBlazeFace } from '../serve-fixtures.js';
import { NO_GPU, skipNote } from './gpu-env.js';

const CLI = join(ROOT, 'dist', 'cli', 'main.js');

describe.skipIf(NO_GPU)(`raw CUDA IPC regions (Triton's CUDA shared memory)${skipNote}`, () => {
  it('a region exported here is read and written by another process', () => {
    const size = 1 << 20;
    const region = exportIpcMemory(size);
    try {
      expect(region.handle.length).toBe(64);
      region.write(
        0,
        new Uint8Array(size).map((_, i) => i & 255),
      );
      const child = spawnSync(
        process.execPath,
        [join(ROOT, 'test/gpu/ipc-reader.mjs'), Buffer.from(region.handle).toString('hex'), String(size)],
        {
          encoding: 'utf8',
          cwd: ROOT,
        },
      );
      expect(child.stderr).toBe('');
      expect(JSON.parse(child.stdout)).toEqual({ read: size, wrong: 0 });
      const back = region.read(0, size);
      let wrong = 0;
      for (let i = 0; i < size; i++) if (back[i] !== 255 - (i & 255)) wrong++;
      expect(wrong).toBe(0);
      expect(() => region.read(size - 1, 2)).toThrow(/outside the region/);
    } finally {
      region.close();
    }
    expect(() => region.read(0, 1)).toThrow(/closed/);
  });

  describe('yqp-trt serve reads inputs from and writes outputs to registered CUDA regions', () => {
    let server: ChildProcess;
    let url: string;
    let repo: string;
    const regions: ExportedIpcRegion[] = [];
    beforeAll(async () => {
      repo = tempRepo('yqp-cudashm-');
      await writeBlazeFace(repo);
      server = spawn(
        process.execPath,
        [CLI, 'serve', '--model-repository', repo, '--port', '0', '--shared-memory', 'cuda'],
        {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      url = await new Promise<string>((resolve, reject) => {
        let err = '';
        const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 60_000);
        server.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(err);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
      });
    });
    afterAll(() => {
      server?.kill('SIGTERM');
      for (const r of regions) r.close();
    });

    it('gives the same scores as an in-process run of the same photo', async () => {
      const spec = (await loadModel(join(repo, 'face'))).config.preprocessing!;
      const { tensor } = await preprocessImages([join(MEDIA_DIR, 'franck_02159.jpg')], spec);
      const input = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
      const inRegion = exportIpcMemory(input.length);
      const outRegion = exportIpcMemory(512 * 4);
      regions.push(inRegion, outRegion);
      inRegion.write(0, input);
      const post = (path: string, body: unknown) =>
        fetch(`${url}${path}`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
        });
      for (const [name, r] of [
        ['in', inRegion],
        ['out', outRegion],
      ] as const) {
        const res = await post(`/v2/cudasharedmemory/region/${name}/register`, {
          raw_handle: { b64: Buffer.from(r.handle).toString('base64') },
          device_id: 0,
          byte_size: r.byteSize,
        });
        expect(res.status, await res.text()).toBe(200);
      }
      const status = await (await fetch(`${url}/v2/cudasharedmemory/status`)).json();
      expect(status.map((s: { name: string }) => s.name).sort()).toEqual(['in', 'out']);
      const res = await post('/v2/models/face/infer', {
        inputs: [
          {
            name: 'input:0',
            datatype: 'FP32',
            shape: [1, 128, 128, 3],
            parameters: { shared_memory_region: 'in', shared_memory_byte_size: input.length },
          },
        ],
        outputs: [
          {
            name: 'Identity:0',
            parameters: { shared_memory_region: 'out', shared_memory_byte_size: 512 * 4 },
          },
        ],
      });
      expect(res.status, await res.clone().text()).toBe(200);
      const fromGpu = new Float32Array(outRegion.read(0, 512 * 4).slice().buffer);
      const model = await loadModel(join(repo, 'face'), { contexts: 1 });
      const expected = (await model.infer({ 'input:0': tensor }))['Identity:0'].data as Float32Array;
      await model.close();
      let maxDiff = 0;
      for (let i = 0; i < 512; i++) maxDiff = Math.max(maxDiff, Math.abs(fromGpu[i] - expected[i]));
      expect(maxDiff).toBeLessThan(1e-5);
      // A handle CUDA refuses is the client's error: 400 with Triton's error JSON.
      const bad = await post('/v2/cudasharedmemory/region/bad/register', {
        raw_handle: { b64: Buffer.alloc(64).toString('base64') },
        device_id: 0,
        byte_size: 16,
      });
      expect(bad.status).toBe(400);
      expect((await bad.json()).error).toMatch(/Cannot open the CUDA IPC handle/);
    });
  });
});
