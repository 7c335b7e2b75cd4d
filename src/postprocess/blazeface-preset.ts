import { YqpError } from '../errors.js';
import type { TensorSpec } from '../repository/config.js';
import type { Preset, PresetEntry } from '../presets.js';
import { BLAZEFACE_FRONT_POSTPROCESSING, type BlazeFacePostprocessing } from './blazeface.js';

/**
 * BlazeFace anchors for a square input of `size`, from its two score outputs' anchor counts: 2 anchors per cell
 * on the finer grid, 6 on the coarser (MediaPipe's SSD anchors). Front 128x128: strides 8 and 16; back 256x256:
 * strides 16 and 32; both 512 + 384 anchors.
 */
export function blazefaceAnchors(size: number, anchorCounts: readonly [number, number] = [512, 384]) {
  const grids = [Math.sqrt(anchorCounts[0] / 2), Math.sqrt(anchorCounts[1] / 6)];
  if (!grids.every((g) => Number.isInteger(g) && g > 0 && size % g === 0)) return undefined;
  return { inputSize: size, strides: grids.map((g) => size / g), anchorsPerCell: [2, 6] };
}

/**
 * BlazeFace (front 128x128 or back 256x256: NHWC, RGB in [-1, 1], ((p / 127.5) - 1) / 1), sized from the
 * model's input.
 */
export function blazefacePreset(
  inputName: string,
  size = 128,
  anchorCounts?: readonly [number, number],
): Preset {
  const anchors = blazefaceAnchors(size, anchorCounts);
  if (!anchors)
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a BlazeFace model (square NHWC input, 2 and 6 anchors per cell) for --preset blazeface but received input ${size}x${size} with ${anchorCounts?.join(' + ')} anchors`,
      { argument: '--preset' },
    );
  // Thresholds as the package's own detector uses them for both models (score 0.75, IoU 0.3).
  const postprocessing: BlazeFacePostprocessing = { ...BLAZEFACE_FRONT_POSTPROCESSING, anchors };
  return {
    preprocessing: {
      input: inputName,
      layout: 'NHWC',
      width: size,
      height: size,
      resize: 'letterbox',
      colorOrder: 'RGB',
      scale: 1 / 127.5,
      mean: [1, 1, 1],
      std: [1, 1, 1],
      dtype: 'float32',
      padValue: 0,
    },
    postprocessing,
  };
}

/** The square NHWC size and the two score outputs' anchor counts of a BlazeFace-shaped model, if it is one. */
function blazefaceShape(
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): { size: number; anchors: [number, number] } | undefined {
  if (inputs.length !== 1) return undefined;
  const [, h, w, c] = inputs[0].dims;
  if (inputs[0].dims.length !== 4 || h !== w || c !== 3 || !(h > 0)) return undefined;
  const names = new Set(outputs.map((o) => o.name));
  const spec = BLAZEFACE_FRONT_POSTPROCESSING;
  if (![...spec.scores, ...spec.boxes].every((n) => names.has(n))) return undefined;
  const count = (name: string) => outputs.find((o) => o.name === name)?.dims[1] ?? 0;
  const anchors: [number, number] = [count(spec.scores[0]), count(spec.scores[1])];
  if (count(spec.boxes[0]) !== anchors[0] || count(spec.boxes[1]) !== anchors[1]) return undefined;
  return blazefaceAnchors(h, anchors) ? { size: h, anchors } : undefined;
}

/**
 * Recognizes BlazeFace by its I/O: one square NHWC RGB input (128 front, 256 back) and the two score and box
 * outputs whose anchor counts fit that size's grids.
 */
export const blazefacePresetEntry: PresetEntry = {
  name: 'blazeface',
  detect: (inputs, outputs) => blazefaceShape(inputs, outputs) !== undefined,
  make(inputs, outputs = []) {
    // Sized from the model (a 256x256 back model gets 256x256 preprocessing and its anchors).
    const shape = blazefaceShape(inputs, outputs);
    const [, h] = inputs[0].dims;
    return shape
      ? blazefacePreset(inputs[0].name, shape.size, shape.anchors)
      : blazefacePreset(inputs[0].name, h > 0 ? h : 128);
  },
};

/**
 * MediaPipe's face_detection_short_range.tflite (128x128, 896 anchors in one score and one box output), by output
 * names. MediaPipe's options: strides 8, 16, 16, 16 with 2 anchors each = 2 per cell at 8 and 6 at 16; its score
 * threshold 0.5.
 */
export function mediapipeFaceDetectionPostprocessing(score: string, box: string): BlazeFacePostprocessing {
  return {
    type: 'blazeface',
    scores: [score],
    boxes: [box],
    anchors: { inputSize: 128, strides: [8, 16], anchorsPerCell: [2, 6] },
    scoreThreshold: 0.5,
    iouThreshold: 0.3,
    scoreClip: 100,
  };
}
