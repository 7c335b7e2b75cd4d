// --device everywhere a model runs (issue 20), as it behaves where no GPU is: typed errors, never a crash; and the
// pieces of the CUDA path that need no GPU (device parsing, graph sizes, device tensors in the scheduler).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { findGpuOnnxruntime, gpuOnnxruntimeStatus } from '../src/backends/onnxruntime-gpu.js';
import {
  cudaProviderDefaults,
  graphBatchSizes,
  tensorrtProfileShapes,
} from '../src/backends/onnxruntime-cuda.js';
import type { BackendSession, DeviceOutputs } from '../src/backends/backend.js';
import { parseDevice } from '../src/device.js';
import { loadBinding } from '../src/native/binding.js';
import { loadModel } from '../src/model.js';
import type { ModelConfig } from '../src/repository/config.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import { deviceTensor, tensor, type TensorMap } from '../src/tensor.js';
import { validateDeviceOutputs, validateFeeds } from '../src/validate.js';
import { ROOT } from './helpers/data.js';
import { tempRepo, writeBlazeFace } from './serve-fixtures.js';

const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 120_000 });
  return { code: r.status, stderr: r.stderr };
};
const info = loadBinding().binding?.cudaInfo();
const HAS_GPU = Boolean(info && !info.driverError && info.devices.length > 0);

describe('device', () => {
  it("parses 'cpu', 'cuda', 'cuda:N' and GPU ordinals, and names the argument otherwise", () => {
    expect(parseDevice('cpu')).toEqual({ kind: 'cpu', id: 0 });
    expect(parseDevice('cuda')).toEqual({ kind: 'cuda', id: 0 });
    expect(parseDevice('cuda:3')).toEqual({ kind: 'cuda', id: 3 });
    expect(parseDevice(1)).toEqual({ kind: 'cuda', id: 1 });
    expect(() => parseDevice('gpu', '--device')).toThrow(
      `Expected 'cpu', 'cuda' or 'cuda:N' for --device but received "gpu" of type string`,
    );
    expect(() => parseDevice(-1)).toThrow(/for device but received -1 of type number/);
  });

  it('refuses CUDA provider options yqp-trt sets itself, or of a type onnxruntime cannot take, naming them', async () => {
    await expect(
      loadModel('/nonexistent', { device: 'cuda', cudaProviderOptions: { device_id: '1' } }),
    ).rejects.toThrow(/for cudaProviderOptions.device_id but received "1"/);
    await expect(
      loadModel('/nonexistent', { device: 'cuda', cudaProviderOptions: { prefer_nhwc: [1] as never } }),
    ).rejects.toThrow(/Expected a string, number or boolean for cudaProviderOptions.prefer_nhwc/);
  });

  it('picks CUDA graph batch sizes from the profiles, and checks given ones', () => {
    const config = { maxBatchSize: 16 } as ModelConfig;
    expect(graphBatchSizes(config, true)).toEqual([1, 2, 4, 8, 16]);
    expect(graphBatchSizes({ maxBatchSize: 12 } as ModelConfig, true)).toEqual([1, 2, 4, 8, 12]);
    expect(graphBatchSizes(config, [8, 1, 8])).toEqual([1, 8]);
    expect(graphBatchSizes(config, false)).toBeUndefined();
    expect(() => graphBatchSizes(config, [0])).toThrow('Expected an integer from 1 to 16 for cudaGraph[0]');
    expect(
      tensorrtProfileShapes({
        profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [16, 128, 128, 3] } }],
      } as unknown as ModelConfig),
    ).toEqual({
      minShapes: 'input:0:1x128x128x3',
      optShapes: 'input:0:4x128x128x3',
      maxShapes: 'input:0:16x128x128x3',
    });
  });

  it("runs FP16 models' convolutions in NHWC on the CUDA provider by default, and FP32 ones as onnxruntime does", () => {
    expect(cudaProviderDefaults({ precision: 'fp16' } as ModelConfig)).toEqual({ prefer_nhwc: '1' });
    expect(cudaProviderDefaults({ precision: 'fp32' } as ModelConfig)).toBeUndefined();
    expect(cudaProviderDefaults({ precision: 'int8' } as ModelConfig)).toBeUndefined();
  });

  it('checks a device tensor against its shape and never batches it with others', async () => {
    const config = {
      inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 4] }],
      profiles: [{ x: { min: [1, 4], opt: [2, 4], max: [8, 4] } }],
    } as unknown as ModelConfig;
    expect(() =>
      validateFeeds(config, { x: deviceTensor('float32', { ptr: 1n, size: 31 }, [2, 4]) }),
    ).toThrow(/\(32 bytes\) but its device memory holds 31/);
    const runs: number[] = [];
    const session: BackendSession = {
      backend: 'onnxruntime',
      contexts: 1,
      run: async (_c: number, feeds: TensorMap) => {
        runs.push(feeds.x.dims[0]);
        return { y: feeds.x };
      },
      close: async () => undefined,
    };
    const s = new Scheduler(session, {
      maxBatchSize: 8,
      batchable: true,
      maxQueueDelayMicroseconds: 50_000, // wide: a loaded machine must not split the host pair
      maxQueueSize: 16,
    });
    const host = () => ({ x: tensor('float32', new Float32Array(4), [1, 4]) });
    const dev = () => ({ x: deviceTensor('float32', { ptr: 0x1000n, size: 16 }, [1, 4]) });
    await Promise.all([s.submit(host()), s.submit(dev()), s.submit(host()), s.submit(dev())]);
    expect(runs.sort()).toEqual([1, 1, 2]); // the two host requests batched, each device request alone
    await s.close();
  });

  it('checks device outputs before anything runs, and runs a request with them alone', async () => {
    const config = {
      maxBatchSize: 8,
      inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 4] }],
      outputs: [
        { name: 'y', dtype: 'float32', dims: [-1, 4] },
        { name: 'z', dtype: 'float32', dims: [-1, -1] },
      ],
    } as unknown as ModelConfig;
    const feeds = { x: tensor('float32', new Float32Array(8), [2, 4]) };
    const gpu = { device: 'cuda:0', supported: true };
    expect(() =>
      validateDeviceOutputs(config, { y: { ptr: 1n, size: 32 } }, { device: 'cpu', supported: false }, feeds),
    ).toThrow(
      /Expected a model on device 'cuda' \(onnxruntime's CUDA provider writes outputs to device memory\) for outputs but received "cpu"/,
    );
    expect(() => validateDeviceOutputs(config, { w: { ptr: 1n, size: 32 } }, gpu, feeds)).toThrow(
      /Unknown output "w" in outputs: the model's outputs are "y", "z"/,
    );
    expect(() => validateDeviceOutputs(config, { y: { ptr: 1, size: 32 } }, gpu, feeds)).toThrow(
      /Expected device memory \{ ptr: bigint, size: bytes \} for outputs.y/,
    );
    expect(() => validateDeviceOutputs(config, { y: { ptr: 1n, size: 31 } }, gpu, feeds)).toThrow(
      'Expected at least 32 bytes (batch 2) for outputs.y.size but received 31 of type number',
    );
    // A symbolic size is the runner's to check once the run has shaped it.
    expect(validateDeviceOutputs(config, { z: { ptr: 1n, size: 4 } }, gpu, feeds)).toEqual({
      z: { ptr: 1n, size: 4 },
    });
    const runs: [number, DeviceOutputs | undefined][] = [];
    const session: BackendSession = {
      backend: 'onnxruntime',
      contexts: 1,
      deviceOutputs: true,
      run: async (_c: number, f: TensorMap, outputs?: DeviceOutputs) => {
        runs.push([f.x.dims[0], outputs]);
        return { y: f.x };
      },
      close: async () => undefined,
    };
    const s = new Scheduler(session, {
      maxBatchSize: 8,
      batchable: true,
      maxQueueDelayMicroseconds: 50_000,
      maxQueueSize: 16,
    });
    const host = () => ({ x: tensor('float32', new Float32Array(4), [1, 4]) });
    const target = { y: { ptr: 0x2000n, size: 16 } };
    await Promise.all([s.submit(host()), s.submit(host(), { outputs: target }), s.submit(host())]);
    expect(runs.map(([n]) => n).sort()).toEqual([1, 2]); // the plain pair batched, the device-output one alone
    expect(runs.find(([, o]) => o)?.[1]).toBe(target);
    await s.close();
  });

  it('looks for a GPU onnxruntime where it is documented and says where it looked', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'yqp-ort-gpu-'));
    const r = findGpuOnnxruntime(empty);
    expect(r.found).toBeUndefined();
    expect(r.tried).toEqual([`option: ${empty} holds no libonnxruntime.so`]);
    mkdirSync(join(empty, 'x'));
    writeFileSync(join(empty, 'x', 'libonnxruntime.so'), '');
    expect(findGpuOnnxruntime(join(empty, 'x')).tried[0]).toMatch(
      /holds no libonnxruntime_providers_cuda\.so/,
    );
    const s = await gpuOnnxruntimeStatus(join(empty, 'x'));
    expect(s.providers.map((p) => p.name)).toEqual(['CUDAExecutionProvider', 'TensorrtExecutionProvider']);
    for (const p of s.providers) {
      expect(p.usable).toBe(false);
      expect(p.reason).toBeTruthy();
      expect(p.solutions.join(' ')).toMatch(/npm run data:gpu/);
    }
  });

  describe.skipIf(HAS_GPU)('without a GPU (skipped: this machine has one)', () => {
    let dir: string;
    beforeAll(async () => {
      const repo = tempRepo('yqp-device-');
      await writeBlazeFace(repo);
      dir = join(repo, 'face');
    });

    it('refuses device cuda with a typed error naming the device, not a crash', async () => {
      await expect(loadModel(dir, { device: 'cuda' })).rejects.toMatchObject({
        code: 'E_BACKEND_UNAVAILABLE',
        argument: 'device',
        message: expect.stringMatching(/^device cuda is unavailable: /),
      });
      await expect(loadModel(dir, { device: 'tpu' })).rejects.toMatchObject({ code: 'E_ARGUMENT' });
    });

    it('refuses device outputs on the CPU provider, naming the option and the device', async () => {
      const model = await loadModel(dir, { contexts: 1, warmup: false });
      try {
        const x = tensor('float32', new Float32Array(128 * 128 * 3), [1, 128, 128, 3]);
        await expect(
          model.infer(
            { 'input:0': x },
            { outputs: { [model.config.outputs[0].name]: { ptr: 1n, size: 1 << 20 } } },
          ),
        ).rejects.toMatchObject({
          code: 'E_ARGUMENT',
          argument: 'outputs',
          received: '"cpu" of type string',
        });
      } finally {
        await model.close();
      }
    });

    it('exits 3 from the CLI on --device cuda and 2 on a device it does not know', () => {
      const r = cli('infer', dir, '--image', join(ROOT, 'package.json'), '--device', 'cuda');
      expect(r.code).toBe(3);
      expect(r.stderr.split('\n')[0]).toMatch(/^yqp-trt infer: device cuda is unavailable: /);
      expect(r.stderr).toMatch(/Possible solutions:/);
      const bad = cli('infer', dir, '--image', join(ROOT, 'package.json'), '--device', 'gpu0');
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/Expected 'cpu', 'cuda' or 'cuda:N' for --device but received "gpu0"/);
    });
  });
});
