#!/usr/bin/env node
// `node scripts/profile-summary.mjs FILE.cpuprofile [TOP]`: where a V8 CPU profile's time went (node --cpu-prof),
// by function: self time (idle and garbage collection included, so a saturated event loop shows as little idle)
// and inclusive time. For the benchmarks' device runs, where only text comes back.
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('Expected a .cpuprofile file for FILE but received nothing\n');
  process.exit(2);
}
const top = Number(topArg ?? 30);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n) => {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
};
const self = new Map();
const inclusive = new Map();
let total = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i + 1] ?? 0;
  total += dt;
  const leaf = label(byId.get(profile.samples[i]));
  self.set(leaf, (self.get(leaf) ?? 0) + dt);
  const seen = new Set(); // a recursive frame counts once a sample
  for (let id = profile.samples[i]; id !== undefined; id = parent.get(id)) {
    const k = label(byId.get(id));
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
  }
}
const print = (map, title) => {
  console.log(`== ${title} (${(total / 1000).toFixed(0)} ms sampled)`);
  for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}% ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
};
print(self, `self time, ${file}`);
print(inclusive, 'inclusive time');
