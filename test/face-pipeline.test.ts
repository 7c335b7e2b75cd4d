import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFacePipeline, type FacePipeline, type FrameResult } from '../src/pipeline/face-pipeline.js';
import { readRawImage, videoFrames } from '../src/pipeline/sources.js';
import type { RawImage } from '../src/preprocess/cpu.js';
import { loadRuntime } from '../src/gpu/runtime.js';
import { MEDIA_DIR, ROOT } from './helpers/data.js';
import { importFaceModels, trackArgs } from './helpers/face-models.js';

const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const VIDEO = join(MEDIA_DIR, 'franck.mp4');
const FFMPEG = existsSync('/usr/bin/ffmpeg')
  ? undefined
  : 'ffmpeg is not installed (.ci/run installs Debian ffmpeg)';
/** Whether this machine lacks a usable GPU (here and in CI); a GPU machine runs test/gpu/face-pipeline.test.ts. */
const NO_GPU = loadRuntime().runtime === undefined;
let models: Awaited<ReturnType<typeof importFaceModels>>;
let pipeline: FacePipeline;

beforeAll(async () => {
  models = await importFaceModels();
  pipeline = await createFacePipeline({ detector: models.detector, landmarks: models.landmarks, cameras: 3 });
});
afterAll(async () => {
  await pipeline?.close();
});

describe('face pipeline (CPU provider)', () => {
  it('finds one face with 468 landmarks on a photo, inside the face box', async () => {
    pipeline.reset();
    const [r] = await pipeline.process([
      { camera: 0, image: await readRawImage(join(MEDIA_DIR, 'audrey.jpg')) },
    ]);
    expect(r.faces).toHaveLength(1);
    const f = r.faces[0];
    expect(f.landmarks).toHaveLength(468);
    expect(f.score).toBeGreaterThan(0.9);
    const [x0, y0, x1, y1] = f.box;
    const [nx, ny] = f.landmarks[1]; // nose tip
    expect(nx > x0 && nx < x1 && ny > y0 && ny < y1).toBe(true);
    // The right eye's outer corner (33) is left of the left eye's (263) on an upright face.
    expect(f.landmarks[33][0]).toBeLessThan(f.landmarks[263][0]);
  });

  it.skipIf(FFMPEG)(
    `tracking keeps the face through franck.mp4 ${FFMPEG ?? ''}`,
    async () => {
      // Every 16th of the video's 4800 frames (300 frames, 16x a real frame step's motion), so the test stays ~a minute
      // on the shared 2-core VM (~0.1 s a frame there under load).
      const p = await createFacePipeline({ detector: models.detector, landmarks: models.landmarks });
      try {
        const results: FrameResult[] = [];
        let pushed = 0;
        for await (const frame of videoFrames(VIDEO)) {
          if (frame.index % 16 !== 0) continue;
          const [r] = await p.process([{ camera: 0, image: frame }]);
          results.push(r);
          pushed++;
        }
        expect(pushed).toBe(300);
        const withFace = results.filter((r) => r.faces.length === 1).length;
        expect(withFace).toBe(pushed);
        // Detection ran at least every 10th frame and not on every frame: the rest was tracking.
        expect(p.stats.detections).toBeGreaterThanOrEqual(pushed / 10);
        expect(p.stats.detections).toBeLessThan(pushed / 5);
        // The face moves smoothly: nose tip steps (16 video frames) stay below the inter-ocular distance.
        let worst = 0;
        for (let i = 1; i < results.length; i++) {
          const a = results[i - 1].faces[0].landmarks;
          const b = results[i].faces[0].landmarks;
          const io = Math.hypot(b[263][0] - b[33][0], b[263][1] - b[33][1]);
          worst = Math.max(worst, Math.hypot(b[1][0] - a[1][0], b[1][1] - a[1][1]) / io);
        }
        expect(worst).toBeLessThan(1);
      } finally {
        await p.close();
      }
    },
    600_000,
  ); // 1200 pipeline frames on a shared 2-core VM

  it('several cameras give each camera its frames in order; a camera that falls behind keeps its newest frame', async () => {
    pipeline.reset();
    const images: RawImage[] = await Promise.all(
      ['franck_01829.jpg', 'audrey.jpg', 'cage.jpg'].map((f) => readRawImage(join(MEDIA_DIR, f))),
    );
    const got: FrameResult[] = [];
    const on = (r: FrameResult) => got.push(r);
    pipeline.on('result', on);
    const before = [...pipeline.stats.dropped];
    const detectionsBefore = pipeline.stats.detections;
    const pushedPerCamera = [12, 12, 12];
    // Push faster than it runs: 12 frames per camera, interleaved, without waiting.
    for (let i = 0; i < 12; i++) for (let c = 0; c < 3; c++) pipeline.push(c, images[c]);
    await pipeline.drain();
    pipeline.off('result', on);
    for (let c = 0; c < 3; c++) {
      const mine = got.filter((r) => r.camera === c);
      const frames = mine.map((r) => r.frame);
      expect(frames).toEqual([...frames].sort((a, b) => a - b));
      expect(new Set(frames).size).toBe(frames.length);
      // The newest frame was processed; every frame is either a result or counted as dropped.
      expect(frames.at(-1)).toBe(
        frames.at(-1)! >= 0 ? pipeline.stats.frames[c] + pipeline.stats.dropped[c] - 1 : -1,
      );
      const dropped = pipeline.stats.dropped[c] - before[c];
      expect(mine.length + dropped).toBe(pushedPerCamera[c]);
      expect(mine.reduce((s, r) => s + r.droppedBefore, 0)).toBe(dropped);
      expect(mine.every((r) => r.faces.length === 1)).toBe(true);
    }
    expect(pipeline.stats.dropped.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    // Each result says whether the detector ran on its frame: the first frame of each camera (nothing tracked) did.
    expect(got.filter((r) => r.detection).length).toBe(pipeline.stats.detections - detectionsBefore);
    for (let c = 0; c < 3; c++) expect(got.find((r) => r.camera === c)!.detection).toBe(true);
  });

  it('refuses a bad camera, a bad frame, a frame in GPU memory on the CPU provider and a bad device', async () => {
    expect(() => pipeline.push(3, { data: new Uint8Array(3), width: 1, height: 1, channels: 3 })).toThrow(
      /Expected an integer in 0..2 for camera but received 3 of type number/,
    );
    expect(() => pipeline.push(0, {} as RawImage)).toThrow(/for image but received/);
    expect(() => pipeline.push(0, { data: new Uint8Array(5), width: 2, height: 1, channels: 3 })).toThrow(
      /Expected 6 bytes \(width x height x channels\) for image.data but received 5/,
    );
    expect(() => pipeline.push(0, { ptr: 1n << 40n, width: 4, height: 4, format: 'RGB' })).toThrow(
      /frames in GPU memory need device 'cuda'/,
    );
    await expect(
      createFacePipeline({ detector: models.detector, landmarks: models.landmarks, cameras: 0 }),
    ).rejects.toThrow(/Expected positive integer for cameras but received 0 of type number/);
    await expect(
      createFacePipeline({ detector: models.detector, landmarks: models.landmarks, device: 'gpu' }),
    ).rejects.toMatchObject({ code: 'E_ARGUMENT', argument: 'device' });
  });

  it('refuses a detector whose postprocessor yields no faces and a landmark model without a landmark one', async () => {
    // The two models swapped: each has the other's postprocessor (asked by role, src/postprocess/roles.ts).
    await expect(
      createFacePipeline({ detector: models.landmarks, landmarks: models.landmarks }),
    ).rejects.toMatchObject({
      code: 'E_CONFIG',
      argument: 'detector',
      message: 'Detector face_landmark has no blazeface postprocessing',
    });
    await expect(
      createFacePipeline({ detector: models.detector, landmarks: models.detector }),
    ).rejects.toMatchObject({
      code: 'E_CONFIG',
      argument: 'postprocessing.type',
      message: 'Model face_detection has no face-landmarks postprocessing in config.json',
    });
  });

  it.skipIf(!NO_GPU)(
    `device cuda without a GPU is a typed error naming device, exit 3 from track ${NO_GPU ? '' : '(skipped: this machine has a GPU; the GPU suite runs the pipeline there)'}`,
    async () => {
      const err = await createFacePipeline({
        detector: models.detector,
        landmarks: models.landmarks,
        device: 'cuda',
      }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'E_BACKEND_UNAVAILABLE', argument: 'device' });
      expect((err as Error).message).toMatch(/^device cuda:0 is unavailable: /);
      const r = spawnSync(
        process.execPath,
        trackArgs(models, [join(MEDIA_DIR, 'cage.jpg')], '--device', 'cuda'),
        { encoding: 'utf8', timeout: 60_000 },
      );
      expect(r.status, r.stderr).toBe(3);
      expect(r.stderr).toMatch(/^yqp-trt track: device cuda:0 is unavailable: /);
      expect(r.stdout).toBe('');
    },
  );

  it('yqp-trt track --image --json prints faces with box, score, keypoints and 468 landmarks', () => {
    const r = spawnSync(
      process.execPath,
      trackArgs(models, [join(MEDIA_DIR, 'cage.jpg'), join(MEDIA_DIR, 'ironman.jpg')], '--json'),
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(lines[0].faces).toHaveLength(1);
    expect(Object.keys(lines[0].faces[0])).toEqual(
      expect.arrayContaining(['box', 'score', 'keypoints', 'landmarks']),
    );
    expect(lines[0].faces[0].landmarks).toHaveLength(468);
    expect(lines[0].faces[0].keypoints).toHaveLength(6);
    expect(lines[1].faces).toHaveLength(0); // a mask, no face (MediaPipe finds none either)
    const bad = spawnSync(
      process.execPath,
      [CLI, 'track', '--detector', models.detector, '--landmarks', models.landmarks],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^yqp-trt track: Expected image files or video files/);
  });
});
