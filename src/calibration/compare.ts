import { YqpError, expectNonNegativeNumber, invalidParameter } from '../errors.js';
import { loadModel, type Model } from '../model.js';
import { iou } from '../postprocess/blazeface.js';
import { facesOf, yieldsFaces, type Face } from '../postprocess/index.js';
import { listCalibrationFiles } from './loader.js';

/**
 * Cross-model comparison in the manner of Polygraphy's `run --onnxrt --trt`: both models on the same images;
 * per output the error statistics, and with a BlazeFace postprocessor the face matching. Model a is the
 * reference (relative errors divide by |a|).
 */
export interface CompareOptions {
  /** Elementwise check: an element fails when |a-b| > atol and |a-b|/|a| > rtol (Polygraphy's rule). */
  atol?: number;
  rtol?: number;
  /** IoU at which a face of b matches a face of a. */
  minIou?: number;
  /** Recall and precision of b against a must reach this. */
  minRecall?: number;
  /** Check raw outputs too when the models have a face postprocessor (default: only when atol/rtol are given). */
  checkOutputs?: boolean;
  onImage?: (done: number, total: number) => void;
}

export interface OutputComparison {
  name: string;
  elements: number;
  maxAbs: number;
  meanAbs: number;
  maxRel: number;
  meanRel: number;
  cosine: number;
  /** Elements outside both tolerances. */
  failing: number;
  checked: boolean;
  pass: boolean;
}

export interface FaceComparison {
  facesA: number;
  facesB: number;
  matched: number;
  recall: number;
  precision: number;
  meanIou: number;
  minIou: number;
  meanScoreDiff: number;
  maxScoreDiff: number;
  /** Images where a face of a was not found or b found an extra one. */
  mismatches: { image: string; facesA: number; facesB: number; matched: number }[];
  pass: boolean;
}

export interface CompareReport {
  a: string;
  b: string;
  images: number;
  tolerances: { atol: number; rtol: number; minIou: number; minRecall: number };
  outputs: OutputComparison[];
  faces?: FaceComparison;
  pass: boolean;
}

/** Greedy matching by IoU, best pairs first. */
export function matchFaces(
  a: readonly Face[],
  b: readonly Face[],
  minIou: number,
): [number, number, number][] {
  const pairs: [number, number, number][] = [];
  for (let i = 0; i < a.length; i++)
    for (let j = 0; j < b.length; j++) {
      const v = iou(a[i].box, b[j].box);
      if (v >= minIou) pairs.push([i, j, v]);
    }
  pairs.sort((x, y) => y[2] - x[2]);
  const usedA = new Set<number>();
  const usedB = new Set<number>();
  const out: [number, number, number][] = [];
  for (const p of pairs) {
    if (usedA.has(p[0]) || usedB.has(p[1])) continue;
    usedA.add(p[0]);
    usedB.add(p[1]);
    out.push(p);
  }
  return out;
}

async function imageList(images: string | readonly string[]): Promise<string[]> {
  if (typeof images === 'string') {
    const listing = await listCalibrationFiles(images);
    if (listing.images.length === 0)
      throw new YqpError('E_IMAGE', `Folder ${images} holds no jpg, png or webp image`, {
        argument: '--images',
        expected: 'a folder of images',
        received: images,
      });
    return listing.images.map((f) => f.path);
  }
  if (!Array.isArray(images) || images.length === 0)
    throw invalidParameter('images', 'a folder or a non-empty list of images', images);
  return [...images];
}

export async function compareModels(
  aPath: string,
  bPath: string,
  images: string | readonly string[],
  options: CompareOptions = {},
): Promise<CompareReport> {
  const atol = expectNonNegativeNumber('--atol', options.atol ?? 1e-5);
  const rtol = expectNonNegativeNumber('--rtol', options.rtol ?? 1e-5);
  const minIou = expectNonNegativeNumber('--min-iou', options.minIou ?? 0.5);
  const minRecall = expectNonNegativeNumber('--min-recall', options.minRecall ?? 0.95);
  if (minIou > 1) throw invalidParameter('--min-iou', 'a number in [0, 1]', minIou);
  if (minRecall > 1) throw invalidParameter('--min-recall', 'a number in [0, 1]', minRecall);
  const files = await imageList(images);
  let a: Model | undefined;
  let b: Model | undefined;
  try {
    a = await loadModel(aPath, { contexts: 1 });
    b = await loadModel(bPath, { contexts: 1 });
    const faceModels = yieldsFaces(a.config.postprocessing) && yieldsFaces(b.config.postprocessing);
    const checkOutputs =
      options.checkOutputs ?? (!faceModels || options.atol !== undefined || options.rtol !== undefined);
    const acc = new Map<
      string,
      {
        n: number;
        maxAbs: number;
        sumAbs: number;
        maxRel: number;
        sumRel: number;
        dot: number;
        na: number;
        nb: number;
        failing: number;
      }
    >();
    const faces = {
      facesA: 0,
      facesB: 0,
      matched: 0,
      ious: [] as number[],
      scoreDiffs: [] as number[],
      mismatches: [] as FaceComparison['mismatches'],
    };
    for (const [i, file] of files.entries()) {
      const [ra, rb] = await Promise.all([a.inferImages([file]), b.inferImages([file])]);
      for (const [name, ta] of Object.entries(ra.outputs)) {
        const tb = rb.outputs[name];
        if (!tb)
          throw new YqpError('E_SHAPE', `Output ${name} of ${aPath} is missing from ${bPath}`, {
            argument: name,
          });
        const da = ta.data as Float32Array;
        const db = tb.data as Float32Array;
        if (da.length !== db.length)
          throw new YqpError(
            'E_SHAPE',
            `Output ${name}: ${da.length} values in ${aPath}, ${db.length} in ${bPath}`,
            {
              argument: name,
            },
          );
        let s = acc.get(name);
        if (!s)
          acc.set(
            name,
            (s = { n: 0, maxAbs: 0, sumAbs: 0, maxRel: 0, sumRel: 0, dot: 0, na: 0, nb: 0, failing: 0 }),
          );
        for (let k = 0; k < da.length; k++) {
          const x = Number(da[k]);
          const y = Number(db[k]);
          const d = Math.abs(x - y);
          const r = d / Math.max(Math.abs(x), 1e-12);
          if (d > s.maxAbs) s.maxAbs = d;
          if (r > s.maxRel) s.maxRel = r;
          s.sumAbs += d;
          s.sumRel += r;
          s.dot += x * y;
          s.na += x * x;
          s.nb += y * y;
          if (d > atol && r > rtol) s.failing++;
        }
        s.n += da.length;
      }
      if (faceModels) {
        const fa = facesOf(ra.postprocessed)![0];
        const fb = facesOf(rb.postprocessed)![0];
        const m = matchFaces(fa, fb, minIou);
        faces.facesA += fa.length;
        faces.facesB += fb.length;
        faces.matched += m.length;
        for (const [ia, ib, v] of m) {
          faces.ious.push(v);
          faces.scoreDiffs.push(Math.abs(fa[ia].score - fb[ib].score));
        }
        if (m.length !== fa.length || m.length !== fb.length)
          faces.mismatches.push({ image: file, facesA: fa.length, facesB: fb.length, matched: m.length });
      }
      options.onImage?.(i + 1, files.length);
    }
    const outputs: OutputComparison[] = [...acc.entries()].map(([name, s]) => ({
      name,
      elements: s.n,
      maxAbs: s.maxAbs,
      meanAbs: s.sumAbs / s.n,
      maxRel: s.maxRel,
      meanRel: s.sumRel / s.n,
      cosine: s.na > 0 && s.nb > 0 ? s.dot / Math.sqrt(s.na * s.nb) : s.na === s.nb ? 1 : 0,
      failing: s.failing,
      checked: checkOutputs,
      pass: !checkOutputs || s.failing === 0,
    }));
    let faceReport: FaceComparison | undefined;
    if (faceModels) {
      const recall = faces.facesA > 0 ? faces.matched / faces.facesA : 1;
      const precision = faces.facesB > 0 ? faces.matched / faces.facesB : 1;
      const mean = (v: number[]) => (v.length ? v.reduce((x, y) => x + y, 0) / v.length : 0);
      faceReport = {
        facesA: faces.facesA,
        facesB: faces.facesB,
        matched: faces.matched,
        recall,
        precision,
        meanIou: mean(faces.ious),
        minIou: faces.ious.length ? Math.min(...faces.ious) : 0,
        meanScoreDiff: mean(faces.scoreDiffs),
        maxScoreDiff: faces.scoreDiffs.length ? Math.max(...faces.scoreDiffs) : 0,
        mismatches: faces.mismatches,
        pass: recall >= minRecall && precision >= minRecall,
      };
    }
    return {
      a: aPath,
      b: bPath,
      images: files.length,
      tolerances: { atol, rtol, minIou, minRecall },
      outputs,
      faces: faceReport,
      pass: outputs.every((o) => o.pass) && (faceReport?.pass ?? true),
    };
  } finally {
    await a?.close();
    await b?.close();
  }
}
