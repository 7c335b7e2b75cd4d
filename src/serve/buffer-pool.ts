/**
 * Reusable buffers for request and response bodies. Each new ArrayBuffer counts as V8 external memory, and V8
 * answers external memory growth with full (mark-compact) collections: a server that took a fresh 200 KB body and
 * a fresh response buffer per request ran a mark-compact every 60 ms at 400 requests/s, and spent about half of
 * its event loop's busy time in GC (BENCHMARKS.md, serving, fourth session). Slabs come in power-of-two classes
 * from 64 KiB; smaller bodies use Node's own pool, larger than `maxSlab` are plain allocations.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private readonly idle = new WeakSet<Buffer>();
  private pooledBytes = 0;

  constructor(
    /** The most bytes kept idle for reuse; beyond it, returned slabs are left to the GC. */
    private readonly maxIdleBytes = 64 * 1024 * 1024,
    private readonly minSlab = 64 * 1024,
    private readonly maxSlab = 16 * 1024 * 1024,
  ) {}

  /** A buffer of at least `size` bytes (its own length may be larger: use `subarray(0, size)`). */
  take(size: number): Buffer {
    if (size < this.minSlab || size > this.maxSlab) return Buffer.allocUnsafeSlow(size);
    const slab = this.classOf(size);
    const list = this.free.get(slab);
    const reused = list?.pop();
    if (reused) {
      this.idle.delete(reused);
      this.pooledBytes -= reused.length;
      return reused;
    }
    return Buffer.allocUnsafeSlow(slab);
  }

  /** Gives a buffer from `take` back once nothing reads or writes it any more; others are ignored. */
  give(buffer: Buffer): void {
    const slab = buffer.length;
    if (slab < this.minSlab || slab > this.maxSlab || slab !== this.classOf(slab) || buffer.byteOffset !== 0)
      return;
    if (this.idle.has(buffer) || this.pooledBytes + slab > this.maxIdleBytes) return;
    let list = this.free.get(slab);
    if (!list) this.free.set(slab, (list = []));
    list.push(buffer);
    this.idle.add(buffer);
    this.pooledBytes += slab;
  }

  /** Bytes held idle for reuse. */
  get idleBytes(): number {
    return this.pooledBytes;
  }

  private classOf(size: number): number {
    return Math.max(this.minSlab, 2 ** Math.ceil(Math.log2(size)));
  }
}
