import { expect } from 'vitest';
import { iou, type Face } from '../../src/postprocess/blazeface.js';

/**
 * Faces of a lower-precision run match the reference's, image by image: the same count, each reference face
 * paired with the candidate face it overlaps most (IoU >= minIou) and scores within maxScoreDiff.
 * Returns the worst IoU and score difference seen, for the test to print.
 */
export function expectFacesMatch(
  reference: Face[][],
  candidate: Face[][],
  labels: readonly string[],
  { minIou = 0.9, maxScoreDiff = 0.02 } = {},
): { faces: number; worstIou: number; worstScoreDiff: number } {
  expect(candidate).toHaveLength(reference.length);
  let faces = 0;
  let worstIou = 1;
  let worstScoreDiff = 0;
  for (const [i, ref] of reference.entries()) {
    const got = candidate[i];
    expect(got.length, `${labels[i]}: face count`).toBe(ref.length);
    for (const f of ref) {
      let best = -1;
      let bestIou = -1;
      for (const [j, g] of got.entries()) {
        const o = iou(f.box, g.box);
        if (o > bestIou) [best, bestIou] = [j, o];
      }
      expect(bestIou, `${labels[i]}: IoU of the best-matching face`).toBeGreaterThanOrEqual(minIou);
      const diff = Math.abs(got[best].score - f.score);
      expect(diff, `${labels[i]}: score difference`).toBeLessThanOrEqual(maxScoreDiff);
      worstIou = Math.min(worstIou, bestIou);
      worstScoreDiff = Math.max(worstScoreDiff, diff);
      faces++;
    }
  }
  return { faces, worstIou, worstScoreDiff };
}
