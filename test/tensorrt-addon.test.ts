import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NativeTensorRT } from '../src/tensorrt/native.js';
import { ROOT } from './helpers/data.js';

/**
 * The real adapter, compiled and linked here (check:tensorrt --link) against the TensorRT 10.16 headers with no
 * TensorRT library: it exercises the N-API glue (AsyncWorker, ThreadSafeFunctions, errors) and the dlopen path
 * exactly as a machine without TensorRT sees them.
 */
const HEADERS = join(ROOT, '.trt-headers', 'v10.16');
const haveHeaders = existsSync(join(HEADERS, 'include', 'NvInfer.h'));
const haveCuda = [
  '/usr/local/cuda/include',
  process.env.CUDA_PATH && join(process.env.CUDA_PATH, 'include'),
].some((d) => d && existsSync(join(d, 'cuda_runtime_api.h')));

describe.skipIf(!haveHeaders || !haveCuda)(
  `the adapter linked without TensorRT${haveHeaders ? '' : ' (skipped: .trt-headers/v10.16 is absent)'}${haveCuda ? '' : ' (skipped: no CUDA toolkit headers)'}`,
  () => {
    let addonPath: string;
    let trt: NativeTensorRT;
    let index: typeof import('../src/tensorrt/index.js');

    beforeAll(async () => {
      addonPath = join(mkdtempSync(join(tmpdir(), 'yqp-trt-addon-')), 'yqp_trt_check.node');
      const r = spawnSync(
        process.execPath,
        [join(ROOT, 'scripts', 'check-tensorrt.mjs'), HEADERS, '--link', addonPath],
        {
          cwd: ROOT,
          encoding: 'utf8',
        },
      );
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^ok {3}link /m);
      trt = (createRequire(import.meta.url)(addonPath) as { tensorrt: NativeTensorRT }).tensorrt;
      // native.ts reads YQP_TRT_ADDON on its first load, which happens below.
      process.env.YQP_TRT_ADDON = addonPath;
      index = await import('../src/tensorrt/index.js');
    });

    it('reports the headers it was compiled against and why libnvinfer did not load', () => {
      expect(trt.compiledVersion).toBe('10.16.0');
      const lib = trt.load();
      expect(lib.nvinfer).toBe('libnvinfer.so.10');
      if (!lib.loaded) expect(lib.error).toMatch(/^cannot load libnvinfer\.so\.10: .+/);
      else expect(lib.version).toMatch(/^10\./);
    });

    it('turns that reason into the backend availability and a typed error', async () => {
      const lib = trt.load();
      const availability = index.tensorrtAvailability();
      expect(availability.available).toBe(false);
      if (!lib.loaded) expect(availability.reason).toBe(lib.error);
      await expect(index.buildEngine('x.onnx', { profiles: [] } as never, {})).rejects.toMatchObject({
        code: 'E_BACKEND_UNAVAILABLE',
        message: expect.stringContaining(availability.reason!),
      });
    });

    it('runs a build through the AsyncWorker and rejects with the reason, releasing its ThreadSafeFunctions', async () => {
      const events: unknown[] = [];
      let pulls = 0;
      const handle = trt.build(
        { onnxPath: '/nonexistent.onnx', profiles: [], precision: 'int8', int8Calibrator: true },
        {
          onProgress: (e) => events.push(e),
          pullBatch: async () => {
            pulls++;
            return null;
          },
        },
      );
      expect(typeof handle.cancel).toBe('function');
      handle.cancel();
      const err = (await handle.promise.then(
        () => undefined,
        (e: unknown) => e,
      )) as Error & { code: string };
      expect(err).toBeInstanceOf(Error);
      expect(err.code).toBe('E_NATIVE');
      expect(err.message).toMatch(/libnvinfer|cudaSetDevice|CUDA/);
      // Nothing reached TensorRT, so no batch was pulled and no phase started.
      expect(pulls).toBe(0);
      expect(events).toEqual([]);
    });

    it('names CUDA errors with cudaGetErrorString', () => {
      let info: { name: string; sm: string } | undefined;
      try {
        info = trt.deviceInfo(0);
      } catch (e) {
        expect((e as { code: string }).code).toBe('E_NATIVE');
        expect((e as Error).message).toMatch(/^cudaGetDeviceProperties\(0\) failed: [A-Za-z].+/);
      }
      if (info) expect(info.sm).toMatch(/^\d+\.\d+$/);
    });

    it('refuses to deserialize without libnvinfer, with the reason', () => {
      const lib = trt.load();
      if (lib.loaded) return;
      expect(() => new trt.Engine(new Uint8Array(16), { contexts: 2 })).toThrow(lib.error!);
    });

    it('refuses to open a plan when TensorRT is unavailable', async () => {
      const { tensorrtBackend } = await import('../src/backends/tensorrt.js');
      await expect(
        tensorrtBackend.open('/nonexistent/model.plan', { metadata: {} } as never, { contexts: 2 }),
      ).rejects.toMatchObject({ code: 'E_BACKEND_UNAVAILABLE' });
    });
  },
);
