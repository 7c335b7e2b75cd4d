// Reader process of the frame-ring IPC test: attaches to the ring from its descriptor (argv[2]), takes `count`
// frames oldest first, copies each to host after waiting on the writer's interprocess event, and reports
// {seq, frameIndex, cameraId, width, height, bytes, sha256} per frame on stdout; the bytes go to argv[4].
import { createHash } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const addon = createRequire(import.meta.url)(
  process.env.YQP_TRT_ADDON ?? join(root, 'build', 'Release', 'yqp_trt.node'),
);
const [descriptor, count, outFile] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const rt = addon.runtime;
const ring = rt.FrameRing.open(descriptor);
const streams = new rt.StreamPool(0, 1);
const stream = streams.handle(0);
writeFileSync(outFile, new Uint8Array(0));
let afterSeq = 0;
const deadline = Date.now() + 60_000;
for (let got = 0; got < count;) {
  const f = ring.acquireRead({ afterSeq, oldest: true });
  if (!f) {
    if (Date.now() > deadline) throw new Error(`timed out after ${got} of ${count} frames`);
    await new Promise((r) => setTimeout(r, 2));
    continue;
  }
  ring.waitReady(f.slot, stream);
  const host = rt.allocPinned(f.bytes);
  await rt.copy(host, { ptr: f.ptr, size: f.bytes }, stream);
  ring.release(f.slot);
  const bytes = Buffer.from(host.array);
  host.dispose();
  appendFileSync(outFile, bytes);
  const { slot, ptr, ...meta } = f;
  void slot;
  void ptr;
  process.stdout.write(
    JSON.stringify({ ...meta, sha256: createHash('sha256').update(bytes).digest('hex') }) + '\n',
  );
  afterSeq = f.seq;
  got++;
}
ring.dispose();
streams.dispose();
