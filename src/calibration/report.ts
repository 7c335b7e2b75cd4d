import { binWidth, usedBins, type HistogramState } from './histogram.js';
import type { TensorMethod } from './calibrators.js';

/** Bins kept per tensor in calibration.json (the full histogram has 4096). */
export const SUMMARY_BINS = 128;

export interface HistogramSummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  std: number;
  /** Share of |x| in the first full-resolution bin (mostly ReLU zeros). */
  zeroFraction: number;
  /** Counts of |x| in SUMMARY_BINS equal bins over [0, upper). */
  upper: number;
  bins: number[];
}

export function summarize(h: HistogramState): HistogramSummary {
  const used = usedBins(h);
  const width = binWidth(h);
  const group = Math.max(1, Math.ceil(used / SUMMARY_BINS));
  const bins = new Array<number>(SUMMARY_BINS).fill(0);
  for (let i = 0; i < used; i++) bins[Math.floor(i / group)] += h.counts[i];
  const mean = h.count > 0 ? h.sum / h.count : 0;
  const variance = h.count > 0 ? Math.max(0, h.sumSq / h.count - mean * mean) : 0;
  return {
    count: h.count,
    min: h.count > 0 ? h.min : 0,
    max: h.count > 0 ? h.max : 0,
    mean,
    std: Math.sqrt(variance),
    zeroFraction: h.count > 0 ? h.counts[0] / h.count : 0,
    upper: group * SUMMARY_BINS * width,
    bins,
  };
}

export interface ReportTensor {
  name: string;
  residual: boolean;
  amax: { entropy: number; percentile: number; max: number };
  /** The chosen method's amax and the scale (amax/127) written to the cache and the Q/DQ model. */
  chosen: number;
  scale: number;
  /** The method chosen for this tensor and why (auto's class, or the option that set it). */
  method?: TensorMethod;
  reason?: string;
  /** Share of the calibration values above the chosen amax (clipped by the quantizer). */
  clipped?: number;
  /** Frames max calibration set aside as outliers for this tensor (see calibrators.ts OUTLIER_FRAME_RATIO). */
  outlierFrames?: number;
  histogram: HistogramSummary;
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));

const COLORS: Record<TensorMethod, string> = {
  entropy: '#d62728',
  percentile: '#1f77b4',
  max: '#7f7f7f',
};

/** One histogram as SVG: log-scaled counts of |x|, and a line at each method's threshold. */
export function histogramSvg(t: ReportTensor, method: TensorMethod, width = 360, height = 120): string {
  const h = t.histogram;
  const peak = Math.max(1, ...h.bins);
  const logPeak = Math.log10(peak + 1);
  const bw = width / h.bins.length;
  const bars = h.bins
    .map((c, i) => {
      if (c <= 0) return '';
      const bh = (Math.log10(c + 1) / logPeak) * (height - 14);
      return `<rect x="${(i * bw).toFixed(2)}" y="${(height - bh).toFixed(2)}" width="${Math.max(bw - 0.3, 0.5).toFixed(2)}" height="${bh.toFixed(2)}" fill="#9ecae1"/>`;
    })
    .join('');
  const x = (v: number) => (h.upper > 0 ? Math.min(width, (v / h.upper) * width) : 0);
  const lines = (['entropy', 'percentile', 'max'] as const)
    .map(
      (m) =>
        `<line x1="${x(t.amax[m]).toFixed(2)}" x2="${x(t.amax[m]).toFixed(2)}" y1="10" y2="${height}" stroke="${COLORS[m]}" stroke-width="${m === method ? 2.5 : 1}"${m === method ? '' : ' stroke-dasharray="3,2"'}><title>${m}: ${fmt(t.amax[m])}</title></line>`,
    )
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"><rect width="${width}" height="${height}" fill="#fff" stroke="#ddd"/>${bars}${lines}<text x="${width - 4}" y="10" font-size="9" text-anchor="end" fill="#555">|x| 0 .. ${fmt(h.upper)}</text></svg>`;
}

/** Share of the values of a histogram above `amax`. */
export function clippedShare(h: HistogramState, amax: number): number {
  if (h.count === 0) return 0;
  const width = binWidth(h);
  if (width === 0) return 0;
  let above = 0;
  for (let i = Math.ceil(amax / width); i < h.counts.length; i++) above += h.counts[i];
  return above / h.count;
}

/** A tensor name as people read it: the common prefix of all names (exporter scopes) and the ":0" cut off. */
export function readableNames(names: readonly string[]): Map<string, string> {
  let prefix = names[0] ?? '';
  for (const n of names) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  prefix = prefix.slice(0, prefix.lastIndexOf('/') + 1);
  return new Map(names.map((n) => [n, n.slice(prefix.length).replace(/:0$/, '') || n]));
}

/** What the report says about validation and the fallback (from build-int8). */
export interface ReportValidation {
  /** Where the frames came from: "held out by file from ...", "--calib-validate <dir>". */
  source: string;
  /** One line each: the fully quantized model, the model written. */
  initial: string;
  final?: string;
  pass: boolean;
  fallback: { name: string; cost: number; after: string }[];
  /** Sensitivity, most damaging first (empty when not measured). */
  sensitivity: { name: string; gain: number; result: string }[];
  mismatches: { frame: string; facesFp32: number; facesInt8: number; matched: number }[];
}

const table = (head: string[], rows: string[][]) =>
  `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`)
    .join('')}</table>`;

/**
 * A self-contained HTML page, what matters first: the validation result, the fallback list, the tensors ranked
 * by sensitivity and by clipping, then one histogram per tensor with the thresholds of the three methods.
 */
export function reportHtml(
  title: string,
  percentile: number,
  tensors: ReportTensor[],
  facts: string[],
  validation?: ReportValidation,
  top = 10,
): string {
  const short = readableNames(tensors.map((t) => t.name));
  const name = (n: string) => short.get(n) ?? n;
  const legend = (['entropy', 'percentile', 'max'] as const)
    .map(
      (m) =>
        `<span style="color:${COLORS[m]}">&#9646; ${m}${m === 'percentile' ? ` ${percentile}` : ''}</span>`,
    )
    .join(' &nbsp; ');
  const parts: string[] = [];
  if (validation) {
    parts.push(
      `<h2>Validation: <span class="${validation.pass ? 'pass' : 'fail'}">${validation.pass ? 'PASS' : 'FAIL'}</span></h2>`,
      `<p>${esc(validation.source)}<br>fully quantized: ${esc(validation.initial)}${validation.final ? `<br>as written: ${esc(validation.final)}` : ''}</p>`,
    );
    if (validation.mismatches.length > 0)
      parts.push(
        `<p>Frames where INT8's faces differ from FP32's:</p>`,
        table(
          ['frame', 'FP32 faces', 'INT8 faces', 'matched'],
          validation.mismatches.map((m) => [
            m.frame,
            String(m.facesFp32),
            String(m.facesInt8),
            String(m.matched),
          ]),
        ),
      );
    parts.push(
      `<h2>Fallback (left unquantized)</h2>`,
      validation.fallback.length === 0
        ? '<p>none</p>'
        : table(
            ['tensor', 'cost of quantizing it (metric gain when left out alone)', 'after leaving it out'],
            validation.fallback.map((f) => [name(f.name), f.cost.toFixed(3), f.after]),
          ),
      `<h2>Most sensitive tensors</h2>`,
      validation.sensitivity.length === 0
        ? '<p>not measured: the target held without a fallback (--calib-sensitivity measures it anyway)</p>'
        : table(
            ['tensor', 'metric gain when left unquantized alone', 'result'],
            validation.sensitivity.slice(0, top).map((s) => [name(s.name), s.gain.toFixed(3), s.result]),
          ),
    );
  }
  const byClip = [...tensors].sort(
    (a, b) => (b.clipped ?? 0) - (a.clipped ?? 0) || a.chosen / a.amax.max - b.chosen / b.amax.max,
  );
  parts.push(
    `<h2>Most clipped tensors</h2>`,
    table(
      ['tensor', 'method (why)', 'values clipped', 'chosen amax / max'],
      byClip
        .slice(0, top)
        .map((t) => [
          name(t.name),
          `${t.method ?? ''} (${t.reason ?? ''})`,
          `${((t.clipped ?? 0) * 100).toFixed(3)}%`,
          (t.amax.max > 0 ? t.chosen / t.amax.max : 1).toFixed(2),
        ]),
    ),
  );
  const cards = tensors
    .map(
      (
        t,
      ) => `<div class="card"><div class="name" title="${esc(t.name)}">${esc(name(t.name))}${t.residual ? ' <em>(residual Add input)</em>' : ''}</div>
${histogramSvg(t, t.method ?? 'max')}
<div class="vals">${t.method ? `<b>${t.method}</b> (${esc(t.reason ?? '')}) &middot; ` : ''}entropy ${fmt(t.amax.entropy)} &middot; percentile ${fmt(t.amax.percentile)} &middot; max ${fmt(t.amax.max)}${t.outlierFrames ? ` (${t.outlierFrames} outlier frame${t.outlierFrames > 1 ? 's' : ''} set aside, largest |x| ${fmt(t.histogram.max > -t.histogram.min ? t.histogram.max : -t.histogram.min)})` : ''} &middot; scale ${t.scale.toExponential(4)} &middot; clipped ${((t.clipped ?? 0) * 100).toFixed(3)}% &middot; zeros ${(t.histogram.zeroFraction * 100).toFixed(1)}%</div></div>`,
    )
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:13px system-ui,sans-serif;margin:16px;color:#222}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #eee;padding:6px;width:364px}.name{font-family:monospace;font-size:12px;word-break:break-all}
.vals{font-size:11px;color:#444}table{border-collapse:collapse;margin:4px 0 12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;font-size:12px}
.pass{color:#2ca02c}.fail{color:#d62728}</style></head><body>
<h1>${esc(title)}</h1>
<p>${facts.map(esc).join('<br>')}</p>
${parts.join('\n')}
<h2>Histograms</h2>
<p>|x| per calibrated tensor (log-scaled counts); the thick line is the chosen threshold. ${legend}. Full names on hover.</p>
<div class="grid">
${cards}
</div></body></html>
`;
}
