import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/data.js';

/**
 * The one piece of CUDA logic the TensorRT runtime has of its own (trt/tensorrt/memory_order.cc: contexts that
 * share TensorRT's user-managed memory never run at once on the GPU), on a real GPU, with kernels standing in for
 * enqueueV3 (TensorRT itself is not installed anywhere we run) and completion from the CUDA core.
 * The module is built by `bash trt/tensorrt/testing/build.sh` (nvcc), or found at $YQP_BRIDGE_CHECK.
 */
interface BridgeCheck {
  ordered(cycles: number, serialize: boolean): Promise<number>;
}

const path = process.env.YQP_BRIDGE_CHECK ?? join(ROOT, 'build', 'tensorrt-testing', 'bridge_check.node');
let bridge: BridgeCheck | undefined;
let reason = `${path} is not built (bash trt/tensorrt/testing/build.sh)`;
if (existsSync(path)) {
  try {
    bridge = createRequire(import.meta.url)(path) as BridgeCheck;
    await bridge.ordered(1, true); // needs a GPU
  } catch (e) {
    reason = `no usable GPU: ${(e as Error).message}`;
    bridge = undefined;
  }
}

describe.skipIf(!bridge)(
  `TensorRT user-managed memory ordering on the GPU${bridge ? '' : ` (skipped: ${reason})`}`,
  () => {
    it('makes a context wait for the one before it when they share memory', async () => {
      // B reads what A writes after ~25 ms of spinning; ordered, B always sees A's 7 and writes 14.
      for (let i = 0; i < 3; i++) expect(await bridge!.ordered(50_000_000, true)).toBe(14);
    });

    it('shows the overlap the ordering prevents', async () => {
      // Unordered, B runs during A's spin on an idle GPU and reads the initial 0.
      expect(await bridge!.ordered(200_000_000, false)).toBe(0);
    });
  },
);
