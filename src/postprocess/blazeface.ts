import { YqpError } from '../errors.js';
import { toOriginal, type ImageTransform } from '../preprocess/spec.js';
import type { ModelConfig } from '../repository/config.js';
import type { TensorMap } from '../tensor.js';
import type { Postprocessor } from './registry.js';
import { selectedRowsOf } from './selected-rows.js';
import type { Face } from './roles.js';

export interface BlazeFacePostprocessing {
  type: 'blazeface';
  /** Outputs holding scores and boxes, one pair per anchor set, in anchor order. */
  scores: string[];
  boxes: string[];
  /** SSD anchor generation parameters (MediaPipe's). */
  anchors: {
    inputSize: number;
    strides: number[];
    anchorsPerCell: number[];
  };
  scoreThreshold: number;
  iouThreshold: number;
  /** Raw scores are clipped to +-scoreClip before the sigmoid. */
  scoreClip?: number;
}

declare module './registry.js' {
  interface PostprocessorTypes {
    blazeface: { spec: BlazeFacePostprocessing; image: Face[] };
  }
}

/** A face detector's face (roles.ts); BlazeFace's six keypoints: right eye, left eye, nose, mouth, right ear, left ear. */
export type { Face } from './roles.js';

/** MediaPipe's SSD anchors with fixed anchor size: one [cx, cy] per anchor, normalized to the input. */
export function generateAnchors(spec: BlazeFacePostprocessing['anchors']): Float32Array {
  const { inputSize, strides, anchorsPerCell } = spec;
  if (strides.length !== anchorsPerCell.length)
    throw new YqpError('E_CONFIG', 'postprocessing.anchors: strides and anchorsPerCell differ in length', {
      argument: 'postprocessing.anchors',
    });
  const out: number[] = [];
  for (let l = 0; l < strides.length; l++) {
    const grid = Math.ceil(inputSize / strides[l]);
    for (let y = 0; y < grid; y++)
      for (let x = 0; x < grid; x++)
        for (let a = 0; a < anchorsPerCell[l]; a++) out.push((x + 0.5) / grid, (y + 0.5) / grid);
  }
  return Float32Array.from(out);
}

const anchorCache = new Map<string, Float32Array>();
function anchorsFor(spec: BlazeFacePostprocessing['anchors']): Float32Array {
  const key = JSON.stringify(spec);
  let a = anchorCache.get(key);
  if (!a) anchorCache.set(key, (a = generateAnchors(spec)));
  return a;
}

interface Candidate {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  kp: number[];
  score: number;
}

export function iou(a: readonly number[], b: readonly number[]): number {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** MediaPipe's weighted NMS: overlapping detections are averaged by score instead of dropped. */
export function weightedNms(candidates: Candidate[], iouThreshold: number): Candidate[] {
  const remaining = [...candidates].sort((a, b) => b.score - a.score);
  const kept: Candidate[] = [];
  while (remaining.length > 0) {
    const top = remaining[0];
    const topBox = [top.x0, top.y0, top.x1, top.y1];
    const group: Candidate[] = [];
    const rest: Candidate[] = [];
    for (const c of remaining) (iou(topBox, [c.x0, c.y0, c.x1, c.y1]) > iouThreshold ? group : rest).push(c);
    let total = 0;
    const acc = { x0: 0, y0: 0, x1: 0, y1: 0, kp: new Array<number>(top.kp.length).fill(0) };
    for (const c of group) {
      total += c.score;
      acc.x0 += c.x0 * c.score;
      acc.y0 += c.y0 * c.score;
      acc.x1 += c.x1 * c.score;
      acc.y1 += c.y1 * c.score;
      for (let k = 0; k < c.kp.length; k++) acc.kp[k] += c.kp[k] * c.score;
    }
    kept.push({
      x0: acc.x0 / total,
      y0: acc.y0 / total,
      x1: acc.x1 / total,
      y1: acc.y1 / total,
      kp: acc.kp.map((v) => v / total),
      score: top.score,
    });
    remaining.length = 0;
    remaining.push(...rest);
  }
  return kept;
}

/**
 * Decodes BlazeFace outputs (raw scores and box regressors per anchor) of a batch into faces per image,
 * in pixels of each original image.
 */
export function decodeBlazeFace(
  outputs: TensorMap,
  spec: BlazeFacePostprocessing,
  transforms: readonly ImageTransform[],
): Face[][] {
  const anchors = anchorsFor(spec.anchors);
  const size = spec.anchors.inputSize;
  const clip = spec.scoreClip ?? 100;
  const batch = transforms.length;
  const result: Face[][] = [];
  for (let b = 0; b < batch; b++) {
    const candidates: Candidate[] = [];
    let anchorBase = 0;
    for (let set = 0; set < spec.scores.length; set++) {
      // One candidate per anchor whose score passes: rows of the full outputs, or the rows the GPU selected.
      const consider = (i: number, raw: number, r: Float32Array, o: number) => {
        const score = 1 / (1 + Math.exp(-Math.max(-clip, Math.min(clip, raw))));
        if (score < spec.scoreThreshold) return;
        const ax = anchors[(anchorBase + i) * 2];
        const ay = anchors[(anchorBase + i) * 2 + 1];
        const cx = ax + r[o] / size;
        const cy = ay + r[o + 1] / size;
        const w = r[o + 2] / size;
        const h = r[o + 3] / size;
        const kp: number[] = [];
        for (let k = 4; k + 1 < stride; k += 2) kp.push(ax + r[o + k] / size, ay + r[o + k + 1] / size);
        candidates.push({ x0: cx - w / 2, y0: cy - h / 2, x1: cx + w / 2, y1: cy + h / 2, kp, score });
      };
      const selected = selectedRowsOf(outputs, spec.scores[set]);
      let stride: number;
      if (selected) {
        stride = selected.width;
        selected.each(b, (i, raw, r, o) => consider(i, raw, r, o + 2));
        anchorBase += selected.rows;
        continue;
      }
      const scores = outputs[spec.scores[set]];
      const boxes = outputs[spec.boxes[set]];
      if (!scores || !boxes)
        throw new YqpError('E_BACKEND', `BlazeFace output ${spec.scores[set]} or ${spec.boxes[set]} missing`);
      const count = scores.dims[1];
      stride = boxes.dims[2];
      const s = scores.data as Float32Array;
      const r = boxes.data as Float32Array;
      for (let i = 0; i < count; i++) consider(i, s[b * count + i], r, (b * count + i) * stride);
      anchorBase += count;
    }
    if (anchorBase * 2 !== anchors.length)
      throw new YqpError(
        'E_CONFIG',
        `BlazeFace outputs hold ${anchorBase} anchors, the anchor spec makes ${anchors.length / 2}`,
        {
          argument: 'postprocessing.anchors',
        },
      );
    const t = transforms[b];
    // Normalized model-input coordinates to original pixels (spec.ts), clamped to the image.
    const point = (nx: number, ny: number): [number, number] => {
      const [x, y] = toOriginal(t, nx * size, ny * size);
      return [clamp(x, 0, t.width), clamp(y, 0, t.height)];
    };
    result.push(
      weightedNms(candidates, spec.iouThreshold).map((c) => {
        const [x0, y0] = point(c.x0, c.y0);
        const [x1, y1] = point(c.x1, c.y1);
        return {
          box: [x0, y0, x1, y1] as [number, number, number, number],
          keypoints: Array.from({ length: c.kp.length / 2 }, (_, k) => point(c.kp[2 * k], c.kp[2 * k + 1])),
          score: c.score,
        };
      }),
    );
  }
  return result;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** The config of the bundled BlazeFace front model (128x128, 896 anchors). */
export const BLAZEFACE_FRONT_POSTPROCESSING: BlazeFacePostprocessing = {
  type: 'blazeface',
  scores: ['Identity:0', 'Identity_1:0'],
  boxes: ['Identity_2:0', 'Identity_3:0'],
  anchors: { inputSize: 128, strides: [8, 16], anchorsPerCell: [2, 6] },
  scoreThreshold: 0.75,
  iouThreshold: 0.3,
  scoreClip: 100,
};

/** The BlazeFace postprocessor's registry entry (its JSON schema is the published schema's `blazeface`). */
export const blazefacePostprocessor: Postprocessor<'blazeface'> = {
  name: 'blazeface',
  schema: { $ref: 'https://yqp-trt.dev/schemas/config.schema.json#/definitions/blazeface' },
  validate(spec: BlazeFacePostprocessing, config: ModelConfig, where: string) {
    const outputNames = new Set(config.outputs.map((o) => o.name));
    for (const name of [...spec.scores, ...spec.boxes])
      if (!outputNames.has(name))
        throw new YqpError('E_CONFIG', `Invalid ${where}: postprocessing names unknown output ${name}`, {
          argument: 'postprocessing',
        });
  },
  decode: (outputs, transforms, spec) => decodeBlazeFace(outputs, spec, transforms),
  // Anchors whose clipped sigmoid score may pass: the raw score at the threshold's logit, less a margin for the
  // rounding of the sigmoid (the decode applies the exact test to the rows that come).
  rowSelection: (spec) => ({
    pairs: spec.scores.map((s, i) => [s, spec.boxes[i]] as [string, string]),
    minScore: Math.log(spec.scoreThreshold / (1 - spec.scoreThreshold)) - 1e-3,
  }),
  legacyField: 'faces',
  faceDetector: {
    lowerScoreThreshold: (spec, score) => ({
      ...spec,
      scoreThreshold: Math.min(spec.scoreThreshold, score),
    }),
  },
  present(faces: Face[]) {
    const round = (v: number) => Math.round(v * 10) / 10;
    const json = faces.map((f) => ({
      box: f.box.map(round),
      keypoints: f.keypoints.map(([x, y]) => [round(x), round(y)]),
      score: Math.round(f.score * 1e4) / 1e4,
    }));
    return {
      json: { faces: json },
      summary: `${faces.length} face${faces.length === 1 ? '' : 's'}`,
      lines: json.map(
        (f) =>
          `score ${f.score.toFixed(3)} box [${f.box.join(', ')}] keypoints ${f.keypoints.map((k) => `(${k.join(',')})`).join(' ')}`,
      ),
    };
  },
};
