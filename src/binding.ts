import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (src/ and dist/ sit one level below it). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface CudaDevice {
  index: number;
  name: string;
  /** Compute capability, e.g. "9.0". */
  sm: string;
  totalMemory: number;
  freeMemory?: number;
  pciBusId?: string;
  multiProcessors: number;
}

export interface CudaInfo {
  /** CUDA runtime the addon was linked with (statically). */
  runtimeVersion: string;
  /** CUDA version the installed driver supports; absent without a driver. */
  driverVersion?: string;
  driverError?: string;
  deviceError?: string;
  devices: CudaDevice[];
  tensorrt: { compiled: boolean; version?: string };
}

/** What yqp_trt.node exports. Each concern types its own part (src/gpu, src/tensorrt); here only the top level. */
export interface NativeBinding {
  cudaInfo(): CudaInfo;
  kernels?: unknown;
  tensorrt?: unknown;
  [name: string]: unknown;
}

export interface LoadedBinding {
  binding?: NativeBinding;
  path?: string;
  /** Every reason the addon did not load, in the order tried. */
  errors: string[];
  solutions: string[];
}

/** Where the addon may be: $YQP_TRT_ADDON, then cmake-js's build/Release. */
export function bindingCandidates(): string[] {
  return [process.env.YQP_TRT_ADDON, join(PACKAGE_ROOT, 'build', 'Release', 'yqp_trt.node')].filter(
    (p): p is string => Boolean(p),
  );
}

let cached: LoadedBinding | undefined;

/**
 * Loads the native addon once. Never throws: it collects every failure (missing file, dlopen error) with
 * "Possible solutions", as sharp's loader does, for `doctor` and for errors that need the addon.
 */
export function loadBinding(): LoadedBinding {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const path of bindingCandidates()) {
    if (!existsSync(path)) {
      errors.push(`${path} does not exist`);
      continue;
    }
    try {
      const binding = require(path) as NativeBinding;
      cached = { binding, path, errors, solutions: [] };
      return cached;
    } catch (e) {
      errors.push(`${path} failed to load: ${(e as Error).message}`);
    }
  }
  cached = {
    errors,
    solutions: [
      'build it: `npm run build:native` (needs the CUDA toolkit and CMake)',
      'set YQP_TRT_ADDON to a built yqp_trt.node',
      'the onnxruntime backend works without the addon',
    ],
  };
  return cached;
}
