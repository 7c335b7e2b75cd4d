import { describe, expect, it } from 'vitest';
import { checkProfiles, maxBatchOf, parseProfileFlags, parseShape, staticProfile } from '../src/profiles.js';
import type { TensorSpec } from '../src/repository/config.js';

const inputs: TensorSpec[] = [{ name: 'x', dtype: 'float32', dims: [-1, 3, -1, -1] }];

describe('profiles', () => {
  it('parses shapes and repeated flags into several profiles', () => {
    expect(parseShape('1x3x32x32', 'p')).toEqual([1, 3, 32, 32]);
    const p = parseProfileFlags(['x=1x3x32x32,2x3x64x64,4x3x128x128', 'x=5x3x32x32,8x3x64x64,16x3x128x128']);
    expect(p).toHaveLength(2);
    expect(p[1].x.max).toEqual([16, 3, 128, 128]);
    expect(maxBatchOf(p)).toBe(16);
    expect(() => checkProfiles(p, inputs)).not.toThrow();
  });
  it('rejects malformed flags', () => {
    expect(() => parseProfileFlags(['x'])).toThrow(/--profile/);
    expect(() => parseProfileFlags(['x=1x3,2x3'])).toThrow(/three shapes/);
    expect(() => parseShape('1x0x3', 'p')).toThrow(/positive integers/);
  });
  it('rejects min greater than max', () => {
    const p = parseProfileFlags(['x=8x3x32x32,8x3x32x32,4x3x32x32']);
    expect(() => checkProfiles(p, inputs)).toThrow(/min 8x3x32x32 is greater than max 4x3x32x32/);
  });
  it('rejects an unknown input, with the known ones', () => {
    const p = parseProfileFlags(['images=1x3x32x32,1x3x32x32,1x3x32x32']);
    expect(() => checkProfiles(p, inputs)).toThrow(/unknown input "images"; the model's inputs are "x"/);
  });
  it('rejects the wrong rank', () => {
    const p = parseProfileFlags(['x=1x32x32,1x32x32,1x32x32']);
    expect(() => checkProfiles(p, inputs)).toThrow(/rank 3, the input has rank 4/);
  });
  it('rejects changing a fixed dimension and suggests --dynamic-batch for dim 0', () => {
    const fixed: TensorSpec[] = [{ name: 'x', dtype: 'float32', dims: [1, 128, 128, 3] }];
    const p = parseProfileFlags(['x=1x128x128x3,4x128x128x3,16x128x128x3']);
    expect(() => checkProfiles(p, fixed)).toThrow(/--dynamic-batch/);
  });
  it('gives a static profile only for static inputs', () => {
    expect(staticProfile(inputs)).toBeUndefined();
    expect(staticProfile([{ name: 'a', dtype: 'float32', dims: [1, 2] }])).toEqual({
      a: { min: [1, 2], opt: [1, 2], max: [1, 2] },
    });
  });
});
