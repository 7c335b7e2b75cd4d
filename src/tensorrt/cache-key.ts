import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { OptimizationProfile } from '../repository/config.js';
import type { TensorRTPlanMetadata } from './metadata.js';

/** Everything a plan's bytes depend on. Two builds with equal parts give interchangeable plans. */
export interface EngineCacheKeyParts {
  /** sha256 of the ONNX TensorRT parses (after any fp16 cast input is re-derived from it deterministically). */
  modelSha256: string;
  profiles: OptimizationProfile[];
  /** planAffectingOptions(...) */
  buildOptions: Record<string, unknown>;
  tensorrtVersion: string;
  gpu: string;
  sm: string;
  /** sha256 of the calibration cache the 10.x calibrator read, when it read one. */
  calibrationCacheSha256?: string;
}

/** JSON with object keys sorted at every level, so equal values always serialize to equal strings. */
export function canonicalJson(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function engineCacheKey(parts: EngineCacheKeyParts): string {
  return createHash('sha256')
    .update(canonicalJson({ v: 1, ...parts }))
    .digest('hex');
}

/** $YQP_TRT_ENGINE_CACHE, else ~/.cache/yqp-trt/engines; undefined when caching is off. */
export function engineCacheDir(option?: string | false): string | undefined {
  if (option === false) return undefined;
  if (typeof option === 'string') return option;
  return process.env.YQP_TRT_ENGINE_CACHE || join(homedir(), '.cache', 'yqp-trt', 'engines');
}

export function timingCacheFile(cacheDir: string, tensorrtVersion: string, gpu: string): string {
  return join(cacheDir, `timing-${tensorrtVersion}-${gpu.replace(/[^A-Za-z0-9.]+/g, '_')}.cache`);
}

export interface CachedEngine {
  plan: Uint8Array;
  metadata: TensorRTPlanMetadata;
}

export async function readCachedEngine(dir: string, key: string): Promise<CachedEngine | undefined> {
  try {
    const [plan, meta] = await Promise.all([
      readFile(join(dir, `${key}.plan`)),
      readFile(join(dir, `${key}.json`), 'utf8'),
    ]);
    const metadata = JSON.parse(meta) as TensorRTPlanMetadata;
    // A plan whose bytes changed since it was cached (disk error, manual edit) is a miss, not a crash later.
    if (metadata.planSha256 !== createHash('sha256').update(plan).digest('hex')) return undefined;
    return { plan, metadata };
  } catch {
    return undefined;
  }
}

/** Writes plan then metadata, each through a rename, so a reader never sees half an entry. */
export async function writeCachedEngine(dir: string, key: string, entry: CachedEngine): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = `.${process.pid}.${Date.now()}`;
  await writeFile(join(dir, `${key}.plan${tmp}`), entry.plan);
  await rename(join(dir, `${key}.plan${tmp}`), join(dir, `${key}.plan`));
  await writeFile(join(dir, `${key}.json${tmp}`), JSON.stringify(entry.metadata, null, 2));
  await rename(join(dir, `${key}.json${tmp}`), join(dir, `${key}.json`));
}
