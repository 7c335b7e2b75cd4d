// `npm run bench -- serve-tail [--rate R] [--duration S] [--contexts N --threads T] [--python python3]`
// Where a tail below saturation comes from, in process (no HTTP): BlazeFace on the onnxruntime backend, open loop
// at R requests/s (default 1000), under several
// context x thread settings; per setting the latency and compute (backend run) p50/p99, the event loop's delay and
// the GC pauses. The peer, Python onnxruntime with none of our code (bench/peers/ort_tail.py), runs the same rate
// on the same contexts x threads in the same run; the ratio of our compute p99/p50 to its run-time p99/p50 says
// whether a tail is ours or the machine's. For the slowest 1% of runs on each side it prints the running thread's
// own account (CPU ms against wall ms, involuntary context switches, page faults), and per setting the VM's steal
// time: a slow run that computed longer, against one that was off its core (and whose core was taken by whom).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { loadModel } from '../dist/index.js';
import { InProcessClient, percentile, resolveShapes, runRate, syntheticInputs } from '../dist/bench/index.js';
import { arg, buildBatchedBlazeFace, cpuShares, cpuTimes, ortTailPeer } from './lib/common.mjs';

export default async function main(args) {
  const rate = Number(arg(args, 'rate', '1000'));
  const durationMs = Math.round(Number(arg(args, 'duration', '4')) * 1000);
  const python = arg(args, 'python', 'python3');
  const repo = mkdtempSync(join(tmpdir(), 'yqp-bench-tail-'));
  const entry = await buildBatchedBlazeFace(repo);
  const feeds = syntheticInputs(resolveShapes(entry.config.inputs, 1));
  console.log(`serve-tail: in process, open loop ${rate} requests/s, ${durationMs / 1000} s per setting`);
  const d500 = { maxQueueDelayMicroseconds: 500, preferredBatchSizes: [4] };
  const d0 = { maxQueueDelayMicroseconds: 0 };
  // [label, contexts, threads, batching, spinWait]
  const settings = [
    ['4 x 3, 500 us, preferred 4', 4, 3, d500],
    ['4 x 3, 0 us', 4, 3, d0],
    ['4 x 3, 0 us, no spinning', 4, 3, d0, false],
    ['4 x 1, 0 us', 4, 1, d0],
    ['16 x 1, 0 us, no spinning', 16, 1, d0, false],
  ];
  const q = (a, p) =>
    percentile(
      [...a].sort((x, y) => x - y),
      p,
    );
  const split = (a) => `${q(a, 50).toFixed(2)}/${q(a, 99).toFixed(2)}`;
  // --contexts N --threads T [--spin-wait false]: that one setting (0 us) instead, e.g. for a machine with fewer
  // cores.
  if (arg(args, 'contexts', undefined)) {
    const c = Number(arg(args, 'contexts', '1'));
    const t = Number(arg(args, 'threads', '1'));
    const spinArg = arg(args, 'spin-wait', undefined);
    const spin = spinArg === undefined ? undefined : spinArg !== 'false';
    settings.splice(0, settings.length, [
      `${c} x ${t}, 0 us${spin === false ? ', no spinning' : ''}`,
      c,
      t,
      d0,
      spin,
    ]);
  }
  for (const [label, contexts, threads, dynamicBatching, spinWait] of settings) {
    const model = await loadModel(entry.dir, {
      contexts,
      threadsPerContext: threads,
      dynamicBatching,
      spinWait,
    });
    const compute = [];
    const timings = { queuedMs: [], runMs: [], deliverMs: [] };
    const runs = [];
    // Only batches that end inside the measured window (runRate's warm-up is 1 s): a context's first runs fault
    // in their memory and would land in the tail.
    const windowStart = performance.now() + 1000;
    const onBatch = (e) => {
      if (performance.now() < windowStart) return;
      compute.push(e.computeMs);
      if (e.timing) {
        for (const k of Object.keys(timings)) timings[k].push(e.timing[k]);
        runs.push([
          e.timing.runMs,
          e.timing.runCpuMs,
          e.timing.runInvoluntarySwitches,
          e.timing.runMinorFaults,
          e.size,
        ]);
      }
    };
    model.scheduler.on('batch', onBatch);
    const gcs = [];
    const gc = new PerformanceObserver((list) => gcs.push(...list.getEntries().map((e) => e.duration)));
    gc.observe({ entryTypes: ['gc'] });
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const usage0 = process.resourceUsage();
    const cpu0 = cpuTimes();
    const p = await runRate(new InProcessClient(model, feeds), rate, { durationMs, warmupMs: 1000 });
    const cpu = cpuShares(cpu0, cpuTimes());
    const usage = process.resourceUsage();
    loop.disable();
    gc.disconnect();
    model.scheduler.off('batch', onBatch);
    await model.close();
    compute.sort((a, b) => a - b);
    // Against the peer's run time, our own run time (onnxruntime's Run in the runner thread) where it is reported.
    const ours = timings.runMs.length
      ? q(timings.runMs, 99) / q(timings.runMs, 50)
      : q(compute, 99) / q(compute, 50);
    const r = ortTailPeer({
      python,
      sessions: contexts,
      threads,
      rate,
      seconds: durationMs / 1000,
      runs: true,
    });
    let peerText = `peer unavailable (${r.error})`;
    let peerSlowest = '';
    if (!r.error) {
      peerText = `peer (Python onnxruntime ${r.ort}) run p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} (x${(r.p99 / r.p50).toFixed(2)}); our run p99/p50 over the peer's ${(ours / (r.p99 / r.p50)).toFixed(2)}`;
      peerSlowest = slowest(r.runs);
    }
    console.log(
      `${label.padEnd(28)} latency p50 ${p.latencyMs.p50.toFixed(2)} p99 ${p.latencyMs.p99.toFixed(2)} (x${(p.latencyMs.p99 / p.latencyMs.p50).toFixed(2)}); ` +
        `compute p50 ${percentile(compute, 50).toFixed(2)} p99 ${percentile(compute, 99).toFixed(2)} (x${ours.toFixed(2)}); ` +
        `loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(2)} ms; GC ${gcs.length} pauses, max ${Math.max(0, ...gcs).toFixed(1)} ms`,
    );
    if (timings.runMs.length)
      console.log(
        `${''.padEnd(28)} compute p50/p99 ms: queued for the runner ${split(timings.queuedMs)}, onnxruntime Run ${split(timings.runMs)}, back to JS ${split(timings.deliverMs)}`,
      );
    console.log(`${''.padEnd(28)} ${peerText}`);
    const pad = ''.padEnd(28);
    if (runs.length) console.log(`${pad} our runs: ${slowest(runs)}`);
    if (peerSlowest) console.log(`${pad} peer's runs: ${peerSlowest}`);
    console.log(
      `${pad} our process: ${usage.involuntaryContextSwitches - usage0.involuntaryContextSwitches} involuntary switches, ` +
        `${usage.minorPageFault - usage0.minorPageFault} minor faults, CPU ${((usage.userCPUTime - usage0.userCPUTime + usage.systemCPUTime - usage0.systemCPUTime) / 1e6).toFixed(1)} s; ` +
        `machine: ${cpu}`,
    );
  }
}

/**
 * The runs whose wall time is at or above the 99th percentile: their mean wall and CPU ms, switches and faults (and
 * batch size, where known).
 */
function slowest(runs) {
  const sorted = [...runs].sort((a, b) => a[0] - b[0]);
  const tail = sorted.slice(Math.floor(sorted.length * 0.99));
  const mean = (i, list) => list.reduce((s, r) => s + r[i], 0) / Math.max(1, list.length);
  const part = (list) =>
    `wall ${mean(0, list).toFixed(2)} ms, CPU ${mean(1, list).toFixed(2)} ms, ${mean(2, list).toFixed(2)} involuntary switches, ${mean(3, list).toFixed(1)} minor faults` +
    (list[0]?.length > 4 ? `, batch ${mean(4, list).toFixed(1)}` : '');
  return `all ${runs.length}: ${part(runs)}; slowest ${tail.length}: ${part(tail)}`;
}
