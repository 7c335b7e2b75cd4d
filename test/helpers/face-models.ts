import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importTflite } from '../../src/tflite/import.js';
import { FACE_DETECTION_TFLITE, FACE_LANDMARK_TFLITE, ROOT, requireData } from './data.js';

/** Imports MediaPipe's detector and landmark models into a fresh repository; returns the two entry folders. */
export async function importFaceModels(): Promise<{ repo: string; detector: string; landmarks: string }> {
  requireData(FACE_DETECTION_TFLITE, FACE_LANDMARK_TFLITE);
  const repo = mkdtempSync(join(tmpdir(), 'yqp-face-'));
  const d = await importTflite(FACE_DETECTION_TFLITE, { name: 'face_detection', repo });
  const l = await importTflite(FACE_LANDMARK_TFLITE, { name: 'face_landmark', repo });
  return { repo, detector: d.entry.dir, landmarks: l.entry.dir };
}

/** `node dist/cli/main.js track` on the two entries and these images, then `extra` (for spawn and execFile). */
export function trackArgs(
  models: { detector: string; landmarks: string },
  images: string[],
  ...extra: string[]
): string[] {
  const cli = join(ROOT, 'dist', 'cli', 'main.js');
  return [
    cli,
    'track',
    '--detector',
    models.detector,
    '--landmarks',
    models.landmarks,
    '--image',
    ...images,
    ...extra,
  ];
}
