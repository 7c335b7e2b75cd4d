/**
 * Per-tensor histograms of |x| with bounded memory. The range is always a power of two, [0, 2^exp), split in
 * HISTOGRAM_BINS equal bins: when a larger value arrives the range doubles (k times) and bins merge in groups
 * of 2^k, so rebinning is exact and histograms collected in different workers merge exactly.
 * With 4096 bins at least 2048 of them cover [0, max|x|] (the data max is above half the range).
 */
export const HISTOGRAM_BINS = 4096;

/** Exponent of an empty range (everything seen so far was 0). */
const EMPTY_EXP = -1000;

export interface HistogramState {
  /** Range of the bins: [0, 2^exp). */
  exp: number;
  counts: Float64Array;
  /** Values seen. */
  count: number;
  min: number;
  max: number;
  maxAbs: number;
  sum: number;
  sumSq: number;
  /** Largest |x| of each frame (item of the batch), in no particular order. */
  frameMax: number[];
}

export function emptyHistogram(bins = HISTOGRAM_BINS): HistogramState {
  return {
    exp: EMPTY_EXP,
    counts: new Float64Array(bins),
    count: 0,
    min: Infinity,
    max: -Infinity,
    maxAbs: 0,
    sum: 0,
    sumSq: 0,
    frameMax: [],
  };
}

/** The smallest exp with maxAbs < 2^exp. */
export function rangeExp(maxAbs: number): number {
  if (!(maxAbs > 0)) return EMPTY_EXP;
  let e = Math.ceil(Math.log2(maxAbs));
  if (2 ** e <= maxAbs) e++;
  while (e > -1074 && 2 ** (e - 1) > maxAbs) e--;
  return e;
}

/** Widens the range to 2^exp, merging bins in groups of 2^(exp - state.exp). */
export function widen(state: HistogramState, exp: number): void {
  if (exp <= state.exp) return;
  const counts = state.counts;
  const bins = counts.length;
  const shift = state.exp === EMPTY_EXP ? Infinity : exp - state.exp;
  if (shift >= Math.log2(bins)) {
    let total = 0;
    for (let i = 0; i < bins; i++) total += counts[i];
    counts.fill(0);
    counts[0] = total;
  } else {
    const group = 2 ** shift;
    for (let i = 0; i < bins / group; i++) {
      let s = 0;
      for (let j = i * group; j < (i + 1) * group; j++) s += counts[j];
      counts[i] = s;
    }
    counts.fill(0, bins / group);
  }
  state.exp = exp;
}

/**
 * Adds values to a histogram; `frames` is the batch size of `data` (each frame's largest |x| is kept). This
 * function is also the worker's kernel (its source is shipped to the calibration workers with
 * Function.prototype.toString), so it uses nothing outside its own body.
 */
export function accumulate(state: HistogramState, data: Float32Array, frames = 1): void {
  const n = data.length;
  let min = state.min;
  let max = state.max;
  let sum = 0;
  let sumSq = 0;
  const per = frames > 0 && n % frames === 0 ? n / frames : n;
  for (let f = 0; f * per < n; f++) {
    let frameMax = 0;
    for (let i = f * per; i < (f + 1) * per; i++) {
      const v = data[i];
      if (v < min) min = v;
      if (v > max) max = v;
      const a = v < 0 ? -v : v;
      if (a > frameMax) frameMax = a;
      sum += v;
      sumSq += v * v;
    }
    state.frameMax.push(frameMax);
  }
  const maxAbs = Math.max(state.maxAbs, Math.abs(min), Math.abs(max));
  const counts = state.counts;
  const bins = counts.length;
  if (maxAbs > 0 && (state.exp === -1000 || maxAbs >= 2 ** state.exp)) {
    let e = Math.ceil(Math.log2(maxAbs));
    if (2 ** e <= maxAbs) e++;
    while (2 ** (e - 1) > maxAbs) e--;
    const shift = state.exp === -1000 ? Infinity : e - state.exp;
    if (shift >= Math.log2(bins)) {
      let total = 0;
      for (let i = 0; i < bins; i++) total += counts[i];
      counts.fill(0);
      counts[0] = total;
    } else {
      const group = 2 ** shift;
      for (let i = 0; i < bins / group; i++) {
        let s = 0;
        for (let j = i * group; j < (i + 1) * group; j++) s += counts[j];
        counts[i] = s;
      }
      counts.fill(0, bins / group);
    }
    state.exp = e;
  }
  if (state.exp === -1000) {
    counts[0] += n;
  } else {
    const scale = bins / 2 ** state.exp;
    for (let i = 0; i < n; i++) {
      const v = data[i];
      counts[((v < 0 ? -v : v) * scale) | 0]++;
    }
  }
  state.min = min;
  state.max = max;
  state.maxAbs = maxAbs;
  state.sum += sum;
  state.sumSq += sumSq;
  state.count += n;
}

/** Adds b into a (exact: both ranges are powers of two). */
export function mergeInto(a: HistogramState, b: HistogramState): void {
  if (b.count === 0) return;
  if (b.exp > a.exp) widen(a, b.exp);
  const bins = a.counts.length;
  if (b.exp === EMPTY_EXP || a.exp - b.exp >= Math.log2(bins)) {
    let total = 0;
    for (let i = 0; i < bins; i++) total += b.counts[i];
    a.counts[0] += total;
  } else {
    const group = 2 ** (a.exp - b.exp);
    for (let i = 0; i < bins; i++) a.counts[Math.floor(i / group)] += b.counts[i];
  }
  a.count += b.count;
  a.min = Math.min(a.min, b.min);
  a.max = Math.max(a.max, b.max);
  a.maxAbs = Math.max(a.maxAbs, b.maxAbs);
  a.sum += b.sum;
  a.sumSq += b.sumSq;
  for (const m of b.frameMax) a.frameMax.push(m);
}

/** Width of one bin. */
export function binWidth(state: HistogramState): number {
  return state.exp === EMPTY_EXP ? 0 : 2 ** state.exp / state.counts.length;
}

/** Index one past the last non-empty bin. */
export function usedBins(state: HistogramState): number {
  for (let i = state.counts.length - 1; i >= 0; i--) if (state.counts[i] > 0) return i + 1;
  return 0;
}
