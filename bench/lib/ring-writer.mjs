// The capture side of the face-pipeline benchmark: frames already on the GPU (as a camera's decoder leaves them)
// written into a FrameRing at 30 fps per camera, cameras at staggered phases; each write is a device-to-device copy
// into a slot and a commit (the slot's interprocess event), stamped with its commit time. Runs in a capture
// process (ring-capture.mjs, over CUDA IPC: the users' setup) or, with --capture inline, in the pipeline's process.
import { allocDevice, copy, createStreamPool, requireRuntime } from '../../dist/gpu/runtime.js';
import { cameraClock } from './face-frames.mjs';

/** Uploads every frame once: frames[p][k] -> DeviceBuffers in the same order. */
export async function uploadFrames(frames) {
  const streams = createStreamPool(1);
  const out = [];
  try {
    for (const photo of frames) {
      const row = [];
      for (const f of photo) {
        const buffer = allocDevice(f.data.length);
        await copy(buffer, f.data, streams.handle(0));
        row.push(buffer);
      }
      out.push(row);
    }
  } finally {
    streams.dispose();
  }
  return out;
}

/**
 * Writes `cameras` cameras (camera c shows photo c mod photos) for warmupMs + seconds. `written`: frames per camera
 * after the warm-up; `noSlot`: those of them the ring had no free slot for (lost at capture, counted as dropped).
 */
export async function writeCameras(ring, uploaded, { cameras, seconds, warmupMs, width, height }) {
  const rt = requireRuntime();
  const streams = createStreamPool(4);
  const bytes = width * height * 3;
  const written = new Array(cameras).fill(0);
  const noSlot = new Array(cameras).fill(0);
  const inFlight = new Set();
  let errors = 0;
  let lastError = '';
  try {
    const clock = await cameraClock({ cameras, seconds, warmupMs }, (camera, round, ts, counted) => {
      if (counted) written[camera]++;
      const slot = ring.native.acquireWrite();
      if (slot < 0) {
        if (counted) noSlot[camera]++;
        return;
      }
      const frames = uploaded[camera % uploaded.length];
      const stream = streams.handle(camera % 4);
      const done = rt
        .copy({ ptr: ring.native.slotPtr(slot), size: ring.slotBytes }, frames[round % frames.length], stream, {
          bytes,
        })
        .catch((e) => {
          errors++;
          lastError = e.message;
        })
        .finally(() => inFlight.delete(done));
      inFlight.add(done);
      ring.native.commit(slot, { cameraId: camera, format: 0, width, height, frameIndex: round, timestampUs: ts, bytes }, stream);
    });
    await Promise.all(inFlight);
    return { ...clock, written, noSlot, errors, lastError };
  } finally {
    streams.dispose();
  }
}
