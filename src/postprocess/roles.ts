import { YqpError } from '../errors.js';
import type { FaceRoi } from '../preprocess/rotated-crop.js';
import type { ImageTransform } from '../preprocess/spec.js';
import type { ModelConfig } from '../repository/config.js';
import type { TensorMap } from '../tensor.js';
import {
  postprocessorFor,
  postprocessorNames,
  type Postprocessed,
  type PostprocessingSpec,
  type PostprocessorName,
} from './registry.js';

/**
 * What code outside src/postprocess/ asks of a postprocessor instead of its name: the roles of its entry
 * (Postprocessor.faceDetector, .faceLandmarker), the shapes of their results, and lookups that bind a config's
 * spec to its postprocessor's role.
 */

/** One detected face: what a face detector's images hold. */
export interface Face {
  /** [x0, y0, x1, y1] in pixels of the original image. */
  box: [number, number, number, number];
  /** Keypoints in pixels, the two eyes first (BlazeFace: right eye, left eye, nose, mouth, right ear, left ear). */
  keypoints: [number, number][];
  score: number;
}

/** One face's landmarks: [x, y, z] in pixels of the original frame (z in the same scale as x). */
export interface FaceLandmarks {
  landmarks: [number, number, number][];
  /** Face presence, sigmoid of the model's logit (0..1). */
  presence: number;
  /** presence >= the spec's presenceThreshold. */
  present: boolean;
  /** The ROI the landmarks were found in. */
  roi: FaceRoi;
}

/** Postprocessor.faceDetector: its images are Face[]. */
export interface FaceDetectorRole<S> {
  /** The spec with its score threshold lowered to `score` (never raised): faces down to that score are kept too. */
  lowerScoreThreshold(spec: S, score: number): S;
}

/** Postprocessor.faceLandmarker: it decodes crops cut at rotated face ROIs. */
export interface FaceLandmarkerRole<S> {
  /** A batch of crops (item i cut at rois[i], src/preprocess/rotated-crop.ts) to each ROI's landmarks in frame pixels. */
  decodeRois(outputs: TensorMap, rois: readonly FaceRoi[], spec: S): FaceLandmarks[];
}

/** A config's face-detecting postprocessor, bound to its spec. */
export interface FaceDetector {
  readonly name: PostprocessorName;
  readonly spec: PostprocessingSpec;
  /** A batch's outputs (images in transform order) to the faces of each image, in its original pixels. */
  decode(outputs: TensorMap, transforms: readonly ImageTransform[]): Face[][];
  /** The same detector keeping faces down to `score` (its threshold lowered to it, never raised). */
  atScore(score: number): FaceDetector;
}

/** A config's face-landmark postprocessor, bound to its (validated) spec. */
export interface FaceLandmarker {
  readonly name: PostprocessorName;
  readonly spec: PostprocessingSpec;
  /** A batch of crops cut at `rois` (one per item) to each ROI's landmarks in frame pixels. */
  decode(outputs: TensorMap, rois: readonly FaceRoi[]): FaceLandmarks[];
}

/** Whether config.postprocessing's postprocessor yields faces (Face[] per image). */
export function yieldsFaces(spec: PostprocessingSpec | undefined): boolean {
  return spec !== undefined && postprocessorFor(spec.type).faceDetector !== undefined;
}

/** The face detector of config.postprocessing; undefined without one or when its postprocessor yields no faces. */
export function faceDetectorFor(spec: PostprocessingSpec | undefined): FaceDetector | undefined {
  if (!spec) return undefined;
  const p = postprocessorFor(spec.type);
  const role = p.faceDetector;
  if (!role) return undefined;
  const bind = (s: PostprocessingSpec): FaceDetector => ({
    name: p.name,
    spec: s,
    decode: (outputs, transforms) => p.decode(outputs, transforms, s) as Face[][],
    atScore: (score) => bind(role.lowerScoreThreshold(s, score)),
  });
  return bind(spec);
}

/** A model result's faces per image (ImageResults.postprocessed), when its postprocessor yields faces. */
export function facesOf(postprocessed: Postprocessed | undefined): Face[][] | undefined {
  if (!postprocessed || !postprocessorFor(postprocessed.type).faceDetector) return undefined;
  return postprocessed.images as Face[][];
}

/**
 * The face-landmark postprocessor of a model's config, its spec validated against the model's outputs; E_CONFIG
 * naming the postprocessors that can be when the config has none of them.
 */
export function faceLandmarkerFor(config: ModelConfig): FaceLandmarker {
  const spec = config.postprocessing;
  const p = spec && postprocessorFor(spec.type, `config of ${config.name}`);
  const role = p?.faceLandmarker;
  if (!spec || !p || !role) {
    const names = postprocessorNames('faceLandmarker');
    throw new YqpError(
      'E_CONFIG',
      `Model ${config.name} has no ${names.join(' or ')} postprocessing in config.json`,
      { argument: 'postprocessing.type', expected: names.join(', '), received: spec?.type ?? 'none' },
    );
  }
  p.validate(spec, config, `config of ${config.name}`);
  return { name: p.name, spec, decode: (outputs, rois) => role.decodeRois(outputs, rois, spec) };
}
