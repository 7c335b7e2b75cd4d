// Small end-to-end run of every kernel path for compute-sanitizer (memcheck, racecheck, initcheck):
//   compute-sanitizer --tool memcheck --error-exitcode 9 node trt/kernels/standalone/sanitize.mjs
// Needs dist/ (npm run build:ts) and the kernels addon. Exits non-zero on any error.
import { GpuPreprocessor, requireKernels } from '../../../dist/gpu/preprocess.js';
import { GpuRoiCropper, faceRoi } from '../../../dist/gpu/roi.js';

const k = requireKernels();
const frame = (w, h, format = 'RGB', bpp = 3) => {
  const bytes = format === 'NV12' ? w * h + w * Math.ceil(h / 2) : w * h * bpp;
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 13) & 255;
  return { data, width: w, height: h, format };
};
const spec = (o = {}) => ({
  input: 'x',
  layout: 'NHWC',
  width: 64,
  height: 48,
  resize: 'stretch',
  colorOrder: 'RGB',
  scale: 1 / 255,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  dtype: 'float32',
  ...o,
});
const frames = [
  frame(333, 211),
  frame(97, 61, 'BGR'),
  frame(130, 70, 'RGBA', 4),
  frame(90, 51, 'NV12'),
  frame(41, 40, 'BGRA', 4),
];
for (const s of [spec(), spec({ layout: 'NCHW', dtype: 'float16', resize: 'letterbox', padValue: 114 })])
  for (const filter of ['bilinear', 'antialias']) {
    const p = new GpuPreprocessor(s, { filter });
    await p.run(frames);
    await p.close();
  }
const c = new GpuRoiCropper(spec({ width: 32, height: 32 }));
await c.run(frames, [
  faceRoi(
    {
      box: [0, 0, 60, 60],
      keypoints: [
        [10, 20],
        [40, 10],
      ],
    },
    0,
  ),
  faceRoi(
    {
      box: [60, 30, 96, 60],
      keypoints: [
        [70, 40],
        [90, 45],
      ],
    },
    1,
  ),
  { frame: 3, cx: 45, cy: 25, size: 120, angle: 2.5 },
]);
await c.close();
// Device path: frames in device memory, 40 items (two launches), completion through done().
const s = spec({ width: 16, height: 16 });
const stream = k.streamCreate();
const ptr = k.malloc(frames[0].data.length);
k.upload(ptr, frames[0].data);
const bytes = 40 * 16 * 16 * 3 * 4;
const out = k.malloc(bytes);
const p = new GpuPreprocessor(s);
p.enqueue(
  Array.from({ length: 40 }, () => ({ ptr, width: 333, height: 211 })),
  { ptr: out, bytes },
  stream,
);
await p.done(stream);
await p.close();
k.free(ptr);
k.free(out);
k.streamDestroy(stream);
console.log('sanitize run: all kernel paths ran');
