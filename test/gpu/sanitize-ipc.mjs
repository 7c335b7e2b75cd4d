// Entry for compute-sanitizer over the cross-process path: this process creates a frame ring and writes frames,
// a child Node process (test/gpu/ring-reader.mjs, followed by the sanitizer) opens the IPC handles and reads them.
//   compute-sanitizer --tool memcheck --error-exitcode 9 node test/gpu/sanitize-ipc.mjs
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const here = import.meta.dirname;
const addon = createRequire(import.meta.url)(
  process.env.YQP_TRT_ADDON ?? join(here, '..', '..', 'build', 'Release', 'yqp_trt.node'),
);
const rt = addon.runtime;
const count = 4;
const bytes = 640 * 480 * 3;
const ring = new rt.FrameRing({ slots: count, slotBytes: bytes });
const pool = new rt.StreamPool(0, 1);
const sent = [];
for (let f = 0; f < count; f++) {
  const h = rt.allocPinned(bytes);
  for (let i = 0; i < bytes; i++) h.array[i] = (i * (f + 3)) & 255;
  const slot = ring.acquireWrite();
  const done = rt.copy({ ptr: ring.slotPtr(slot), size: bytes }, h, pool.handle(0));
  ring.commit(slot, { cameraId: 2, frameIndex: f, width: 640, height: 480, bytes }, pool.handle(0));
  await done;
  sent.push(createHash('sha256').update(h.array).digest('hex'));
  h.dispose();
}
const out = join(tmpdir(), `yqp-sanitize-ipc-${process.pid}.bin`);
const r = spawnSync(process.execPath, [join(here, 'ring-reader.mjs'), ring.descriptor, String(count), out], {
  encoding: 'utf8',
});
const got = r.stdout
  .trim()
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l).sha256);
ring.dispose();
pool.dispose();
if (r.status !== 0 || JSON.stringify(got) !== JSON.stringify(sent)) {
  console.error(`sanitize-ipc: FAILED: reader rc=${r.status} ${r.stderr}`);
  process.exit(1);
}
console.log(`sanitize-ipc: ok (${count} frames identical across processes)`);
