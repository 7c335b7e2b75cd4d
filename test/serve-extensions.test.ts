// The HTTP server's extensions beyond inference: system and CUDA shared memory, metrics and statistics (the
// endpoints and inference are in serve.test.ts).
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InferenceServer } from '../src/serve/server.js';
import type { CudaIpcMapping } from '../src/serve/shared-memory.js';
import { binaryFaceRequest, call, post, repo, server, tinyInfer, useServer } from './helpers/serve-http.js';

useServer();

describe('shared memory extensions', () => {
  const key = `/yqp-test-${process.pid}`;
  const file = `/dev/shm${key}`;
  const shmAvailable = existsSync('/dev/shm');

  it.skipIf(!shmAvailable)(
    `registers a system region, reads inputs from it and writes outputs into it${shmAvailable ? '' : ' (skipped: no /dev/shm)'}`,
    async () => {
      const region = Buffer.alloc(256);
      Buffer.from(new Float32Array([1, 2, 3, 4]).buffer).copy(region, 64 + 16);
      // Mode 600: the server takes only objects no one else can read or write.
      writeFileSync(file, region, { mode: 0o600 });
      try {
        const reg = await post('/v2/systemsharedmemory/region/io/register', {
          key,
          offset: 64,
          byte_size: 128,
        });
        expect(reg.status, reg.text).toBe(200);
        const status = await call('/v2/systemsharedmemory/status');
        expect(status.json).toEqual([{ name: 'io', key, offset: 64, byte_size: 128 }]);
        expect((await call('/v2/systemsharedmemory/region/io/status')).json).toHaveLength(1);
        expect((await call('/v2/systemsharedmemory/region/other/status')).status).toBe(404);
        const r = await post('/v2/models/tiny/infer', {
          inputs: [
            {
              name: 'x',
              datatype: 'FP32',
              shape: [1, 4],
              parameters: {
                shared_memory_region: 'io',
                shared_memory_offset: 16,
                shared_memory_byte_size: 16,
              },
            },
          ],
          outputs: [
            {
              name: 'y',
              parameters: {
                shared_memory_region: 'io',
                shared_memory_offset: 48,
                shared_memory_byte_size: 16,
              },
            },
          ],
        });
        expect(r.status, r.text).toBe(200);
        expect(r.json.outputs[0]).toEqual({
          name: 'y',
          datatype: 'FP32',
          shape: [1, 4],
          parameters: { shared_memory_region: 'io', shared_memory_byte_size: 16, shared_memory_offset: 48 },
        });
        const after = readFileSync(file);
        expect(
          Array.from(
            new Float32Array(after.buffer.slice(after.byteOffset + 64 + 48, after.byteOffset + 64 + 64)),
          ),
        ).toEqual([2, 4, 6, 8]);
        const outside = await post('/v2/models/tiny/infer', {
          inputs: [
            {
              name: 'x',
              datatype: 'FP32',
              shape: [1, 4],
              parameters: {
                shared_memory_region: 'io',
                shared_memory_offset: 120,
                shared_memory_byte_size: 16,
              },
            },
          ],
        });
        expect(outside.status).toBe(400);
        expect(outside.json.error).toMatch(/exceeds the 128 bytes/);
        expect(
          (await post('/v2/systemsharedmemory/region/io/register', { key, offset: 0, byte_size: 8 })).json
            .error,
        ).toMatch(/already registered/);
        expect((await post('/v2/systemsharedmemory/region/io/unregister', '')).status).toBe(200);
        expect((await call('/v2/systemsharedmemory/status')).json).toEqual([]);
      } finally {
        rmSync(file, { force: true });
      }
    },
  );

  it('refuses bad system registrations', async () => {
    const absent = await post('/v2/systemsharedmemory/region/r/register', {
      key: '/yqp-absent-key',
      offset: 0,
      byte_size: 8,
    });
    expect(absent.status).toBe(404);
    const escape = await post('/v2/systemsharedmemory/region/r/register', {
      key: '../../etc/passwd',
      offset: 0,
      byte_size: 8,
    });
    expect(escape.status).toBe(400);
    expect(escape.json.error).toMatch(/POSIX shared memory key/);
    const unknown = await tinyInfer([]).then(() =>
      post('/v2/models/tiny/infer', {
        inputs: [
          {
            name: 'x',
            datatype: 'FP32',
            shape: [1, 4],
            parameters: { shared_memory_region: 'nope', shared_memory_byte_size: 16 },
          },
        ],
      }),
    );
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/Unable to find shared memory region: "nope"/);
  });

  it('CUDA regions: status lists none and registering says why it is unavailable', async () => {
    expect((await call('/v2/cudasharedmemory/status')).json).toEqual([]);
    if (server.cudaSharedMemoryUnavailable === undefined) return; // a GPU core with IPC is present
    const r = await post('/v2/cudasharedmemory/region/g/register', {
      raw_handle: { b64: Buffer.alloc(64).toString('base64') },
      device_id: 0,
      byte_size: 64,
    });
    expect(r.status).toBe(501);
    expect(r.json.error).toMatch(/CUDA shared memory is not available on this server/);
  });

  it('CUDA regions opened through the IPC hook carry inputs and outputs', async () => {
    // A host-memory double of an opened cudaIpcMemHandle_t: the server's side of the protocol is what runs.
    const memory = new Uint8Array(64);
    memory.set(new Uint8Array(new Float32Array([3, 1, 4, 1]).buffer), 0);
    let opened: { handle: Uint8Array; device: number } | undefined;
    let closed = false;
    const mapping: CudaIpcMapping = {
      read: (offset, length) => memory.slice(offset, offset + length),
      write: (offset, bytes) => memory.set(bytes, offset),
      close: () => {
        closed = true;
      },
    };
    const gpu = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['tiny'],
      sharedMemory: ['cuda'],
      cudaIpc: {
        open: (handle, device) => {
          opened = { handle, device };
          return mapping;
        },
      },
    });
    const base = await gpu.listen();
    try {
      const handle = Buffer.alloc(64, 7);
      const reg = await post(
        '/v2/cudasharedmemory/region/g/register',
        { raw_handle: { b64: handle.toString('base64') }, device_id: 0, byte_size: 64 },
        {},
        base,
      );
      expect(reg.status, reg.text).toBe(200);
      expect(Buffer.from(opened!.handle).equals(handle)).toBe(true);
      expect((await call('/v2/cudasharedmemory/status', {}, base)).json).toEqual([
        { name: 'g', device_id: 0, byte_size: 64 },
      ]);
      const r = await post(
        '/v2/models/tiny/infer',
        {
          inputs: [
            {
              name: 'x',
              datatype: 'FP32',
              shape: [1, 4],
              parameters: { shared_memory_region: 'g', shared_memory_byte_size: 16 },
            },
          ],
          outputs: [
            {
              name: 'y',
              parameters: {
                shared_memory_region: 'g',
                shared_memory_offset: 32,
                shared_memory_byte_size: 16,
              },
            },
          ],
        },
        {},
        base,
      );
      expect(r.status, r.text).toBe(200);
      expect(Array.from(new Float32Array(memory.buffer, 32, 4))).toEqual([6, 2, 8, 2]);
      const short = await post(
        '/v2/cudasharedmemory/region/h/register',
        { raw_handle: { b64: 'AAAA' }, device_id: 0, byte_size: 64 },
        {},
        base,
      );
      expect(short.status).toBe(400);
      expect(short.json.error).toMatch(/64-byte cudaIpcMemHandle_t/);
      expect((await post('/v2/cudasharedmemory/unregister', '', {}, base)).status).toBe(200);
      expect(closed).toBe(true);
    } finally {
      await gpu.close();
    }
  });
});

describe('metrics and statistics', () => {
  it('exports request, latency, batch, queue and in-flight metrics in Prometheus format', async () => {
    for (let i = 0; i < 3; i++) await tinyInfer([1, 2, 3, 4]);
    await post('/v2/models/tiny/infer', '{bad');
    const face = binaryFaceRequest(2);
    const ran = await post('/v2/models/face/infer', face.body, {
      'Inference-Header-Content-Length': face.headerLength,
    });
    expect(ran.status).toBe(200);
    const r = await call('/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/plain/);
    const successes = /yqp_inference_requests_total\{model="tiny",outcome="success"\} (\d+)/.exec(r.text);
    expect(Number(successes?.[1])).toBeGreaterThanOrEqual(3);
    expect(r.text).toMatch(/yqp_inference_requests_total\{model="tiny",outcome="bad_request"\} [1-9]/);
    expect(r.text).toMatch(/yqp_request_duration_seconds_count\{model="tiny"\} [1-9]/);
    expect(r.text).toMatch(/yqp_queue_duration_seconds_count\{model="tiny"\} [1-9]/);
    expect(r.text).toMatch(/yqp_compute_duration_seconds_count\{model="face"\} [1-9]/);
    expect(r.text).toMatch(/yqp_batch_size_bucket\{le="2",model="face"\} [1-9]/);
    const busy = /yqp_context_busy_seconds_total\{model="tiny",context="0",device="cpu"\} ([\d.e-]+)/.exec(
      r.text,
    );
    expect(Number(busy?.[1])).toBeGreaterThan(0);
    expect(r.text).toMatch(/yqp_queue_depth\{model="tiny"\} 0/);
    expect(r.text).toMatch(/yqp_inflight_requests\{model="tiny"\} 0/);
    expect(r.text).toMatch(/yqp_model_ready\{model="face",version="1"\} 1/);
  });

  it('exports NVML GPU figures when the GPU monitor reports, and none when it cannot', async () => {
    expect(server.metrics.gpuUnavailable === undefined).toBe(/yqp_gpu_/.test((await call('/metrics')).text));
    let samples = 0;
    const gpu = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['tiny'],
      sharedMemory: ['cuda'],
      // A double of src/gpu/nvml.ts's sample(): the figures an H100 would report.
      nvmlSampler: () => {
        samples++;
        return {
          available: true,
          gpus: [
            {
              index: 0,
              name: 'NVIDIA H100',
              utilizationGpu: 42,
              memoryUsed: 2 ** 30,
              memoryTotal: 80 * 2 ** 30,
              powerW: 123.5,
              temperatureC: 51,
            },
          ],
        };
      },
    });
    const base = await gpu.listen();
    try {
      const before = samples;
      const text = (await call('/metrics', {}, base)).text;
      expect(samples).toBe(before + 1);
      expect(text).toMatch(/yqp_gpu_utilization_ratio\{gpu="0",name="NVIDIA H100"\} 0.42/);
      expect(text).toMatch(/yqp_gpu_memory_used_bytes\{gpu="0",name="NVIDIA H100"\} 1073741824/);
      expect(text).toMatch(/yqp_gpu_power_watts\{gpu="0",name="NVIDIA H100"\} 123.5/);
      expect(text).toMatch(/yqp_gpu_temperature_celsius\{gpu="0",name="NVIDIA H100"\} 51/);
    } finally {
      await gpu.close();
    }
    const none = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['tiny'],
      nvmlSampler: () => ({ available: false, reason: 'no NVIDIA driver' }),
    });
    try {
      expect(none.metrics.gpuUnavailable).toBe('no NVIDIA driver');
      expect(await none.metrics.text()).not.toMatch(/yqp_gpu_/);
    } finally {
      await none.close();
    }
  });

  it('reports Triton statistics', async () => {
    const r = await call('/v2/models/tiny/stats');
    expect(r.status).toBe(200);
    const s = r.json.model_stats[0];
    expect(s.name).toBe('tiny');
    expect(s.inference_count).toBeGreaterThan(0);
    expect(s.inference_stats.success.count).toBeGreaterThan(0);
    expect(s.inference_stats.fail.count).toBeGreaterThan(0);
    expect((await call('/v2/models/stats')).json.model_stats.length).toBe(2);
  });
});
