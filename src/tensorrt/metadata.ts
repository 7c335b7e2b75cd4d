import { YqpError } from '../errors.js';
import type { OptimizationProfile, TensorRTMetadata } from '../repository/config.js';

/** config.json metadata.tensorrt: the required fields of TensorRTMetadata plus what loading and caching need. */
export interface TensorRTPlanMetadata extends TensorRTMetadata {
  /** Header version the addon was compiled against. */
  compiledWith: string;
  planSha256: string;
  planBytes: number;
  cacheKey: string;
  /** How the requested precision was realized: builder flags (10.x), ONNX cast or Q/DQ (strongly typed). */
  precisionMode: string;
  profiles: OptimizationProfile[];
  io: { name: string; dtype: string; dims: number[]; input: boolean }[];
}

export interface RuntimeIdentity {
  version: string;
  gpu: string;
  sm: string;
}

function parseVersion(v: string): number[] {
  return v.split('.').map((p) => Number.parseInt(p, 10) || 0);
}

function smNumber(sm: string): number {
  const [maj, min] = sm.split('.').map(Number);
  return (maj || 0) * 10 + (min || 0);
}

/**
 * Why a plan cannot run here, from our metadata alone, or undefined when nothing says it cannot.
 * TensorRT plans are tied to the exact TensorRT version and GPU model unless built version-compatible
 * (newer TensorRT of the same major may run them) or hardware-compatible (any GPU of the level).
 */
export function planIncompatibility(
  meta: Partial<TensorRTMetadata> | undefined,
  here: RuntimeIdentity,
): string | undefined {
  if (!meta || !meta.version) return undefined;
  const opts = (meta.buildOptions ?? {}) as { versionCompatible?: boolean; hardwareCompatibility?: string };
  const [bMaj, bMin, bPatch] = parseVersion(meta.version);
  const [rMaj, rMin, rPatch] = parseVersion(here.version);
  if (opts.versionCompatible) {
    const newerOrSame = rMaj === bMaj && (rMin > bMin || (rMin === bMin && rPatch >= bPatch));
    if (!newerOrSame)
      return `the plan was built version-compatible by TensorRT ${meta.version}, which TensorRT ${here.version} cannot run (it needs ${bMaj}.x at least ${meta.version})`;
  } else if (bMaj !== rMaj || bMin !== rMin || bPatch !== rPatch) {
    return `the plan was built by TensorRT ${meta.version} and this machine has TensorRT ${here.version}; plans only load in the TensorRT version that built them`;
  }
  const level = opts.hardwareCompatibility ?? 'none';
  if (level === 'ampere-plus') {
    if (smNumber(here.sm) < 80)
      return `the plan was built hardware-compatible for Ampere and newer (sm 8.0+) but this GPU is ${here.gpu} (sm ${here.sm})`;
  } else if (level === 'same-compute-capability') {
    if (meta.sm && meta.sm !== here.sm)
      return `the plan was built for compute capability ${meta.sm} (${meta.gpu}) but this GPU is ${here.gpu} (sm ${here.sm})`;
  } else if (meta.gpu && (meta.gpu !== here.gpu || (meta.sm && meta.sm !== here.sm))) {
    return `the plan was built for ${meta.gpu} (sm ${meta.sm}) but this GPU is ${here.gpu} (sm ${here.sm}); rebuild here or build with hardwareCompatibility`;
  }
  return undefined;
}

/** The error for a plan that cannot load: our metadata's reason first, TensorRT's own message after. */
export function planLoadError(
  planPath: string,
  meta: Partial<TensorRTMetadata> | undefined,
  here: RuntimeIdentity,
  tensorrtMessage?: string,
): YqpError {
  const reason = planIncompatibility(meta, here);
  const parts = [`Cannot load TensorRT plan ${planPath}`];
  if (reason) parts.push(reason);
  if (tensorrtMessage) parts.push(`TensorRT says: ${tensorrtMessage}`);
  return new YqpError('E_BACKEND', parts.join(': '), {
    argument: 'model.plan',
    expected: meta?.version
      ? `TensorRT ${meta.version} on ${meta.gpu ?? 'the GPU it was built for'}`
      : 'a plan made by this TensorRT',
    received: `TensorRT ${here.version} on ${here.gpu} (sm ${here.sm})`,
    solutions: [
      'rebuild the entry on this machine: yqp-trt build <model.onnx> --backend tensorrt',
      'or build with --version-compatible / --hardware-compatibility for plans that travel',
    ],
  });
}
