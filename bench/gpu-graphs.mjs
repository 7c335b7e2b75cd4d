// `npm run bench -- gpu-graphs [--iterations N] [--stages N] [--out DIR]`
// CUDA graph replay against eager launches for a preprocessing -> postprocessing chain: the fused preprocessing
// kernel (1080p frames in GPU memory -> 128x128 NHWC fp32), N elementwise kernels standing for the model, a
// decode kernel (sigmoid + threshold count, atomics) and the D2H copy of its count. CPU launch time = host time
// to enqueue one chain (stream drained between chains). Target: at least 3x lower per frame with the graph.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceJob, gpuKernelsAvailability, requireKernels } from '../dist/gpu/preprocess.js';
import { arg, faceSpec } from './lib/common.mjs';

export default async function main(args) {
  const iterations = Number(arg(args, 'iterations', '500'));
  const stages = Number(arg(args, 'stages', '6'));
  const outDir = arg(args, 'out', process.env.OUT ?? mkdtempSync(join(tmpdir(), 'yqp-gpu-bench-')));
  mkdirSync(outDir, { recursive: true });
  const avail = gpuKernelsAvailability();
  if (!avail.available) {
    console.log(`gpu-graphs: skipped: ${avail.reason}`);
    return;
  }
  const k = requireKernels();
  const W = 1920;
  const H = 1080;
  const frameBytes = W * H * 3;
  const spec = faceSpec(128, 'letterbox');
  const rows = [];
  for (const batch of [1, 8, 64]) {
    const ptrs = [];
    for (let i = 0; i < batch; i++) {
      const p = k.malloc(frameBytes);
      k.memset(p, 90 + i, frameBytes);
      ptrs.push(p);
    }
    const bytes = batch * 128 * 128 * 3 * 4;
    const out = k.malloc(bytes);
    const frames = ptrs.map((ptr) => ({ ptr, width: W, height: H, format: 'RGB' }));
    const { job } = deviceJob(spec, 'bilinear', frames, { ptr: out, bytes }, 0n);
    const r = await k.benchChain(job, { stages, iterations });
    for (const p of ptrs) k.free(p);
    k.free(out);
    rows.push({ batch, stages, iterations, ...r, launchRatio: r.eagerLaunchUs / r.graphLaunchUs });
  }
  writeFileSync(
    join(outDir, 'gpu-graphs.json'),
    JSON.stringify({ date: new Date().toISOString(), device: avail, rows }, null, 2),
  );
  console.log(
    `\nCUDA graph vs eager: preprocess + ${stages} model stand-ins + decode + D2H, ${avail.name} (median of ${iterations})`,
  );
  console.log(
    'batch  nodes  eager launch us  graph launch us  ratio   per frame eager/graph us   total eager/graph us  same result',
  );
  for (const r of rows)
    console.log(
      `${String(r.batch).padEnd(6)} ${String(r.graphNodes).padEnd(6)} ${r.eagerLaunchUs.toFixed(1).padStart(15)} ` +
        `${r.graphLaunchUs.toFixed(1).padStart(16)} ${(r.launchRatio.toFixed(1) + 'x').padStart(6)} ` +
        `${(r.eagerLaunchUs / r.batch).toFixed(2).padStart(12)} / ${(r.graphLaunchUs / r.batch).toFixed(2).padEnd(10)} ` +
        `${r.eagerTotalUs.toFixed(1).padStart(10)} / ${r.graphTotalUs.toFixed(1).padEnd(8)} ${r.sameResult}`,
    );
}
