import { YqpError } from '../errors.js';
import type { ImageTransform } from '../preprocess/spec.js';
import type { ModelConfig } from '../repository/config.js';
import type { TensorMap } from '../tensor.js';
import type { FaceDetectorRole, FaceLandmarkerRole } from './roles.js';

/**
 * The postprocessors' types, by name: what config.postprocessing holds (`spec`, with `type` = the name) and what
 * one image decodes to (`image`). Each postprocessor adds its own line from its own file by declaration merging:
 *
 *   declare module './registry.js' {
 *     interface PostprocessorTypes { blazeface: { spec: BlazeFacePostprocessing; image: Face[] } }
 *   }
 */
export interface PostprocessorTypes {}

export type PostprocessorName = keyof PostprocessorTypes & string;

/** config.postprocessing: one of the registered postprocessors' specs. */
export type PostprocessingSpec = PostprocessorTypes[PostprocessorName]['spec'];

/** A model's decoded results (ImageResults.postprocessed): the postprocessor's name and one result per image. */
export type Postprocessed = {
  [N in PostprocessorName]: { type: N; images: PostprocessorTypes[N]['image'][] };
}[PostprocessorName];

/** How `yqp-trt infer` shows one image's result. */
export interface PostprocessorPresentation {
  /** Fields of the image's JSON object (blazeface: { faces: [...] }). */
  json: Record<string, unknown>;
  /** After "<image> (<w>x<h>): ", e.g. "2 faces". */
  summary: string;
  /** Further lines, printed indented under it. */
  lines: string[];
}

export interface Postprocessor<N extends PostprocessorName = PostprocessorName> {
  readonly name: N;
  /**
   * JSON schema of its config.postprocessing object (ajv, draft-07; may $ref the published schema's definitions).
   * Checked before validate().
   */
  readonly schema: object;
  /** The checks a schema cannot say (the outputs it names exist in config.outputs); throws E_CONFIG naming `where`. */
  validate(spec: PostprocessorTypes[N]['spec'], config: ModelConfig, where: string): void;
  /** A batch's outputs (images in transform order) to one result per image, in pixels of each original image. */
  decode(
    outputs: TensorMap,
    transforms: readonly ImageTransform[],
    spec: PostprocessorTypes[N]['spec'],
  ): PostprocessorTypes[N]['image'][];
  /**
   * Set where decode() can take rows selected on the GPU (selected-rows.ts): the (scores, rows) output pairs and
   * the raw score at or above which a row may pass. loadModel's `selectRows` then runs that selection after the
   * model on device cuda, and only the selected rows come back.
   */
  rowSelection?(spec: PostprocessorTypes[N]['spec']): { pairs: [string, string][]; minScore: number };
  /** ImageResults field that carries the same results for callers from before the registry (blazeface: faces). */
  readonly legacyField?: string;
  present?(image: PostprocessorTypes[N]['image']): PostprocessorPresentation;
  /**
   * Roles other code asks for instead of comparing names (src/postprocess/roles.ts looks them up). Set when its
   * images are Face[] (box, keypoints with the two eyes first, score): a face detector, which the face pipeline
   * and the face-task metrics (calibration, compare) take.
   */
  readonly faceDetector?: FaceDetectorRole<PostprocessorTypes[N]['spec']>;
  /** Set when it decodes face crops cut at rotated ROIs to landmarks: the face pipeline's second stage. */
  readonly faceLandmarker?: FaceLandmarkerRole<PostprocessorTypes[N]['spec']>;
}

/** The roles a postprocessor may have (fields of its entry). */
export type PostprocessorRole = 'faceDetector' | 'faceLandmarker';

const entries = new Map<string, Postprocessor>();

export function registerPostprocessor<N extends PostprocessorName>(p: Postprocessor<N>): void {
  if (entries.has(p.name))
    throw new YqpError('E_INTERNAL', `A postprocessor named ${p.name} is already registered`, {
      argument: 'postprocessing.type',
    });
  entries.set(p.name, p as unknown as Postprocessor);
}

/** The registered postprocessors' names; with a role, those that have it. */
export function postprocessorNames(role?: PostprocessorRole): string[] {
  return [...entries.values()].filter((p) => !role || p[role] !== undefined).map((p) => p.name);
}

/** The postprocessor of config.postprocessing.type; an unknown type is E_CONFIG naming the known ones. */
export function postprocessorFor(type: unknown, where = 'config'): Postprocessor {
  const p = typeof type === 'string' ? entries.get(type) : undefined;
  if (!p)
    throw new YqpError(
      'E_CONFIG',
      `Invalid ${where}: postprocessing.type: expected one of ${postprocessorNames().join(', ')}`,
      { argument: 'postprocessing.type', expected: postprocessorNames().join(', '), received: String(type) },
    );
  return p;
}

/** Decodes a batch with the config's postprocessor: the neutral result, undefined without a postprocessor. */
export function postprocess(
  spec: PostprocessingSpec | undefined,
  outputs: TensorMap,
  transforms: readonly ImageTransform[],
): Postprocessed | undefined {
  if (!spec) return undefined;
  const p = postprocessorFor(spec.type);
  return { type: p.name, images: p.decode(outputs, transforms, spec) } as Postprocessed;
}
