/** The postprocessors' roles (src/postprocess/roles.ts): what other code asks of an entry instead of its name. */
import { describe, expect, it } from 'vitest';
import { mediapipeFaceDetectionPostprocessing } from '../src/postprocess/blazeface-preset.js';
import { BLAZEFACE_FRONT_POSTPROCESSING, decodeBlazeFace } from '../src/postprocess/blazeface.js';
import {
  faceLandmarksPostprocessor,
  mediapipeFaceLandmarkPostprocessing,
} from '../src/postprocess/face-landmarks.js';
import {
  faceDetectorFor,
  faceLandmarkerFor,
  facesOf,
  postprocessorNames,
  yieldsFaces,
} from '../src/postprocess/index.js';
import type { FaceRoi } from '../src/preprocess/rotated-crop.js';
import type { ImageTransform } from '../src/preprocess/spec.js';
import type { ModelConfig } from '../src/repository/config.js';
import type { TensorMap } from '../src/tensor.js';

const LANDMARKS = mediapipeFaceLandmarkPostprocessing('lm', 'presence');
const config = (postprocessing: unknown, outputs: [string, number[]][]) =>
  ({
    name: 'm',
    postprocessing,
    outputs: outputs.map(([name, dims]) => ({ name, dtype: 'float32', dims })),
  }) as unknown as ModelConfig;

/** BlazeFace front outputs of one image with two hits: score logit 5 (0.993) and 0 (0.5), far apart. */
function detectorOutputs(): TensorMap {
  const scores0 = new Float32Array(512).fill(-10);
  const scores1 = new Float32Array(384).fill(-10);
  const boxes0 = new Float32Array(512 * 16);
  const boxes1 = new Float32Array(384 * 16);
  scores1[162] = 5; // cell (3, 3) of the 8x8 grid
  boxes1.set([0, 0, 32, 32, 4, 0], 162 * 16);
  scores0[0] = 0; // cell (0, 0) of the 16x16 grid
  boxes0.set([0, 0, 8, 8], 0);
  return {
    'Identity:0': { dtype: 'float32', dims: [1, 512, 1], data: scores0 },
    'Identity_1:0': { dtype: 'float32', dims: [1, 384, 1], data: scores1 },
    'Identity_2:0': { dtype: 'float32', dims: [1, 512, 16], data: boxes0 },
    'Identity_3:0': { dtype: 'float32', dims: [1, 384, 16], data: boxes1 },
  };
}
const IDENTITY: ImageTransform[] = [{ width: 128, height: 128, scaleX: 1, scaleY: 1, padX: 0, padY: 0 }];

describe('postprocessor roles', () => {
  it('the registry lists the postprocessors of each role', () => {
    expect(postprocessorNames()).toEqual(['blazeface', 'face-landmarks']);
    expect(postprocessorNames('faceDetector')).toEqual(['blazeface']);
    expect(postprocessorNames('faceLandmarker')).toEqual(['face-landmarks']);
    expect(yieldsFaces(BLAZEFACE_FRONT_POSTPROCESSING)).toBe(true);
    expect(yieldsFaces(LANDMARKS)).toBe(false);
    expect(yieldsFaces(undefined)).toBe(false);
  });

  it('a face detector decodes as its postprocessor does, and lowers its score threshold but never raises it', () => {
    const outputs = detectorOutputs();
    const detector = faceDetectorFor(BLAZEFACE_FRONT_POSTPROCESSING)!;
    expect(detector.name).toBe(BLAZEFACE_FRONT_POSTPROCESSING.type);
    const faces = detector.decode(outputs, IDENTITY);
    expect(faces).toEqual(decodeBlazeFace(outputs, BLAZEFACE_FRONT_POSTPROCESSING, IDENTITY));
    expect(faces[0]).toHaveLength(1);
    const low = detector.atScore(0.4);
    expect(low.decode(outputs, IDENTITY)[0]).toHaveLength(2);
    expect(detector.decode(outputs, IDENTITY)[0]).toHaveLength(1); // the detector itself is unchanged
    expect(detector.atScore(0.9).decode(outputs, IDENTITY)).toEqual(faces);
    expect(faceDetectorFor(LANDMARKS)).toBeUndefined();
    expect(faceDetectorFor(undefined)).toBeUndefined();
  });

  it("facesOf reads a model result's faces only from a face detector's results", () => {
    const images = faceDetectorFor(BLAZEFACE_FRONT_POSTPROCESSING)!.decode(detectorOutputs(), IDENTITY);
    expect(facesOf({ type: BLAZEFACE_FRONT_POSTPROCESSING.type, images })).toBe(images);
    expect(facesOf({ type: LANDMARKS.type, images: [[]] })).toBeUndefined();
    expect(facesOf(undefined)).toBeUndefined();
  });

  it('a face landmarker is validated against the outputs and decodes ROIs as its postprocessor does', () => {
    expect(() => faceLandmarkerFor(config(BLAZEFACE_FRONT_POSTPROCESSING, []))).toThrow(
      /^Model m has no face-landmarks postprocessing in config.json$/,
    );
    expect(() => faceLandmarkerFor(config(undefined, []))).toThrow(/has no face-landmarks postprocessing/);
    expect(() => faceLandmarkerFor(config(LANDMARKS, [['lm', [-1, 1404]]]))).toThrow(
      /postprocessing.presence names unknown output presence/,
    );
    const landmarker = faceLandmarkerFor(
      config(LANDMARKS, [
        ['lm', [-1, 1, 1, 1404]],
        ['presence', [-1, 1, 1, 1]],
      ]),
    );
    const values = Float32Array.from({ length: 2 * 1404 }, (_, i) => (i % 192) + (i % 3));
    const outputs: TensorMap = {
      lm: { dtype: 'float32', dims: [2, 1, 1, 1404], data: values },
      presence: { dtype: 'float32', dims: [2, 1, 1, 1], data: Float32Array.from([3, -3]) },
    };
    const rois: FaceRoi[] = [
      { frame: 0, cx: 300, cy: 200, size: 150, angle: 0.3 },
      { frame: 1, cx: 50, cy: 60, size: 40, angle: -1 },
    ];
    const decoded = landmarker.decode(outputs, rois);
    expect(decoded).toEqual(faceLandmarksPostprocessor.decode(outputs, rois, LANDMARKS));
    expect(decoded.map((d) => d.present)).toEqual([true, false]);
  });

  it('the MediaPipe specs the TFLite importer writes are built here', () => {
    expect(mediapipeFaceDetectionPostprocessing('scores', 'boxes')).toEqual({
      type: 'blazeface',
      scores: ['scores'],
      boxes: ['boxes'],
      anchors: { inputSize: 128, strides: [8, 16], anchorsPerCell: [2, 6] },
      scoreThreshold: 0.5,
      iouThreshold: 0.3,
      scoreClip: 100,
    });
    expect(LANDMARKS).toEqual({
      type: 'face-landmarks',
      landmarks: 'lm',
      presence: 'presence',
      inputSize: 192,
      presenceThreshold: 0.5,
    });
  });
});
