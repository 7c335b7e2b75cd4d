// Entry for compute-sanitizer (memcheck, racecheck, synccheck): every path of the runtime core in one process,
// without vitest's worker processes: pooled device/pinned memory, copies in all directions, completion,
// graph capture/replay/eager fallback, the frame ring (write, hold, waitReady, releaseAfter) and NVML.
//   compute-sanitizer --tool memcheck --error-exitcode 9 node test/gpu/sanitize-core.mjs
import { createRequire } from 'node:module';
import { join } from 'node:path';

const addon = createRequire(import.meta.url)(
  process.env.YQP_TRT_ADDON ?? join(import.meta.dirname, '..', '..', 'build', 'Release', 'yqp_trt.node'),
);
const rt = addon.runtime;
const check = (ok, what) => {
  if (!ok) {
    console.error(`sanitize-core: FAILED: ${what}`);
    process.exit(1);
  }
};
const pool = new rt.StreamPool(0, 3);
const [s0, s1, s2] = [0, 1, 2].map((i) => pool.handle(i));
const n = (4 << 20) + 7;
for (let round = 0; round < 3; round++) {
  const h = rt.allocPinned(n);
  for (let i = 0; i < n; i++) h.array[i] = (i * 13 + round) & 255;
  const d1 = rt.allocDevice(n);
  const d2 = rt.allocDevice(n);
  await rt.copy(d1, h, s0);
  await rt.copy(d2, d1, s1);
  const back = new Uint8Array(n);
  await rt.copy(back, d2, s2, { bytes: n });
  check(Buffer.compare(Buffer.from(back), Buffer.from(h.array)) === 0, `round trip ${round}`);
  d1.dispose();
  d2.dispose();
  h.dispose();
}
const graphs = new rt.GraphCache();
const a = rt.allocDevice(1 << 16);
const b = rt.allocDevice(1 << 16);
for (let i = 0; i < 3; i++)
  graphs.run('k', s0, [
    { op: 'memset', dst: a, value: 5 },
    { op: 'copy', dst: b, src: a },
  ]);
// The eager fallback makes CUDA report API errors on purpose (a non-capturable call during capture): run it only
// where API errors are not being counted (YQP_SANITIZE_FALLBACK=0 skips it).
const fallback = process.env.YQP_SANITIZE_FALLBACK !== '0';
const hb = new Uint8Array(1 << 16);
if (fallback) {
  graphs.run('q', s0, [{ op: 'memset', dst: a, value: 6 }, { op: 'query' }]);
  await rt.copy(hb, a, s0);
  check(
    hb.every((v) => v === 6),
    'eager fallback result',
  );
}
await rt.copy(hb, b, s0);
check(
  hb.every((v) => v === 5),
  'graph replay result',
);
check(graphs.stats().replays === 2 && graphs.stats().failedCaptures === (fallback ? 1 : 0), 'graph stats');
graphs.clear();
a.dispose();
b.dispose();

const ring = new rt.FrameRing({ slots: 3, slotBytes: 1 << 20 });
const src = rt.allocPinned(1 << 20);
for (let f = 0; f < 8; f++) {
  src.array.fill(f);
  const slot = ring.acquireWrite();
  check(slot >= 0, 'free slot');
  const copied = rt.copy({ ptr: ring.slotPtr(slot), size: 1 << 20 }, src, s0);
  ring.commit(slot, { cameraId: 1, frameIndex: f, width: 512, height: 512, format: 5, bytes: 1 << 20 }, s0);
  const r = ring.acquireRead({ cameraId: 1 });
  ring.waitReady(r.slot, s1);
  const out = rt.allocPinned(1 << 20);
  const read = rt.copy(out, { ptr: r.ptr, size: r.bytes }, s1);
  ring.releaseAfter(r.slot, s1);
  await Promise.all([copied, read]);
  check(
    out.array.every((v) => v === f),
    `ring frame ${f}`,
  );
  out.dispose();
}
await pool.synchronize();
src.dispose();
ring.dispose();
const nv = addon.nvml.sample({ pcie: false });
check(nv.available, `NVML: ${nv.reason}`);
pool.dispose();
rt.trimPools();
console.log('sanitize-core: ok', JSON.stringify(rt.poolStats()));
