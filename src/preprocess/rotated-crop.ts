import { invalidParameter } from '../errors.js';
import type { PreprocessingSpec } from '../repository/config.js';
import type { RawImage } from './cpu.js';

/**
 * The rotated-crop placement (MediaPipe's face ROI): a square of `size` frame pixels centred at (cx, cy), turned by
 * `angle`, sampled into the model's width x height input. The CPU sampler here and the GPU ROI kernel
 * (src/gpu/roi.ts -> trt/kernels/sampler.cu) both take their sample positions from roiMatrix, bilinear with pixel
 * centres at i + 0.5, taps outside the frame reading the spec's padValue.
 *
 * MediaPipe's convention (DetectionsToRects + RectTransformation): centre of the box, side = max(w, h) x scale
 * (1.5), rotation that levels the eyes: angle = targetAngle - atan2(-(ly - ry), lx - rx), with the right eye first.
 */
export interface FaceRoi {
  /** Frame the face was found in (index into the frames array). */
  frame: number;
  cx: number;
  cy: number;
  /** Side of the square in frame pixels. */
  size: number;
  /** Radians, clockwise in image coordinates (y down). */
  angle: number;
}

export interface RoiOptions {
  /** Side = max(box width, box height) x scale; MediaPipe's face landmark uses 1.5. */
  scale?: number;
  /** Shift of the centre along the rotated y axis, in sides (MediaPipe: 0 for face landmarks). */
  shiftY?: number;
  /** Angle the eye line should have after the crop (radians; default 0 = level). */
  targetAngle?: number;
}

/** The ROI of a detected face (box and eye keypoints in frame pixels; keypoint 0 the right eye, 1 the left). */
export function faceRoi(
  face: { box: readonly number[]; keypoints: readonly (readonly number[])[] },
  frame = 0,
  options: RoiOptions = {},
): FaceRoi {
  const [x0, y0, x1, y1] = face.box;
  if (![x0, y0, x1, y1].every(Number.isFinite) || x1 <= x0 || y1 <= y0)
    throw invalidParameter('face.box', '[x0, y0, x1, y1] with x1 > x0 and y1 > y0', face.box);
  const [re, le] = face.keypoints ?? [];
  if (!re || !le || ![...re, ...le].every(Number.isFinite))
    throw invalidParameter('face.keypoints', 'right and left eye [x, y] pairs first', face.keypoints);
  const scale = options.scale ?? 1.5;
  if (!(scale > 0)) throw invalidParameter('options.scale', 'a positive number', options.scale);
  const angle = normalizeRadians((options.targetAngle ?? 0) - Math.atan2(-(le[1] - re[1]), le[0] - re[0]));
  const size = Math.max(x1 - x0, y1 - y0) * scale;
  const shift = (options.shiftY ?? 0) * size;
  return {
    frame,
    cx: (x0 + x1) / 2 - Math.sin(angle) * shift,
    cy: (y0 + y1) / 2 + Math.cos(angle) * shift,
    size,
    angle,
  };
}

/** MediaPipe's face-mesh landmark indices of the eye corners that set the tracking ROI's rotation. */
export const LANDMARK_RIGHT_EYE = 33;
export const LANDMARK_LEFT_EYE = 263;

/**
 * The tracking ROI from the previous frame's landmarks (face_landmark_landmarks_to_roi): the bounding box of all
 * points, the eye line through landmarks 33 and 263, square, x 1.5.
 */
export function landmarksRoi(
  landmarks: readonly (readonly number[])[],
  frame = 0,
  options: RoiOptions = {},
): FaceRoi {
  if (!Array.isArray(landmarks) || landmarks.length <= LANDMARK_LEFT_EYE)
    throw invalidParameter('landmarks', `at least ${LANDMARK_LEFT_EYE + 1} [x, y, z] points`, landmarks);
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of landmarks) {
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return faceRoi(
    { box: [x0, y0, x1, y1], keypoints: [landmarks[LANDMARK_RIGHT_EYE], landmarks[LANDMARK_LEFT_EYE]] },
    frame,
    options,
  );
}

export function normalizeRadians(a: number): number {
  return a - 2 * Math.PI * Math.floor((a + Math.PI) / (2 * Math.PI));
}

/** cos/sin with multiples of 90 degrees exact, so axis-aligned crops sample pixel centres exactly. */
function cosSin(angle: number): [number, number] {
  let c = Math.cos(angle);
  let s = Math.sin(angle);
  if (Math.abs(c) < 1e-12) c = 0;
  if (Math.abs(s) < 1e-12) s = 0;
  if (Math.abs(Math.abs(c) - 1) < 1e-12) c = Math.sign(c);
  if (Math.abs(Math.abs(s) - 1) < 1e-12) s = Math.sign(s);
  return [c, s];
}

/** Matrix from output positions (u, v) (pixel centres at i + 0.5) to frame positions, for an outWidth x outHeight crop. */
export function roiMatrix(roi: FaceRoi, outWidth: number, outHeight: number): number[] {
  const [c, s] = cosSin(roi.angle);
  const kx = roi.size / outWidth;
  const ky = roi.size / outHeight;
  const h = roi.size / 2;
  return [kx * c, -ky * s, roi.cx - h * c + h * s, kx * s, ky * c, roi.cy - h * s - h * c];
}

/** Maps a point of the crop (model-input pixels, e.g. a landmark) back to frame pixels. */
export function roiToFrame(
  roi: FaceRoi,
  outWidth: number,
  outHeight: number,
  x: number,
  y: number,
): [number, number] {
  const m = roiMatrix(roi, outWidth, outHeight);
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

/**
 * CPU rotated crops into an NHWC float32 batch with the spec's normalization: value = (pixel * scale - mean) / std.
 * Bilinear, pixel centres at i + 0.5, taps outside the frame read padValue: the GPU kernel's convention.
 */
export function cropRois(
  spec: PreprocessingSpec,
  frames: readonly RawImage[],
  rois: readonly FaceRoi[],
  out = new Float32Array(rois.length * spec.width * spec.height * 3),
): Float32Array {
  if (spec.layout !== 'NHWC') throw invalidParameter('spec.layout', 'NHWC for rotated crops', spec.layout);
  const W = spec.width;
  const H = spec.height;
  const pad = spec.padValue ?? 0;
  const k = [0, 1, 2].map((c) => spec.scale / spec.std[c]);
  const b = [0, 1, 2].map((c) => -spec.mean[c] / spec.std[c]);
  const bgr = spec.colorOrder === 'BGR';
  const px = [0, 0, 0, 0];
  const py = [0, 0, 0, 0];
  rois.forEach((roi, r) => {
    const f = frames[roi.frame];
    if (!f) throw invalidParameter(`rois[${r}].frame`, `an index below ${frames.length}`, roi.frame);
    const ch = f.channels;
    const fw = f.width;
    const fh = f.height;
    const d = f.data;
    const m = roiMatrix(roi, W, H);
    let o = r * W * H * 3;
    for (let v = 0; v < H; v++) {
      for (let u = 0; u < W; u++) {
        const sx = m[0] * (u + 0.5) + m[1] * (v + 0.5) + m[2] - 0.5;
        const sy = m[3] * (u + 0.5) + m[4] * (v + 0.5) + m[5] - 0.5;
        const x0 = Math.floor(sx);
        const y0 = Math.floor(sy);
        const lx = sx - x0;
        const ly = sy - y0;
        px[0] = px[2] = x0;
        px[1] = px[3] = x0 + 1;
        py[0] = py[1] = y0;
        py[2] = py[3] = y0 + 1;
        const w0 = (1 - lx) * (1 - ly);
        const w1 = lx * (1 - ly);
        const w2 = (1 - lx) * ly;
        const w3 = lx * ly;
        let c0 = 0;
        let c1 = 0;
        let c2 = 0;
        for (let t = 0; t < 4; t++) {
          const w = t === 0 ? w0 : t === 1 ? w1 : t === 2 ? w2 : w3;
          const x = px[t];
          const y = py[t];
          if (x < 0 || y < 0 || x >= fw || y >= fh) {
            c0 += w * pad;
            c1 += w * pad;
            c2 += w * pad;
          } else {
            const p = (y * fw + x) * ch;
            c0 += w * d[p];
            c1 += w * d[p + 1];
            c2 += w * d[p + 2];
          }
        }
        if (bgr) [c0, c2] = [c2, c0];
        out[o++] = c0 * k[0] + b[0];
        out[o++] = c1 * k[1] + b[1];
        out[o++] = c2 * k[2] + b[2];
      }
    }
  });
  return out;
}
