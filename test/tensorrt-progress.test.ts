import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NativeProgressEvent } from '../src/tensorrt/native.js';
import { ROOT } from './helpers/data.js';
import { HAVE_NAPI_HEADERS, compileCheckAddon } from './helpers/native-check.js';

/**
 * The build's progress path (trt/tensorrt/progress_monitor.cc + progress_js.cc) driven through TensorRT's
 * IProgressMonitor interface from a worker thread, compiled here against the TensorRT 10.16 headers: no libnvinfer.
 */
interface Check {
  simulate(
    onProgress: (e: NativeProgressEvent) => void,
    steps: number,
    stepMs: number,
  ): { promise: Promise<{ stepsRun: number; stopped: boolean }>; cancel(): void };
  logger(
    threads: number,
    perThread: number,
  ): { clean: string; last: string; withLast: string; kept: string[]; afterDrain: number };
}

const trtInclude = join(ROOT, '.trt-headers', 'v10.16', 'include');
const cudaInclude = [
  '/usr/local/cuda/include',
  process.env.CUDA_PATH && join(process.env.CUDA_PATH, 'include'),
].find((d): d is string => Boolean(d) && existsSync(join(d as string, 'cuda_runtime_api.h')));
const missing = !existsSync(join(trtInclude, 'NvInfer.h'))
  ? '.trt-headers/v10.16 is absent'
  : !cudaInclude
    ? 'no CUDA toolkit headers'
    : !HAVE_NAPI_HEADERS
      ? 'node-api-headers / node-addon-api not installed'
      : '';

describe.skipIf(Boolean(missing))(
  `build progress and cancel${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let check: Check;
    beforeAll(() => {
      check = compileCheckAddon<Check>(
        'progress_check',
        ['progress_monitor.cc', 'progress_js.cc', 'logger.cc', 'testing/progress_check.cc'].map(
          (f) => `tensorrt/${f}`,
        ),
        [trtInclude, cudaInclude!],
      );
    });

    it('reports every phase start and finish, and throttles steps to about 10 per second', async () => {
      const events: NativeProgressEvent[] = [];
      const r = await check.simulate((e) => events.push(e), 60, 5).promise;
      expect(r).toEqual({ stepsRun: 60, stopped: false });
      const starts = events.filter((e) => e.kind === 'start');
      expect(starts).toEqual([
        { kind: 'start', phase: 'Building engine', step: 0, steps: 1 },
        { kind: 'start', phase: 'Tactic selection', parent: 'Building engine', step: 0, steps: 60 },
      ]);
      expect(events.filter((e) => e.kind === 'finish').map((e) => e.phase)).toEqual([
        'Tactic selection',
        'Building engine',
      ]);
      const steps = events.filter((e) => e.kind === 'step' && e.phase === 'Tactic selection');
      // 61 steps over about 300 ms at most one per 100 ms: a handful reach JavaScript, in order.
      expect(steps.length).toBeGreaterThanOrEqual(1);
      expect(steps.length).toBeLessThanOrEqual(6);
      const idx = steps.map((e) => e.step);
      expect([...idx].sort((a, b) => a - b)).toEqual(idx);
    });

    it('keeps the last TensorRT error and appends it to failure messages, with many threads logging', () => {
      const r = check.logger(8, 100);
      expect(r.clean).toBe('buildSerializedNetwork failed');
      expect(r.last).toBe('IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error');
      expect(r.withLast).toBe(
        'buildSerializedNetwork failed (TensorRT: IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error)',
      );
      // Warnings and errors are kept (bounded to the last 200), verbose and info are not.
      expect(r.kept).toHaveLength(200);
      expect(r.kept.at(-1)).toBe('error: IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error');
      expect(r.kept.every((k) => /^(warning|error): /.test(k))).toBe(true);
      expect(r.afterDrain).toBe(0);
    });

    it('cancels at the next step: stepComplete returns false to TensorRT', async () => {
      const handle = check.simulate(() => {}, 1000, 2);
      setTimeout(() => handle.cancel(), 40);
      const r = await handle.promise;
      expect(r.stopped).toBe(true);
      expect(r.stepsRun).toBeLessThan(1000);
    });
  },
);
