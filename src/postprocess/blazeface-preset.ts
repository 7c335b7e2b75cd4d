import type { TensorSpec } from '../repository/config.js';
import type { Preset, PresetEntry } from '../presets.js';
import { BLAZEFACE_FRONT_POSTPROCESSING } from './blazeface.js';

/** BlazeFace front (128x128 NHWC, RGB in [-1, 1]): ((p / 127.5) - 1) / 1. */
export function blazefacePreset(inputName: string): Preset {
  return {
    preprocessing: {
      input: inputName,
      layout: 'NHWC',
      width: 128,
      height: 128,
      resize: 'letterbox',
      colorOrder: 'RGB',
      scale: 1 / 127.5,
      mean: [1, 1, 1],
      std: [1, 1, 1],
      dtype: 'float32',
      padValue: 0,
    },
    postprocessing: BLAZEFACE_FRONT_POSTPROCESSING,
  };
}

/** Recognizes the BlazeFace front model by its I/O: one 128x128x3 NHWC input, 512 + 384 anchor outputs. */
export const blazefacePresetEntry: PresetEntry = {
  name: 'blazeface',
  detect(inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): boolean {
    const names = new Set(outputs.map((o) => o.name));
    return (
      inputs.length === 1 &&
      inputs[0].dims.slice(1).join('x') === '128x128x3' &&
      BLAZEFACE_FRONT_POSTPROCESSING.scores.every((n) => names.has(n)) &&
      BLAZEFACE_FRONT_POSTPROCESSING.boxes.every((n) => names.has(n)) &&
      outputs.find((o) => o.name === 'Identity:0')?.dims[1] === 512 &&
      outputs.find((o) => o.name === 'Identity_1:0')?.dims[1] === 384
    );
  },
  make: (inputs) => blazefacePreset(inputs[0].name),
};
