import { binWidth, usedBins, type HistogramState } from './histogram.js';
import type { CalibrationMethod } from './calibrators.js';

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
  histogram: HistogramSummary;
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));

const COLORS: Record<CalibrationMethod, string> = {
  entropy: '#d62728',
  percentile: '#1f77b4',
  max: '#7f7f7f',
};

/** One histogram as SVG: log-scaled counts of |x|, and a line at each method's threshold. */
export function histogramSvg(t: ReportTensor, method: CalibrationMethod, width = 360, height = 120): string {
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

/** A self-contained HTML page: one histogram per tensor with the thresholds of the three methods. */
export function reportHtml(
  title: string,
  method: CalibrationMethod,
  percentile: number,
  tensors: ReportTensor[],
  facts: string[],
): string {
  const legend = (['entropy', 'percentile', 'max'] as const)
    .map(
      (m) =>
        `<span style="color:${COLORS[m]}">&#9646; ${m}${m === 'percentile' ? ` ${percentile}` : ''}${m === method ? ' (chosen)' : ''}</span>`,
    )
    .join(' &nbsp; ');
  const cards = tensors
    .map(
      (
        t,
      ) => `<div class="card"><div class="name" title="${esc(t.name)}">${esc(t.name)}${t.residual ? ' <em>(residual Add input)</em>' : ''}</div>
${histogramSvg(t, method)}
<div class="vals">entropy ${fmt(t.amax.entropy)} &middot; percentile ${fmt(t.amax.percentile)} &middot; max ${fmt(t.amax.max)} &middot; scale ${t.scale.toExponential(4)} &middot; zeros ${(t.histogram.zeroFraction * 100).toFixed(1)}%</div></div>`,
    )
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:13px system-ui,sans-serif;margin:16px;color:#222}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #eee;padding:6px;width:364px}.name{font-family:monospace;font-size:11px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;direction:rtl;text-align:left}
.vals{font-size:11px;color:#444}</style></head><body>
<h1>${esc(title)}</h1>
<p>${facts.map(esc).join('<br>')}</p>
<p>Histograms of |x| per calibrated tensor (log-scaled counts). ${legend}</p>
<div class="grid">
${cards}
</div></body></html>
`;
}
