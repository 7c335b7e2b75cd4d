// `npm run bench -- gpu-cameras [--seconds S] [--cameras N] [--upload|--resident]`
// How many 1080p 30 fps camera streams the GPU side sustains on this GPU, and the CPU cost per frame: per frame,
// (upload mode) the decoded RGB frame is copied from pinned host memory into a frame-ring slot on the camera's
// stream and committed (interprocess event); the consumer takes the newest frame of the camera, makes its stream
// wait on the event, preprocesses it (1920x1080 -> 128x128 NHWC float32, the BlazeFace input, fused kernel),
// crops one rotated face ROI to 192x192 (the landmark input) and releases the slot when its stream gets there.
// Resident mode skips the upload (frames decoded on the GPU / written by another process through IPC).
// Frames are pushed as fast as the pipeline takes them with a bounded number in flight; streams sustained =
// frames per second / 30. CPU cost = process CPU time (user + system) / frames.
import { FrameRing } from '../dist/gpu/frame-ring.js';
import { faceSpec } from './lib/common.mjs';
import { GpuPreprocessor } from '../dist/gpu/preprocess.js';
import { GpuRoiCropper } from '../dist/gpu/roi.js';
import {
  allocDevice,
  allocPinned,
  copy,
  createStreamPool,
  loadRuntime,
  requireRuntime,
} from '../dist/gpu/runtime.js';

const arg = (args, name, fallback) =>
  args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback;
const W = 1920;
const H = 1080;
const FRAME = W * H * 3;

const spec = (size) => faceSpec(size);

async function runMode(mode, cameras, seconds) {
  const rt = requireRuntime();
  const streams = createStreamPool(Math.min(cameras, 8) * 2);
  const ring = FrameRing.create({ slots: cameras * 3, slotBytes: FRAME });
  const pre = new GpuPreprocessor(spec(128), { filter: 'antialias' });
  const roi = new GpuRoiCropper(spec(192));
  const host = allocPinned(FRAME);
  for (let i = 0; i < FRAME; i++) host.array[i] = (i * 7) & 255;
  const outs = Array.from({ length: cameras }, () => ({
    det: allocDevice(128 * 128 * 3 * 4),
    lm: allocDevice(192 * 192 * 3 * 4),
  }));
  // Resident mode: each camera's slots hold a frame already; only the consumer side runs.
  const face = { frame: 0, cx: 960, cy: 500, size: 420, angle: 0.2 };
  let frames = 0;
  const perCameraInFlight = 2;
  const inflight = new Array(cameras).fill(0);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const stopAt = t0 + seconds * 1000;
  const lastSeq = new Array(cameras).fill(0);
  let failed;
  await new Promise((resolve) => {
    const pump = (cam) => {
      if (failed || performance.now() > stopAt) {
        if (inflight.every((n) => n === 0)) resolve();
        return;
      }
      while (inflight[cam] < perCameraInFlight) {
        try {
          const up = streams.handle((cam % 8) * 2);
          const work = streams.handle((cam % 8) * 2 + 1);
          const slot = ring.native.acquireWrite();
          if (slot < 0) break;
          if (mode === 'upload')
            rt.copy({ ptr: ring.native.slotPtr(slot), size: FRAME }, host, up).catch(() => {});
          ring.native.commit(
            slot,
            { cameraId: cam, width: W, height: H, bytes: FRAME, frameIndex: frames },
            up,
          );
          const f = ring.acquire({ cameraId: cam, afterSeq: lastSeq[cam] });
          if (!f) break;
          lastSeq[cam] = f.seq;
          ring.waitReady(f, work);
          const dev = { ptr: f.ptr, width: W, height: H, format: 'RGB' };
          pre.enqueue([dev], { ptr: outs[cam].det.ptr, bytes: outs[cam].det.size }, work);
          roi.enqueue([dev], [face], { ptr: outs[cam].lm.ptr, bytes: outs[cam].lm.size }, work);
          ring.releaseAfter(f, work);
          inflight[cam]++;
          rt.done(work).then(
            () => {
              inflight[cam]--;
              frames++;
              pump(cam);
            },
            (e) => {
              failed = e;
              inflight[cam]--;
              pump(cam);
            },
          );
        } catch (e) {
          failed = e;
          break;
        }
      }
      if (inflight[cam] === 0) setImmediate(() => pump(cam));
    };
    for (let c = 0; c < cameras; c++) pump(c);
  });
  if (failed) throw failed;
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await streams.synchronize();
  await pre.close();
  await roi.close();
  ring.dispose();
  host.dispose();
  for (const o of outs) {
    o.det.dispose();
    o.lm.dispose();
  }
  streams.dispose();
  const fps = frames / elapsed;
  return {
    mode,
    cameras,
    fps,
    streams30: fps / 30,
    cpuUsPerFrame: (cpu.user + cpu.system) / frames,
    elapsed,
    frames,
  };
}

export default async function main(args) {
  const { runtime, reason } = loadRuntime();
  if (!runtime) {
    console.log(`gpu-cameras: skipped: ${reason}`);
    return;
  }
  void copy;
  const seconds = Number(arg(args, 'seconds', '3'));
  const cams = arg(args, 'cameras', '1,8,32').split(',').map(Number);
  const modes = args.includes('--resident')
    ? ['resident']
    : args.includes('--upload')
      ? ['upload']
      : ['upload', 'resident'];
  console.log('mode | cameras | frames/s | 1080p30 streams sustained | CPU us/frame (process) | frames');
  for (const mode of modes)
    for (const c of cams) {
      const r = await runMode(mode, c, seconds);
      console.log(
        `${r.mode} | ${r.cameras} | ${r.fps.toFixed(0)} | ${r.streams30.toFixed(1)} | ${r.cpuUsPerFrame.toFixed(1)} | ${r.frames}`,
      );
    }
}
