// `npm run bench -- overhead [--iterations N] [--rounds R] [--threads T] [--runner native|worker]`
// model.infer (validation, scheduler, the native runner or a worker thread) against raw onnxruntime-node session.run on the same
// model file, inputs and intra-op thread count, at batch 1 and 16, in one run. The sides alternate in whole phases
// (round 1: raw then ours, round 2: ours then raw, ...), each phase creating and releasing its own session, so one
// side's spinning onnxruntime pool threads never run beside the other's. Ratios are taken per round (its two
// phases back to back) and the median over rounds is reported. Target: yqp-trt adds at most 5%.
import { mkdtempSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { loadModel } from '../dist/index.js';
import { arg, buildBatchedBlazeFace, median } from './lib/common.mjs';

/**
 * Latencies of n sequential calls and their rate (calls per second, one in flight: what raw session.run does),
 * then the rate with `inFlight` calls outstanding.
 */
async function measure(call, n, inFlight) {
  for (let i = 0; i < 20; i++) await call();
  const latencies = [];
  let t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    latencies.push(performance.now() - t);
  }
  const sequential = (n / (performance.now() - t0)) * 1000;
  let next = 0;
  t0 = performance.now();
  const lane = async () => {
    while (next++ < n) await call();
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return { latencies, sequential, pipelined: (n / (performance.now() - t0)) * 1000 };
}

export default async function main(args) {
  const iterations = Number(arg(args, 'iterations', '600'));
  const rounds = Number(arg(args, 'rounds', '8'));
  const threads = Number(arg(args, 'threads', String(availableParallelism())));
  const runner = arg(args, 'runner', undefined);
  const repo = arg(args, 'repo', mkdtempSync(join(tmpdir(), 'yqp-bench-')));
  const entry = await buildBatchedBlazeFace(repo, 16);
  const sessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    graphOptimizationLevel: 'all',
  };
  const results = [];
  let usedRunner;
  for (const batch of [1, 16]) {
    const data = new Float32Array(batch * 128 * 128 * 3).map((_, i) => Math.sin(i) * 0.9);
    const dims = [batch, 128, 128, 3];
    const n = Math.max(20, Math.round((batch === 1 ? iterations : iterations / 8) / rounds));
    const raw = { latencies: [], medians: [], sequential: [] };
    const ours = { latencies: [], medians: [], sequential: [], pipelined: [] };
    const phases = {
      // Raw session.run holds the thread, so "in flight" is always 1 for it.
      raw: async () => {
        const session = await ort.InferenceSession.create(entry.modelPath, sessionOptions);
        const feeds = { 'input:0': new ort.Tensor('float32', data, dims) };
        const m = await measure(() => session.run(feeds), n, 1);
        await session.release();
        raw.latencies.push(...m.latencies);
        raw.medians.push(median(m.latencies));
        raw.sequential.push(m.sequential);
      },
      ours: async () => {
        const model = await loadModel(entry.dir, {
          contexts: 1,
          threadsPerContext: threads,
          dynamicBatching: false,
          runner,
        });
        usedRunner = model.scheduler.session.runner;
        const feeds = { 'input:0': { dtype: 'float32', dims, data } };
        const m = await measure(() => model.infer(feeds), n, 2);
        await model.close();
        ours.latencies.push(...m.latencies);
        ours.medians.push(median(m.latencies));
        ours.sequential.push(m.sequential);
        ours.pipelined.push(m.pipelined);
      },
    };
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? ['raw', 'ours'] : ['ours', 'raw']) await phases[side]();
    }
    const r = {
      batch,
      calls: n * rounds,
      rawMedianMs: median(raw.latencies),
      oursMedianMs: median(ours.latencies),
      rawPerSecond: median(raw.sequential),
      oursPerSecond: median(ours.sequential),
      oursPerSecondTwoInFlight: median(ours.pipelined),
    };
    // Paired by round (the two phases of a round run back to back), then the median over rounds: a machine whose
    // speed drifts during the run (a shared VM does) moves both sides of a pair alike.
    const paired = (a, b) => median(a.map((x, i) => x / b[i]));
    r.latencyRatio = paired(ours.medians, raw.medians);
    r.throughputRatio = paired(ours.sequential, raw.sequential);
    r.twoInFlightRatio = r.oursPerSecondTwoInFlight / r.rawPerSecond;
    results.push(r);
    const pct = (x) => `${x >= 1 ? '+' : ''}${((x - 1) * 100).toFixed(1)}%`;
    console.log(
      `batch ${batch}: latency median session.run ${r.rawMedianMs.toFixed(3)} ms, model.infer ${r.oursMedianMs.toFixed(3)} ms (${pct(r.latencyRatio)}); ` +
        `calls/s one at a time: session.run ${r.rawPerSecond.toFixed(0)}, model.infer ${r.oursPerSecond.toFixed(0)} (ratio ${r.throughputRatio.toFixed(3)}); ` +
        `model.infer with 2 in flight ${r.oursPerSecondTwoInFlight.toFixed(0)}/s (ratio ${r.twoInFlightRatio.toFixed(3)}, not a target)`,
    );
  }
  const latencyMet = results.every((r) => r.latencyRatio <= 1.05);
  const throughputMet = results.every((r) => r.throughputRatio >= 1 / 1.05);
  console.log(
    JSON.stringify({
      bench: 'overhead',
      date: new Date().toISOString(),
      cpu: cpus()[0]?.model,
      cores: availableParallelism(),
      threads,
      runner: usedRunner,
      onnxruntime: ort.env.versions.node,
      results,
      target:
        'yqp-trt adds at most 5%: median latency, and calls per second one at a time (raw session.run holds its ' +
        'thread, so one in flight is its only mode); 2 in flight is reported, not a target',
      latencyMet,
      throughputMet,
    }),
  );
}
