import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/data.js';

/**
 * The CUDA side of the TensorRT runtime (trt/tensorrt/core_bridge.cc: streams, pinned staging, completion to
 * JavaScript, CUDA graph capture/replay with fallback, ordering of contexts that share user-managed memory) on a
 * real GPU, with small kernels standing in for enqueueV3 (TensorRT itself is not installed anywhere we run).
 * The module is built by `bash trt/tensorrt/testing/build.sh` (nvcc), or found at $YQP_BRIDGE_CHECK.
 */
interface BridgeCheck {
  graphs(
    n: number,
    iterations: number,
    breakCapture: boolean,
  ): Promise<{ values: Float32Array; graphs: number; captureDisabled: boolean }>;
  spin(cycles: number): Promise<void>;
  ordered(cycles: number, serialize: boolean): Promise<number>;
}

const path = process.env.YQP_BRIDGE_CHECK ?? join(ROOT, 'build', 'tensorrt-testing', 'bridge_check.node');
let bridge: BridgeCheck | undefined;
let reason = `${path} is not built (bash trt/tensorrt/testing/build.sh)`;
if (existsSync(path)) {
  try {
    bridge = createRequire(import.meta.url)(path) as BridgeCheck;
    // A GPU is needed: probe with a tiny kernel.
    await bridge.spin(1);
  } catch (e) {
    reason = `no usable GPU: ${(e as Error).message}`;
    bridge = undefined;
  }
}

describe.skipIf(!bridge)(`TensorRT runtime bridge on the GPU${bridge ? '' : ` (skipped: ${reason})`}`, () => {
  it('runs the first enqueue plain, captures the second and replays the rest, with correct results', async () => {
    const r = await bridge!.graphs(1 << 20, 6, false);
    expect(r.captureDisabled).toBe(false);
    expect(r.graphs).toBe(1);
    // Six "enqueues" (1 plain + 1 captured and launched + 4 replays) each added one.
    expect(r.values[0]).toBe(6);
    expect(r.values[(1 << 20) - 1]).toBe(6);
    expect(r.values.every((v) => v === 6)).toBe(true);
  });

  it('falls back to plain enqueue when capture is refused, without losing or doubling work', async () => {
    const r = await bridge!.graphs(4096, 5, true);
    expect(r.captureDisabled).toBe(true);
    expect(r.graphs).toBe(0);
    expect(r.values.every((v) => v === 5)).toBe(true);
  });

  it('resolves from the stream without blocking the event loop', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    // About 0.3 s of spinning on an H100 (1.98 GHz boost); the event loop must keep turning meanwhile.
    await bridge!.spin(600_000_000);
    const elapsed = performance.now() - started;
    clearInterval(timer);
    expect(elapsed).toBeGreaterThan(50);
    expect(ticks).toBeGreaterThan(10);
  });

  it('orders contexts that share user-managed memory', async () => {
    // Context B reads what context A writes after a long spin: serialized, B always sees A's value.
    for (let i = 0; i < 3; i++) expect(await bridge!.ordered(50_000_000, true)).toBe(14);
  });
});
