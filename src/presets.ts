import { YqpError } from './errors.js';
import { blazefacePresetEntry } from './postprocess/blazeface-preset.js';
import type { PostprocessingSpec, PreprocessingSpec, TensorSpec } from './repository/config.js';

export { blazefaceAnchors, blazefacePreset } from './postprocess/blazeface-preset.js';

/** What `build --preset` writes into config.json for a known model. */
export interface Preset {
  preprocessing: PreprocessingSpec;
  postprocessing?: PostprocessingSpec;
}

/** A known model: recognized by its I/O (`--preset auto`) or named (`--preset <name>`). */
export interface PresetEntry {
  name: string;
  detect(inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): boolean;
  make(inputs: readonly TensorSpec[], outputs?: readonly TensorSpec[]): Preset;
}

const presets = new Map<string, PresetEntry>();

export function registerPreset(entry: PresetEntry): void {
  if (presets.has(entry.name))
    throw new YqpError('E_INTERNAL', `A preset named ${entry.name} is already registered`);
  presets.set(entry.name, entry);
}

registerPreset(blazefacePresetEntry);

export function presetNames(): string[] {
  return [...presets.keys()];
}

/** The first registered preset that recognizes the model, if any. */
export function detectPreset(
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): string | undefined {
  for (const p of presets.values()) if (p.detect(inputs, outputs)) return p.name;
  return undefined;
}

export function presetFor(
  name: string,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[] = [],
): Preset {
  const p = presets.get(name);
  if (!p)
    throw new YqpError(
      'E_ARGUMENT',
      `Expected one of ${presetNames().join(', ')} for preset but received ${name}`,
      {
        argument: 'preset',
        expected: presetNames().join(', '),
        received: name,
      },
    );
  return p.make(inputs, outputs);
}
