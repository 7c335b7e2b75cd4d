import { YqpError, expectOneOf, expectPositiveInteger, invalidParameter } from '../errors.js';

/**
 * Multi-GPU placement: execution contexts (model instances) and cameras assigned to GPU ordinals, either by an
 * explicit map or automatically. Pure TypeScript: the serving layer and the camera pipeline apply the result
 * (a context's streams/buffers on its GPU, a camera's ring and kernels on its GPU).
 */

export type PlacementStrategy = 'round-robin' | 'balanced';

export interface PlacementOptions {
  /** GPUs to use: a count (ordinals 0..n-1) or an explicit list of ordinals. */
  gpus: number | number[];
  /** Ordinals that exist on this machine (cudaInfo().devices.length); when given, every used ordinal must be below. */
  deviceCount?: number;
  /** Explicit item -> ordinal; items not in it are placed by `strategy`. */
  map?: Record<string, number>;
  /**
   * round-robin: the n-th automatically placed item goes to gpus[n % gpus.length];
   * balanced (default): to the GPU with the least weight so far (explicit items count), ties to the earlier GPU.
   */
  strategy?: PlacementStrategy;
  /** Relative cost of an item (a 1080p camera = 1, a 4K camera = 4); default 1. */
  weights?: Record<string, number>;
}

export interface Placement {
  /** item -> GPU ordinal. */
  byItem: Record<string, number>;
  /** GPU ordinal -> items, in placement order, for every GPU used (empty arrays included). */
  byGpu: Map<number, string[]>;
  /** GPU ordinal -> summed weight. */
  load: Map<number, number>;
}

function gpuList(gpus: number | number[], deviceCount?: number): number[] {
  let list: number[];
  if (typeof gpus === 'number') {
    expectPositiveInteger('gpus', gpus);
    list = Array.from({ length: gpus }, (_, i) => i);
  } else if (Array.isArray(gpus) && gpus.length > 0) {
    for (const [i, g] of gpus.entries())
      if (typeof g !== 'number' || !Number.isInteger(g) || g < 0)
        throw invalidParameter(`gpus[${i}]`, 'a GPU ordinal (non-negative integer)', g);
    if (new Set(gpus).size !== gpus.length) throw invalidParameter('gpus', 'distinct GPU ordinals', gpus);
    list = [...gpus];
  } else {
    throw invalidParameter('gpus', 'a GPU count or a non-empty list of ordinals', gpus);
  }
  if (deviceCount !== undefined) {
    if (typeof deviceCount !== 'number' || !Number.isInteger(deviceCount) || deviceCount < 0)
      throw invalidParameter('deviceCount', 'a non-negative integer', deviceCount);
    const missing = list.filter((g) => g >= deviceCount);
    if (missing.length > 0)
      throw invalidParameter(
        'gpus',
        deviceCount === 0 ? 'no GPU ordinal (this machine has no GPU)' : `ordinals 0..${deviceCount - 1}`,
        missing.length === 1 ? missing[0] : missing,
      );
  }
  return list;
}

/** Places `items` (unique names) on GPUs. Throws a YqpError naming the field for any bad ordinal or name. */
export function place(items: readonly string[], options: PlacementOptions): Placement {
  if (!Array.isArray(items)) throw invalidParameter('items', 'an array of names', items);
  const gpus = gpuList(options.gpus, options.deviceCount);
  const strategy =
    options.strategy === undefined
      ? 'balanced'
      : expectOneOf('strategy', options.strategy, ['round-robin', 'balanced'] as const);
  const seen = new Set<string>();
  for (const [i, item] of items.entries()) {
    if (typeof item !== 'string' || item === '')
      throw invalidParameter(`items[${i}]`, 'a non-empty name', item);
    if (seen.has(item)) throw invalidParameter(`items[${i}]`, 'a name not used before', item);
    seen.add(item);
  }
  const map = options.map ?? {};
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw invalidParameter('map', 'an object of name -> GPU ordinal', map);
  for (const [name, g] of Object.entries(map)) {
    if (!seen.has(name))
      throw invalidParameter(`map.${name}`, `one of the placed names (${items.join(', ')})`, name);
    if (typeof g !== 'number' || !Number.isInteger(g) || !gpus.includes(g))
      throw invalidParameter(`map.${name}`, `one of the GPU ordinals ${gpus.join(', ')}`, g);
  }
  const weight = (item: string): number => {
    const w = options.weights?.[item] ?? 1;
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0)
      throw invalidParameter(`weights.${item}`, 'a positive number', w);
    return w;
  };
  const byItem: Record<string, number> = {};
  const byGpu = new Map<number, string[]>(gpus.map((g) => [g, []]));
  const load = new Map<number, number>(gpus.map((g) => [g, 0]));
  const put = (item: string, g: number): void => {
    byItem[item] = g;
    byGpu.get(g)!.push(item);
    load.set(g, load.get(g)! + weight(item));
  };
  for (const item of items) if (item in map) put(item, map[item]);
  let next = 0;
  for (const item of items) {
    if (item in map) continue;
    let g: number;
    if (strategy === 'round-robin') {
      g = gpus[next++ % gpus.length];
    } else {
      g = gpus[0];
      for (const c of gpus) if (load.get(c)! < load.get(g)!) g = c;
    }
    put(item, g);
  }
  return { byItem, byGpu, load };
}

/** Names of the execution contexts of a model with `instances` contexts: "model#0", "model#1", ... */
export function contextNames(model: string, instances: number): string[] {
  expectPositiveInteger(`${model}.instances`, instances);
  return Array.from({ length: instances }, (_, i) => `${model}#${i}`);
}

/**
 * Plans a whole deployment: every context of every model and every camera, each kind balanced on its own
 * (a GPU gets contexts of each model before any gets a second one).
 */
export function planPlacement(
  spec: { models?: Record<string, number>; cameras?: string[] },
  options: PlacementOptions,
): { contexts: Placement; cameras: Placement } {
  if (typeof spec !== 'object' || spec === null) throw invalidParameter('spec', '{models, cameras}', spec);
  const contexts: string[] = [];
  for (const [model, n] of Object.entries(spec.models ?? {})) contexts.push(...contextNames(model, n));
  const cameras = spec.cameras ?? [];
  const split = (names: string[]): PlacementOptions => ({
    ...options,
    map: Object.fromEntries(Object.entries(options.map ?? {}).filter(([k]) => names.includes(k))),
  });
  const unknown = Object.keys(options.map ?? {}).filter((k) => !contexts.includes(k) && !cameras.includes(k));
  if (unknown.length > 0)
    throw new YqpError(
      'E_ARGUMENT',
      `Expected context or camera names for map but received ${unknown.join(', ')}`,
      {
        argument: 'map',
        expected: 'names like model#0 or a camera id',
        received: unknown.join(', '),
      },
    );
  return { contexts: place(contexts, split(contexts)), cameras: place(cameras, split(cameras)) };
}
