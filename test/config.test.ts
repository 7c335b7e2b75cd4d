import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/repository/repository.js';
import { blazefacePreset } from '../src/presets.js';
import type { ModelConfig } from '../src/repository/config.js';

function config(): ModelConfig {
  const preset = blazefacePreset('input:0');
  return {
    name: 'face',
    backend: 'onnxruntime',
    modelFile: 'model.onnx',
    precision: 'fp32',
    maxBatchSize: 16,
    inputs: [{ name: 'input:0', dtype: 'float32', dims: [-1, 128, 128, 3] }],
    outputs: ['Identity:0', 'Identity_1:0', 'Identity_2:0', 'Identity_3:0'].map((name) => ({
      name,
      dtype: 'float32' as const,
      dims: [-1, 1, 1],
    })),
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [16, 128, 128, 3] } }],
    instances: 2,
    preprocessing: preset.preprocessing,
    postprocessing: preset.postprocessing,
  };
}

describe('config.json schema', () => {
  it('accepts a complete entry', () => {
    expect(validateConfig(config()).name).toBe('face');
  });
  it('names the field path of a wrong value', () => {
    const c = config() as unknown as { preprocessing: { layout: string } };
    c.preprocessing.layout = 'HWC';
    expect(() => validateConfig(c)).toThrow(/preprocessing\.layout: expected one of NHWC, NCHW/);
  });
  it('names unknown fields', () => {
    expect(() => validateConfig({ ...config(), maxbatch: 3 })).toThrow(/unknown field "maxbatch"/);
  });
  it('names a missing required field', () => {
    const c: Record<string, unknown> = { ...config() };
    delete c.inputs;
    expect(() => validateConfig(c)).toThrow(/must have required property 'inputs'/);
  });
  it('checks profiles against inputs', () => {
    const c = config();
    c.profiles = [{ other: { min: [1], opt: [1], max: [1] } }];
    expect(() => validateConfig(c)).toThrow(/profiles\.0 names unknown input other/);
  });
  it('checks that postprocessing names real outputs', () => {
    const c = config();
    c.postprocessing!.scores = ['nope'];
    expect(() => validateConfig(c)).toThrow(/postprocessing names unknown output nope/);
  });
  it('rejects a dims entry below -1', () => {
    const c = config();
    c.inputs[0].dims = [-2, 128, 128, 3];
    expect(() => validateConfig(c)).toThrow(/inputs\.0\.dims\.0/);
  });
});
