import { YqpError, invalidParameter } from './errors.js';
import type { OptimizationProfile, ShapeRange, TensorSpec } from './repository/config.js';

/** Parses `1x128x128x3`. */
export function parseShape(text: string, argument: string): number[] {
  const parts = text.trim().split('x');
  const dims = parts.map(Number);
  if (parts.length === 0 || dims.some((d) => !Number.isInteger(d) || d < 1))
    throw invalidParameter(argument, 'a shape of positive integers like 1x128x128x3', text, 'E_PROFILE');
  return dims;
}

/**
 * Parses repeated `--profile '<input>=<min>,<opt>,<max>'` flags. Ranges fill profiles in order; naming an
 * input again starts the next profile, so `--profile x=1..,1..,4.. --profile x=5..,8..,16..` gives two.
 */
export function parseProfileFlags(flags: readonly string[]): OptimizationProfile[] {
  const profiles: OptimizationProfile[] = [];
  for (const flag of flags) {
    const eq = flag.lastIndexOf('=');
    if (eq <= 0)
      throw invalidParameter(
        '--profile',
        "'<input>=<min>,<opt>,<max>' with shapes like 1x128x128x3",
        flag,
        'E_PROFILE',
      );
    const name = flag.slice(0, eq);
    const shapes = flag.slice(eq + 1).split(',');
    if (shapes.length !== 3)
      throw invalidParameter(
        `--profile ${name}`,
        'three shapes <min>,<opt>,<max>',
        flag.slice(eq + 1),
        'E_PROFILE',
      );
    const [min, opt, max] = shapes.map((s) => parseShape(s, `--profile ${name}`));
    let target = profiles.find((p) => !(name in p));
    if (!target) profiles.push((target = {}));
    target[name] = { min, opt, max };
  }
  return profiles;
}

const show = (d: readonly number[]) => d.join('x');

/** Checks profiles against the model's inputs: known names, rank, fixed dims, min <= opt <= max. */
export function checkProfiles(profiles: OptimizationProfile[], inputs: readonly TensorSpec[]): void {
  for (const [p, profile] of profiles.entries()) {
    for (const [name, range] of Object.entries(profile)) {
      const spec = inputs.find((i) => i.name === name);
      if (!spec)
        throw new YqpError(
          'E_PROFILE',
          `Profile ${p} names unknown input ${JSON.stringify(name)}; the model's inputs are ${inputs.map((i) => JSON.stringify(i.name)).join(', ')}`,
          { argument: `--profile ${name}`, expected: inputs.map((i) => i.name).join(', '), received: name },
        );
      for (const key of ['min', 'opt', 'max'] as const) {
        const dims = range[key];
        if (dims.length !== spec.dims.length)
          throw new YqpError(
            'E_PROFILE',
            `Profile ${p} ${key} shape ${show(dims)} of input ${JSON.stringify(name)} has rank ${dims.length}, the input has rank ${spec.dims.length} ([${spec.dims.join(',')}])`,
            {
              argument: `--profile ${name}`,
              expected: `rank ${spec.dims.length}`,
              received: `rank ${dims.length}`,
            },
          );
        dims.forEach((d, i) => {
          if (spec.dims[i] !== -1 && spec.dims[i] !== d)
            throw new YqpError(
              'E_PROFILE',
              `Profile ${p} ${key} shape ${show(dims)} of input ${JSON.stringify(name)} changes fixed dimension ${i} (the model has ${spec.dims[i]}${i === 0 ? '; add --dynamic-batch to make the batch dynamic' : ''})`,
              {
                argument: `--profile ${name}`,
                expected: `dimension ${i} = ${spec.dims[i]}`,
                received: String(d),
              },
            );
        });
      }
      const { min, opt, max } = range;
      for (let i = 0; i < min.length; i++) {
        if (min[i] > max[i])
          throw new YqpError(
            'E_PROFILE',
            `Profile ${p} of input ${JSON.stringify(name)}: min ${show(min)} is greater than max ${show(max)}`,
            {
              argument: `--profile ${name}`,
              expected: 'min <= opt <= max',
              received: `${show(min)},${show(opt)},${show(max)}`,
            },
          );
        if (opt[i] < min[i] || opt[i] > max[i])
          throw new YqpError(
            'E_PROFILE',
            `Profile ${p} of input ${JSON.stringify(name)}: opt ${show(opt)} lies outside min ${show(min)} .. max ${show(max)}`,
            {
              argument: `--profile ${name}`,
              expected: 'min <= opt <= max',
              received: `${show(min)},${show(opt)},${show(max)}`,
            },
          );
      }
    }
    for (const spec of inputs) {
      if (!(spec.name in profile) && spec.dims.includes(-1))
        throw new YqpError(
          'E_PROFILE',
          `Profile ${p} has no range for dynamic input ${JSON.stringify(spec.name)} [${spec.dims.join(',')}]`,
          {
            argument: '--profile',
            expected: `a range for ${spec.name}`,
          },
        );
    }
  }
}

/** A profile for a model whose inputs are all static: min = opt = max = the model's shape. */
export function staticProfile(inputs: readonly TensorSpec[]): OptimizationProfile | undefined {
  if (inputs.some((i) => i.dims.includes(-1))) return undefined;
  return Object.fromEntries(
    inputs.map((i) => [i.name, { min: i.dims, opt: i.dims, max: i.dims } satisfies ShapeRange]),
  );
}

/** Largest batch (dimension 0) any profile admits. */
export function maxBatchOf(profiles: readonly OptimizationProfile[]): number {
  let m = 0;
  for (const p of profiles) for (const r of Object.values(p)) m = Math.max(m, r.max[0]);
  return m;
}
