import { describe, expect, it } from 'vitest';
import {
  BLAZEFACE_FRONT_POSTPROCESSING,
  decodeBlazeFace,
  generateAnchors,
  iou,
  weightedNms,
} from '../src/postprocess/blazeface.js';
import type { TensorMap } from '../src/tensor.js';

describe('BlazeFace decoding', () => {
  it('makes MediaPipe anchors: 16x16x2 + 8x8x6 = 896', () => {
    const a = generateAnchors(BLAZEFACE_FRONT_POSTPROCESSING.anchors);
    expect(a.length / 2).toBe(896);
    expect([a[0], a[1]]).toEqual([0.5 / 16, 0.5 / 16]);
    expect([a[1024], a[1025]]).toEqual([0.5 / 8, 0.5 / 8]);
  });
  it('averages overlapping detections by score (weighted NMS)', () => {
    const kept = weightedNms(
      [
        { x0: 0, y0: 0, x1: 10, y1: 10, kp: [1, 1], score: 0.9 },
        { x0: 1, y0: 1, x1: 11, y1: 11, kp: [3, 3], score: 0.9 },
        { x0: 50, y0: 50, x1: 60, y1: 60, kp: [55, 55], score: 0.8 },
      ],
      0.3,
    );
    expect(kept).toHaveLength(2);
    expect(kept[0].x0).toBeCloseTo(0.5);
    expect(kept[0].kp[0]).toBeCloseTo(2);
    expect(kept[1].score).toBe(0.8);
    expect(iou([0, 0, 10, 10], [5, 0, 15, 10])).toBeCloseTo(1 / 3);
  });
  it('decodes one synthetic anchor hit into image pixels through the letterbox transform', () => {
    const spec = BLAZEFACE_FRONT_POSTPROCESSING;
    const scores0 = new Float32Array(512).fill(-10);
    const scores1 = new Float32Array(384).fill(-10);
    const boxes0 = new Float32Array(512 * 16);
    const boxes1 = new Float32Array(384 * 16);
    // Anchor 162 = cell (3, 3) of the 8x8 grid sits at (56, 56) input pixels; a 32x32 box around it,
    // first keypoint 4 px right of the center.
    scores1[162] = 5;
    boxes1.set([0, 0, 32, 32, 4, 0], 162 * 16);
    const outputs: TensorMap = {
      'Identity:0': { dtype: 'float32', dims: [1, 512, 1], data: scores0 },
      'Identity_1:0': { dtype: 'float32', dims: [1, 384, 1], data: scores1 },
      'Identity_2:0': { dtype: 'float32', dims: [1, 512, 16], data: boxes0 },
      'Identity_3:0': { dtype: 'float32', dims: [1, 384, 16], data: boxes1 },
    };
    // A 256x512 image letterboxed into 128x128: scale 0.25, padded 32 px left and right.
    const faces = decodeBlazeFace(outputs, spec, [
      { width: 256, height: 512, scaleX: 0.25, scaleY: 0.25, padX: 32, padY: 0 },
    ]);
    expect(faces[0]).toHaveLength(1);
    const f = faces[0][0];
    expect(f.score).toBeCloseTo(1 / (1 + Math.exp(-5)));
    // x: (40 - 32) / 0.25 = 32 .. (72 - 32) / 0.25 = 160; y: 40 / 0.25 = 160 .. 72 / 0.25 = 288
    expect(f.box.map((v) => Math.round(v * 1000) / 1000)).toEqual([32, 160, 160, 288]);
    expect(f.keypoints[0].map((v) => Math.round(v * 1000) / 1000)).toEqual([112, 224]);
    expect(f.keypoints).toHaveLength(6);
  });
});
