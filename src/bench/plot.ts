/** Throughput against latency, as perf_analyzer's users draw it: one SVG (or an HTML page around it). */
import type { LoadPoint } from './runner.js';

export interface Series {
  label: string;
  points: LoadPoint[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** The load level a point was measured at: its concurrency (closed loop) or request rate (open loop). */
function loadOf(p: LoadPoint): number {
  return p.concurrency ?? p.requestRate ?? 0;
}

/** A point's label on the plot: `c4` for concurrency 4, `200/s` for a request rate. */
export function loadLabel(p: LoadPoint): string {
  return p.concurrency !== undefined ? `c${p.concurrency}` : `${p.requestRate}/s`;
}

/** x: throughput (inferences/s), y: latency (ms); p50 solid, p99 dashed, one color per series. */
export function plotSvg(series: Series[], title = 'Throughput vs latency', batch = 1): string {
  const W = 720;
  const H = 440;
  const L = 70;
  const R = 180;
  const T = 40;
  const B = 50;
  const all = series.flatMap((s) => s.points).filter((p) => p.requests > 0);
  const xMax = niceMax(Math.max(...all.map((p) => p.throughput * batch), 0));
  const yMax = niceMax(Math.max(...all.map((p) => p.latencyMs.p99), 0));
  const x = (v: number) => L + (v / xMax) * (W - L - R);
  const y = (v: number) => H - B - (v / yMax) * (H - T - B);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  );
  for (let i = 0; i <= 5; i++) {
    const xv = (xMax * i) / 5;
    const yv = (yMax * i) / 5;
    parts.push(
      `<line x1="${x(xv)}" y1="${T}" x2="${x(xv)}" y2="${H - B}" stroke="#eee"/>`,
      `<text x="${x(xv)}" y="${H - B + 16}" text-anchor="middle">${+xv.toPrecision(4)}</text>`,
      `<line x1="${L}" y1="${y(yv)}" x2="${W - R}" y2="${y(yv)}" stroke="#eee"/>`,
      `<text x="${L - 6}" y="${y(yv) + 4}" text-anchor="end">${+yv.toPrecision(4)}</text>`,
    );
  }
  parts.push(
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">throughput (inferences/s)</text>`,
    `<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">latency (ms)</text>`,
  );
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    // In load order (concurrency, else rate): past saturation throughput falls back while latency grows, and
    // a curve drawn in throughput order would zigzag between load levels.
    const pts = s.points.filter((p) => p.requests > 0).sort((a, b) => loadOf(a) - loadOf(b));
    for (const [key, dash] of [
      ['p50', ''],
      ['p99', ' stroke-dasharray="6 4"'],
    ] as const) {
      const d = pts
        .map((p) => `${x(p.throughput * batch).toFixed(1)},${y(p.latencyMs[key]).toFixed(1)}`)
        .join(' ');
      parts.push(`<polyline points="${d}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
      for (const p of pts)
        parts.push(
          `<circle cx="${x(p.throughput * batch).toFixed(1)}" cy="${y(p.latencyMs[key]).toFixed(1)}" r="3" fill="${color}"><title>${esc(
            `${s.label} ${p.concurrency !== undefined ? `concurrency ${p.concurrency}` : `rate ${p.requestRate}/s`}: ${(p.throughput * batch).toFixed(1)} inf/s, ${key} ${p.latencyMs[key].toFixed(2)} ms`,
          )}</title></circle>`,
        );
    }
    // Each point's load level beside its p99 marker (c4: concurrency 4, 200/s: request rate).
    for (const p of pts)
      parts.push(
        `<text x="${(x(p.throughput * batch) + 5).toFixed(1)}" y="${(y(p.latencyMs.p99) - 5).toFixed(1)}" font-size="10" fill="${color}">${esc(loadLabel(p))}</text>`,
      );
    const ly = T + 10 + i * 36;
    parts.push(
      `<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 36}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${W - R + 40}" y="${ly + 4}">${esc(s.label)} p50</text>`,
      `<line x1="${W - R + 12}" y1="${ly + 16}" x2="${W - R + 36}" y2="${ly + 16}" stroke="${color}" stroke-width="2" stroke-dasharray="6 4"/>`,
      `<text x="${W - R + 40}" y="${ly + 20}">${esc(s.label)} p99</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** An HTML page: the plot, a table of every point, and the raw JSON. */
export function plotHtml(series: Series[], title = 'Throughput vs latency', batch = 1): string {
  const rows = series
    .flatMap((s) =>
      s.points.map(
        (p) =>
          `<tr><td>${esc(s.label)}</td><td>${p.concurrency ?? ''}</td><td>${p.requestRate ?? ''}</td><td>${(p.throughput * batch).toFixed(1)}</td><td>${p.latencyMs.p50.toFixed(2)}</td><td>${p.latencyMs.p90.toFixed(2)}</td><td>${p.latencyMs.p99.toFixed(2)}</td><td>${p.errors}</td></tr>`,
      ),
    )
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>
</head><body>
<h1>${esc(title)}</h1>
${plotSvg(series, title, batch)}
<table><tr><th>series</th><th>concurrency</th><th>rate (req/s)</th><th>inferences/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>errors</th></tr>
${rows}
</table>
<script type="application/json" id="data">${JSON.stringify(series).replace(/</g, '\\u003c')}</script>
</body></html>
`;
}
