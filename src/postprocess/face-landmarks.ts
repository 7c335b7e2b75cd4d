import { YqpError } from '../errors.js';
import type { ModelConfig } from '../repository/config.js';
import { roiMatrix, type FaceRoi } from '../preprocess/rotated-crop.js';
import type { TensorMap } from '../tensor.js';
import type { ImageTransform } from '../preprocess/spec.js';
import type { Postprocessor } from './registry.js';
import type { FaceLandmarks } from './roles.js';

declare module './registry.js' {
  interface PostprocessorTypes {
    'face-landmarks': { spec: FaceLandmarkPostprocessing; image: FaceLandmarks[] };
  }
}

/** MediaPipe's face landmark model: 468 [x, y, z] in crop pixels plus a face-presence logit. */
export interface FaceLandmarkPostprocessing {
  type: 'face-landmarks';
  /** Output holding 468 x 3 values per face (x, y in input pixels, z in the same scale). */
  landmarks: string;
  /** Output holding the face-presence logit. */
  presence: string;
  /** Side of the square input the landmarks are given in. */
  inputSize: number;
  /** Faces whose presence (sigmoid of the logit) is below this are dropped (MediaPipe: 0.5). */
  presenceThreshold: number;
}

/** One face's landmarks (roles.ts): here MediaPipe's 468 [x, y, z] in pixels of the original frame. */
export type { FaceLandmarks } from './roles.js';

export const LANDMARK_COUNT = 468;

/**
 * The face-landmark postprocessor in the registry's shape ({ name, validate(config), decode(outputs, transforms) }):
 * the transforms are the ROIs the crops were taken from, one per batch item. MediaPipe's TensorsToLandmarks +
 * LandmarkProjection: crop pixels -> normalized by the input side -> rotated and scaled by the ROI into frame pixels.
 */
export const faceLandmarksPostprocessor = {
  name: 'face-landmarks' as const,

  validate(config: ModelConfig): FaceLandmarkPostprocessing {
    const post = config.postprocessing;
    if (!post || post.type !== 'face-landmarks')
      throw new YqpError(
        'E_CONFIG',
        `Model ${config.name} has no face-landmarks postprocessing in config.json`,
        {
          argument: 'postprocessing.type',
          expected: 'face-landmarks',
          received: post?.type ?? 'none',
        },
      );
    const names = new Set(config.outputs.map((o) => o.name));
    for (const key of ['landmarks', 'presence'] as const)
      if (!names.has(post[key]))
        throw new YqpError('E_CONFIG', `postprocessing.${key} names unknown output ${post[key]}`, {
          argument: `postprocessing.${key}`,
        });
    const lm = config.outputs.find((o) => o.name === post.landmarks)!;
    if (lm.dims.at(-1) !== LANDMARK_COUNT * 3)
      throw new YqpError('E_CONFIG', `Output ${post.landmarks} has ${lm.dims.at(-1)} values per face`, {
        argument: 'postprocessing.landmarks',
        expected: `${LANDMARK_COUNT * 3}`,
      });
    return post;
  },

  decode(outputs: TensorMap, rois: readonly FaceRoi[], spec: FaceLandmarkPostprocessing): FaceLandmarks[] {
    const lm = outputs[spec.landmarks];
    const pr = outputs[spec.presence];
    if (!lm || !pr)
      throw new YqpError('E_BACKEND', `Face-landmark output ${spec.landmarks} or ${spec.presence} missing`);
    const values = lm.data as Float32Array;
    const logits = pr.data as Float32Array;
    const per = LANDMARK_COUNT * 3;
    if (values.length < rois.length * per || logits.length < rois.length)
      throw new YqpError('E_BACKEND', `Face-landmark outputs hold fewer faces than the ${rois.length} ROIs`);
    const side = spec.inputSize;
    return rois.map((roi, f) => {
      const m = roiMatrix(roi, side, side);
      const zScale = roi.size / side;
      const landmarks: [number, number, number][] = new Array(LANDMARK_COUNT);
      for (let i = 0; i < LANDMARK_COUNT; i++) {
        const o = f * per + i * 3;
        const x = values[o];
        const y = values[o + 1];
        landmarks[i] = [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5], values[o + 2] * zScale];
      }
      const presence = 1 / (1 + Math.exp(-logits[f]));
      return { landmarks, presence, present: presence >= spec.presenceThreshold, roi };
    });
  },
};

/**
 * The registry's entry: whole images (already a face crop each, placed by the input's stretch or letterbox) to
 * their landmarks in original pixels. The face pipeline calls faceLandmarksPostprocessor.decode with its rotated ROIs.
 */
export const faceLandmarksEntry: Postprocessor<'face-landmarks'> = {
  name: 'face-landmarks',
  schema: { $ref: 'https://yqp-trt.dev/schemas/config.schema.json#/definitions/faceLandmarks' },
  validate(spec: FaceLandmarkPostprocessing, config: ModelConfig) {
    faceLandmarksPostprocessor.validate({ ...config, postprocessing: spec });
  },
  decode(outputs: TensorMap, transforms: readonly ImageTransform[], spec: FaceLandmarkPostprocessing) {
    const side = spec.inputSize;
    const rois: FaceRoi[] = transforms.map((_t, frame) => ({
      frame,
      cx: side / 2,
      cy: side / 2,
      size: side,
      angle: 0,
    }));
    return faceLandmarksPostprocessor.decode(outputs, rois, spec).map((face, i) => {
      const t = transforms[i];
      const landmarks = face.landmarks.map(
        ([x, y, z]) =>
          [(x - t.padX) / t.scaleX, (y - t.padY) / t.scaleY, z / t.scaleX] as [number, number, number],
      );
      return [{ ...face, landmarks }];
    });
  },
  faceLandmarker: {
    decodeRois: (outputs, rois, spec) => faceLandmarksPostprocessor.decode(outputs, rois, spec),
  },
};

/** MediaPipe's face_landmark.tflite (192x192 in, 1404 landmark values and a presence logit out), by output names. */
export function mediapipeFaceLandmarkPostprocessing(
  landmarks: string,
  presence: string,
): FaceLandmarkPostprocessing {
  return { type: 'face-landmarks', landmarks, presence, inputSize: 192, presenceThreshold: 0.5 };
}
