import { beforeAll, describe, expect, it } from 'vitest';
import { calibrationBatchesFrom } from '../src/tensorrt/index.js';
import { HAVE_NAPI_HEADERS, compileCheckAddon } from './helpers/native-check.js';

/**
 * The 10.x calibrator's batch source (trt/tensorrt/js_batch_source.cc), compiled here with a test driver that calls
 * Next() on a worker thread as TensorRT's builder thread would: no TensorRT and no GPU needed.
 */
interface Drained {
  firstBytes: number[];
  sizes: number[];
  error: string;
  pulls: number;
  peakOutstanding: number;
  cancelled: boolean;
}
interface Check {
  drain(
    pull: () => Promise<ArrayBufferView[] | null> | ArrayBufferView[] | null,
    prefetch: number,
    consumeDelayMs: number,
  ): { promise: Promise<Drained>; cancel(): void };
}

describe.skipIf(!HAVE_NAPI_HEADERS)(
  `calibration batch source${HAVE_NAPI_HEADERS ? '' : ' (skipped: node-api-headers / node-addon-api not installed)'}`,
  () => {
    let check: Check;
    beforeAll(() => {
      check = compileCheckAddon<Check>('batch_source_check', [
        'tensorrt/js_batch_source.cc',
        'tensorrt/testing/batch_source_check.cc',
      ]);
    });

    function frames(n: number, delayMs = 0) {
      async function* gen() {
        for (let i = 0; i < n; i++) {
          if (delayMs) await new Promise((res) => setTimeout(res, delayMs));
          yield [new Uint8Array(64).fill(i)];
        }
      }
      return calibrationBatchesFrom(gen());
    }

    it('delivers every batch in order and stops at the end, with at most `prefetch` outstanding', async () => {
      const r = await check.drain(frames(12, 2), 3, 5).promise;
      expect(r.error).toBe('');
      expect(r.firstBytes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(r.sizes.every((s) => s === 64)).toBe(true);
      expect(r.peakOutstanding).toBeGreaterThan(1); // it does prefetch
      expect(r.peakOutstanding).toBeLessThanOrEqual(3);
      // 12 batches and the end; the prefetch may have asked up to 2 more past the end.
      expect(r.pulls).toBeGreaterThanOrEqual(13);
      expect(r.pulls).toBeLessThanOrEqual(15);
    });

    it('does not deadlock while JavaScript is busy: the builder thread just waits', async () => {
      const handle = check.drain(frames(6), 2, 0);
      // Block the event loop for 300 ms right after starting; the pulls queue up meanwhile.
      const until = Date.now() + 300;
      while (Date.now() < until) {
        /* busy */
      }
      const r = await handle.promise;
      expect(r.firstBytes).toEqual([0, 1, 2, 3, 4, 5]);
      expect(r.error).toBe('');
    });

    it('passes the loader error on and ends', async () => {
      let n = 0;
      const r = await check.drain(
        async () => {
          if (n++ === 2) throw new Error('frame_0003.jpg is not an image');
          return [new Uint8Array(8).fill(n)];
        },
        1,
        0,
      ).promise;
      expect(r.firstBytes).toEqual([1, 2]);
      expect(r.error).toBe('frame_0003.jpg is not an image');
    });

    it('ends within a few hundred ms on cancel even when JavaScript never answers (Ctrl-C)', async () => {
      const handle = check.drain(() => new Promise<null>(() => {}), 2, 0);
      const started = Date.now();
      setTimeout(() => handle.cancel(), 50);
      const r = await handle.promise;
      expect(r.cancelled).toBe(true);
      expect(r.firstBytes).toEqual([]);
      expect(Date.now() - started).toBeLessThan(1000);
    });

    it('refuses a batch that is not an array', async () => {
      const r = await check.drain(() => Promise.resolve(42 as never), 1, 0).promise;
      expect(r.error).toMatch(/array of typed arrays or null/);
    });
  },
);
