import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { YqpError } from '../../src/errors.js';
import {
  allocDevice,
  allocPinned,
  copy,
  createStreamPool,
  poolStats,
  requireRuntime,
  type NativeStreamPool,
} from '../../src/gpu/runtime.js';
import { NO_GPU, skipNote } from './gpu-env.js';

describe.skipIf(NO_GPU)(`CUDA runtime core${skipNote}`, () => {
  let pool: NativeStreamPool;
  const streams = (): NativeStreamPool => (pool ??= createStreamPool(4));
  afterAll(() => pool?.dispose());

  it('hands out distinct non-blocking streams round-robin', async () => {
    const p = streams();
    const handles = [0, 1, 2, 3].map((i) => p.handle(i));
    expect(new Set(handles).size).toBe(4);
    expect(handles.every((h) => h !== 0n)).toBe(true);
    const rr = Array.from({ length: 8 }, () => p.next());
    expect(new Set(rr.slice(0, 4))).toEqual(new Set(handles));
    expect(rr.slice(4)).toEqual(rr.slice(0, 4));
    await p.synchronize();
    expect(() => p.handle(4)).toThrow(/stream index: expected 0\.\.3, got 4/);
  });

  it('reuses pooled device and pinned blocks: no cudaMalloc per request', () => {
    const before = poolStats();
    const first = allocDevice(3 << 20);
    first.dispose();
    const mid = poolStats();
    for (let i = 0; i < 200; i++) {
      const d = allocDevice(3 << 20);
      const h = allocPinned(1 << 20);
      d.dispose();
      h.dispose();
    }
    const after = poolStats();
    expect(mid.device.allocations).toBeLessThanOrEqual(before.device.allocations + 1);
    expect(after.device.allocations).toBe(mid.device.allocations);
    expect(after.device.reuses - mid.device.reuses).toBe(200);
    expect(after.pinned.allocations - mid.pinned.allocations).toBeLessThanOrEqual(1);
    expect(after.pinned.reuses - mid.pinned.reuses).toBeGreaterThanOrEqual(199);
    expect(after.device.bytesInUse).toBe(before.device.bytesInUse);
    // Bucketed: a 3 MiB request takes a 3 MiB block (1.5 x 2^21), a 3 MiB + 1 byte one a 3.5 MiB block.
    const a = allocDevice(3 << 20);
    const b = allocDevice((3 << 20) + 1);
    expect(a.capacity).toBe(3 << 20);
    expect(b.capacity).toBe(3.5 * (1 << 20));
    a.dispose();
    b.dispose();
  });

  it('copies host -> device -> device -> host bit-exactly, pinned and pageable', async () => {
    const s = streams().handle(0);
    const n = 8 * 1024 * 1024 + 13;
    const src = allocPinned(n);
    src.array.set(randomBytes(n));
    const d1 = allocDevice(n);
    const d2 = allocDevice(n);
    await copy(d1, src, s);
    await copy(d2, d1, s);
    const pageable = new Uint8Array(n);
    await copy(pageable, d2, s);
    expect(Buffer.compare(Buffer.from(pageable), Buffer.from(src.array))).toBe(0);
    // Offsets: the middle of one buffer into the start of another.
    const part = new Uint8Array(1000);
    await copy(part, d2, s, { srcOffset: 5000, bytes: 1000 });
    expect(Buffer.from(part).equals(Buffer.from(src.array.subarray(5000, 6000)))).toBe(true);
    for (const b of [src, d1, d2]) b.dispose();
  });

  it('settles copies from the stream without blocking the event loop', async () => {
    const s = streams().handle(1);
    const big = allocDevice(256 << 20);
    const other = allocDevice(256 << 20);
    let ticks = 0;
    let spinning = true;
    const spin = (): void => {
      ticks++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const t0 = performance.now();
    const copies = [];
    for (let i = 0; i < 40; i++) copies.push(copy(i % 2 ? big : other, i % 2 ? other : big, s));
    const enqueueMs = performance.now() - t0;
    await Promise.all(copies);
    const totalMs = performance.now() - t0;
    spinning = false;
    // 40 x 256 MiB device copies take milliseconds of GPU time; the JS thread kept turning meanwhile.
    expect(totalMs).toBeGreaterThan(enqueueMs);
    expect(ticks).toBeGreaterThan(3);
    big.dispose();
    other.dispose();
  });

  it('keeps a disposed block out of the pool until its copy is done, and detaches pinned views', async () => {
    const s = streams().handle(2);
    const d = allocDevice(64 << 20);
    const h = allocPinned(64 << 20);
    const view = h.array;
    const inUse = poolStats().device.bytesInUse;
    const pending = copy(h, d, s);
    d.dispose();
    expect(poolStats().device.bytesInUse).toBe(inUse);
    await pending;
    expect(poolStats().device.bytesInUse).toBe(inUse - (64 << 20));
    h.dispose();
    expect(view.byteLength).toBe(0);
    expect(() => h.array).toThrow(/disposed/);
    await expect(copy(d, h, s)).rejects.toMatchObject({ code: 'E_CLOSED' });
  });

  it('rejects bad copies with one-line errors naming the argument', async () => {
    const s = streams().handle(0);
    const d = allocDevice(100);
    await expect(copy(d, new Uint8Array(200), s, { bytes: 200 })).rejects.toThrow(
      /copy bytes: expected at most 100 bytes .*got 200/,
    );
    await expect(copy(d, new Uint8Array(10), s, { bytes: 20 })).rejects.toBeInstanceOf(YqpError);
    await expect(copy(d, 'x' as never, s)).rejects.toThrow(/copy src: expected a DeviceBuffer/);
    await expect(copy(d, d, 5 as never)).rejects.toThrow(/stream/);
    expect(() => allocDevice(0)).toThrow(/positive integer for bytes/);
    d.dispose();
  });

  it('captures a graph per key, replays it, and falls back to eager when capture is refused', async () => {
    const rt = requireRuntime();
    const s = streams().handle(3);
    const graphs = new rt.GraphCache();
    const a = allocDevice(4096);
    const b = allocDevice(4096);
    const host = new Uint8Array(4096);
    const ops = [
      { op: 'memset', dst: a, value: 7 },
      { op: 'copy', dst: b, src: a },
    ] as const;
    expect(graphs.run('1x4096', s, [...ops])).toBe('captured');
    await copy(host, b, s);
    expect(host.every((v) => v === 7)).toBe(true);
    // Overwrite b, then replay: the graph sets it again.
    await copy(b, new Uint8Array(4096), s);
    expect(graphs.run('1x4096', s, [...ops])).toBe('replayed');
    await copy(host, b, s);
    expect(host.every((v) => v === 7)).toBe(true);
    // cudaStreamQuery is not capturable: the key runs eagerly, and is not captured again.
    expect(graphs.run('query', s, [{ op: 'memset', dst: b, value: 3 }, { op: 'query' }])).toBe('eager');
    expect(graphs.run('query', s, [{ op: 'memset', dst: b, value: 3 }, { op: 'query' }])).toBe('eager');
    await copy(host, b, s);
    expect(host.every((v) => v === 3)).toBe(true);
    expect(graphs.stats()).toEqual({ captures: 1, replays: 1, eagerRuns: 2, failedCaptures: 1, graphs: 1 });
    graphs.enabled = false;
    expect(graphs.run('other', s, [{ op: 'memset', dst: a, value: 1 }])).toBe('eager');
    graphs.clear();
    expect(graphs.size).toBe(0);
    await streams().synchronize(3);
    a.dispose();
    b.dispose();
  });
});
