// Shared by the benchmarks: the BlazeFace preprocessing spec at other sizes, and a median.
import { blazefacePreset } from '../../dist/presets.js';

/** BlazeFace's normalization (x / 127.5 - 1, RGB, NHWC float32) at `size` x `size`. */
export function faceSpec(size, resize = 'stretch') {
  return { ...blazefacePreset('input').preprocessing, width: size, height: size, resize };
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
