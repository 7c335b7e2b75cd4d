import ort from 'onnxruntime-node';
import { YqpError } from '../errors.js';
import type { ModelProto } from '../onnx/model.js';
import { encodeOnnx } from '../onnx/model.js';
import { faceDetectorFor, type Face, type FaceDetector } from '../postprocess/index.js';
import type { ImageTransform } from '../preprocess/cpu.js';
import { preprocessImages } from '../preprocess/cpu.js';
import type { PostprocessingSpec, PreprocessingSpec } from '../repository/config.js';
import type { TensorMap } from '../tensor.js';
import { matchFaces } from './compare.js';

/**
 * The task metric an INT8 model is held to against its FP32 model on validation frames: with a BlazeFace
 * postprocessor, the FP32 faces (score >= minScore) found again at IoU >= minIou, and no face on a frame where
 * FP32 finds none; otherwise the cosine of every output to FP32's.
 */
export interface AccuracyTarget {
  /** Share of the FP32 faces INT8 must find (default 0.95). */
  minRecall: number;
  /** IoU at which an INT8 face matches an FP32 face (default 0.85). */
  minIou: number;
  /** FP32 faces below this score are not counted (default 0.75). */
  minScore: number;
  /** A frame is face-free when FP32 finds no face even at this score (default 0.5); INT8 must find none there. */
  faceFreeScore: number;
  /** Without a face postprocessor: the lowest cosine any output may have to FP32's (default 0.99). */
  minCosine: number;
}

export const DEFAULT_TARGET: AccuracyTarget = {
  minRecall: 0.95,
  minIou: 0.85,
  minScore: 0.75,
  faceFreeScore: 0.5,
  minCosine: 0.99,
};

export interface AccuracyResult {
  /** faces: recall of FP32's faces; outputs: the lowest output cosine. */
  metric: 'faces' | 'cosine';
  frames: number;
  facesFp32?: number;
  matched?: number;
  recall?: number;
  /** Faces INT8 reports on face-free frames (FP32 finds no face there even at faceFreeScore). */
  falseFaces?: number;
  faceFree?: number;
  /** Lowest cosine to FP32 over the outputs, and the largest absolute error. */
  cosine: number;
  maxAbs: number;
  pass: boolean;
  /** Frames where INT8's faces differ from FP32's (faces only). */
  mismatches?: { frame: string; facesFp32: number; facesInt8: number; matched: number }[];
  /** The one number the fallback ranks by (higher is better): recall minus false faces per frame, or cosine. */
  score: number;
}

interface Frame {
  name: string;
  feeds: Record<string, ort.Tensor>;
  transforms: ImageTransform[];
}

/** Runs one model over the validation frames; keeps the reference outputs of the FP32 model. */
export class AccuracyProbe {
  private constructor(
    private readonly frames: Frame[],
    private readonly post: FaceDetector | undefined,
    private readonly target: AccuracyTarget,
    private readonly reference: { outputs: TensorMap[]; faces?: Face[][]; faceFree?: boolean[] },
  ) {}

  /** Preprocesses the frames (each at batch 1, which every profile takes) and runs the FP32 model on them. */
  static async open(
    fp32: ModelProto,
    files: readonly { path: string; name: string }[],
    spec: PreprocessingSpec,
    post: PostprocessingSpec | undefined,
    target: AccuracyTarget = DEFAULT_TARGET,
    onSkip?: (frame: string, error: Error) => void,
  ): Promise<AccuracyProbe> {
    if (files.length === 0)
      throw new YqpError('E_CALIBRATION', 'INT8 validation needs at least one frame', {
        argument: '--calib-validate',
        expected: 'a folder with jpg, png or webp images',
        received: 'no frame',
      });
    const frames: Frame[] = [];
    for (const f of files) {
      let pre;
      try {
        pre = await preprocessImages([f.path], spec);
      } catch (e) {
        onSkip?.(f.name, e as Error);
        continue;
      }
      const { tensor, transforms } = pre;
      frames.push({
        name: f.name,
        feeds: { [spec.input]: new ort.Tensor('float32', tensor.data as Float32Array, tensor.dims) },
        transforms,
      });
    }
    if (frames.length === 0)
      throw new YqpError(
        'E_CALIBRATION',
        `None of the ${files.length} validation frame(s) could be decoded`,
        {
          argument: '--calib-validate',
          expected: 'readable jpg, png or webp images',
          received: `${files.length} unreadable files`,
        },
      );
    const probe = new AccuracyProbe(frames, faceDetectorFor(post), target, {
      outputs: [],
    });
    const ref = await probe.runAll(fp32);
    probe.reference.outputs = ref.outputs;
    probe.reference.faces = ref.faces?.map((fs) => fs.filter((x) => x.score >= target.minScore));
    if (probe.post) {
      const low = probe.post.atScore(target.faceFreeScore);
      probe.reference.faceFree = probe.frames.map(
        (f, i) => low.decode(ref.outputs[i], f.transforms)[0].length === 0,
      );
    }
    return probe;
  }

  get frameCount(): number {
    return this.frames.length;
  }

  /** Frames where FP32 finds no face even at faceFreeScore. */
  get faceFreeFrames(): string[] {
    return this.frames.filter((_, i) => this.reference.faceFree?.[i]).map((f) => f.name);
  }

  /** FP32 faces (score >= minScore) per frame; undefined without a face postprocessor. */
  get referenceFaces(): Face[][] | undefined {
    return this.reference.faces;
  }

  private async runAll(proto: ModelProto): Promise<{ outputs: TensorMap[]; faces?: Face[][] }> {
    const session = await ort.InferenceSession.create(encodeOnnx(proto), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    try {
      const outputs: TensorMap[] = [];
      const faces: Face[][] = [];
      for (const f of this.frames) {
        const r = await session.run(f.feeds);
        const map: TensorMap = {};
        for (const [k, v] of Object.entries(r))
          map[k] = { dtype: 'float32', dims: [...v.dims], data: v.data as Float32Array };
        outputs.push(map);
        if (this.post) faces.push(this.post.decode(map, f.transforms)[0]);
      }
      return { outputs, faces: this.post ? faces : undefined };
    } finally {
      await session.release();
    }
  }

  /** Runs a candidate model (the Q/DQ model) and scores it against FP32. */
  async evaluate(proto: ModelProto): Promise<AccuracyResult> {
    const run = await this.runAll(proto);
    let cosine = 1;
    let maxAbs = 0;
    const names = Object.keys(this.reference.outputs[0] ?? {});
    for (const name of names) {
      let dot = 0;
      let na = 0;
      let nb = 0;
      for (let i = 0; i < this.frames.length; i++) {
        const a = this.reference.outputs[i][name].data as Float32Array;
        const b = run.outputs[i][name].data as Float32Array;
        for (let k = 0; k < a.length; k++) {
          dot += a[k] * b[k];
          na += a[k] * a[k];
          nb += b[k] * b[k];
          const d = Math.abs(a[k] - b[k]);
          if (d > maxAbs) maxAbs = d;
        }
      }
      const c = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : na === nb ? 1 : 0;
      if (c < cosine) cosine = c;
    }
    if (!this.reference.faces || !run.faces)
      return {
        metric: 'cosine',
        frames: this.frames.length,
        cosine,
        maxAbs,
        pass: cosine >= this.target.minCosine,
        score: cosine,
      };
    let total = 0;
    let matched = 0;
    let falseFaces = 0;
    const mismatches: NonNullable<AccuracyResult['mismatches']> = [];
    for (let i = 0; i < this.frames.length; i++) {
      const a = this.reference.faces[i];
      const b = run.faces[i];
      const m = matchFaces(a, b, this.target.minIou).length;
      total += a.length;
      matched += m;
      if (this.reference.faceFree![i]) falseFaces += b.length;
      if (m !== a.length || m !== b.length)
        mismatches.push({ frame: this.frames[i].name, facesFp32: a.length, facesInt8: b.length, matched: m });
    }
    const recall = total > 0 ? matched / total : 1;
    return {
      metric: 'faces',
      frames: this.frames.length,
      facesFp32: total,
      matched,
      recall,
      falseFaces,
      faceFree: this.reference.faceFree!.filter(Boolean).length,
      mismatches,
      cosine,
      maxAbs,
      pass: recall >= this.target.minRecall && falseFaces === 0,
      score: recall - falseFaces / this.frames.length,
    };
  }
}

/** One line for the build log and the error message. */
export function describeAccuracy(r: AccuracyResult, target: AccuracyTarget = DEFAULT_TARGET): string {
  if (r.metric === 'faces')
    return `${r.matched}/${r.facesFp32} FP32 faces (score >= ${target.minScore}) found at IoU >= ${target.minIou} (recall ${((r.recall ?? 0) * 100).toFixed(1)}%, target ${(target.minRecall * 100).toFixed(0)}%), ${r.falseFaces} faces on the ${r.faceFree} face-free frames, on ${r.frames} frames`;
  return `lowest output cosine to FP32 ${r.cosine.toFixed(4)} (target ${target.minCosine}), max |error| ${r.maxAbs.toPrecision(3)}, on ${r.frames} frames`;
}
