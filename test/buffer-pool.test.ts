// The server's body buffers (src/serve/buffer-pool.ts): reuse by size class, the idle bound, and what it refuses.
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../src/serve/buffer-pool.js';

describe('BufferPool', () => {
  it('hands a returned slab out again for any size of its class', () => {
    const pool = new BufferPool();
    const a = pool.take(100_000);
    expect(a.length).toBe(128 * 1024);
    pool.give(a);
    expect(pool.idleBytes).toBe(128 * 1024);
    expect(pool.take(70_000)).toBe(a);
    expect(pool.idleBytes).toBe(0);
    // Another class is another slab.
    expect(pool.take(200_000).length).toBe(256 * 1024);
  });

  it('leaves small and huge sizes to plain allocations, and ignores what it did not hand out', () => {
    const pool = new BufferPool(1 << 30, 64 * 1024, 1024 * 1024);
    expect(pool.take(1000).length).toBe(1000);
    expect(pool.take(2_000_000).length).toBe(2_000_000);
    pool.give(Buffer.alloc(1000));
    pool.give(Buffer.alloc(100_000)); // not a class size
    pool.give(pool.take(65536).subarray(1)); // a view, not the slab
    expect(pool.idleBytes).toBe(0);
  });

  it('keeps at most maxIdleBytes idle and never lists a slab twice', () => {
    const pool = new BufferPool(256 * 1024);
    const [a, b, c] = [pool.take(128 * 1024), pool.take(128 * 1024), pool.take(128 * 1024)];
    pool.give(a);
    pool.give(a);
    expect(pool.idleBytes).toBe(128 * 1024);
    pool.give(b);
    pool.give(c); // over the bound: left to the GC
    expect(pool.idleBytes).toBe(256 * 1024);
    const again = [pool.take(128 * 1024), pool.take(128 * 1024), pool.take(128 * 1024)];
    expect(new Set(again).size).toBe(3);
    expect(again).toContain(a);
    expect(again).toContain(b);
    expect(again).not.toContain(c);
  });
});
