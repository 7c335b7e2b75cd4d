// Capture process of the face-pipeline benchmark: decodes the photo frames (sharp), uploads them once, then for each
// {run} line on stdin attaches to the ring (FrameRing.open, CUDA IPC), writes the cameras (ring-writer.mjs) and
// answers one JSON line; {exit} ends it. argv[2]: {width, height, perPhoto}.
import { createInterface } from 'node:readline';
import { FrameRing } from '../../dist/gpu/frame-ring.js';
import { cameraFrames } from './face-frames.mjs';
import { uploadFrames, writeCameras } from './ring-writer.mjs';

const { width, height, perPhoto } = JSON.parse(process.argv[2]);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
try {
  const uploaded = await uploadFrames(await cameraFrames(width, height, perPhoto));
  say({ ready: true, frames: uploaded.length * perPhoto });
  for await (const line of createInterface({ input: process.stdin })) {
    const msg = JSON.parse(line);
    if (msg.exit) break;
    const ring = FrameRing.open(msg.run.descriptor);
    try {
      say({ done: await writeCameras(ring, uploaded, { ...msg.run, width, height }) });
    } finally {
      ring.dispose();
    }
  }
  for (const row of uploaded) for (const b of row) b.dispose();
} catch (e) {
  say({ error: e.stack ?? String(e) });
  process.exitCode = 1;
}
