import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeOnnxruntime } from '../backends/onnxruntime.js';
import type { NativeKernels } from './kernels.js';
import type { NativeNvml } from './nvml.js';
import type { NativeIpcRuntime, NativeRuntime } from './runtime.js';
import type { NativeTensorRT } from './tensorrt.js';

/**
 * The one loader of the native addon, and its types (as onnxruntime-node's binding.ts): everything in src/ that
 * calls into trt/ gets the addon from here. Loading never throws; each part says why it is missing.
 */

/** The package root (src/ and dist/ sit one level below it). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

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

/**
 * What yqp_trt.node exports (trt/addon.cc), typed here once. Each part is the TypeScript face of one trt/ folder;
 * a part is absent where the addon was built without it (TensorRT) or before it existed.
 */
export interface NativeBinding {
  cudaInfo(): CudaInfo;
  /** trt/core: streams, pools, copies, graphs, frame ring, CUDA IPC regions. */
  runtime?: NativeRuntime & NativeIpcRuntime;
  /** trt/kernels: preprocessing and ROI sampling. */
  kernels?: NativeKernels;
  /** trt/tensorrt: builder and engines (only with TensorRT at build time). */
  tensorrt?: NativeTensorRT;
  /** trt/onnxruntime: the native onnxruntime runner (typed beside its backend, src/backends/onnxruntime.ts). */
  onnxruntime?: NativeOnnxruntime;
  /** trt/core/nvml.cc */
  nvml?: NativeNvml;
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

let loadedKernels: { kernels?: NativeKernels; path?: string; reason?: string } | undefined;

/**
 * The kernels binding: exports.kernels of the full addon, else the kernels-only addon that
 * trt/kernels/standalone/build.sh makes ($YQP_KERNELS_ADDON or build/kernels/yqp_kernels.node). Never throws.
 */
export function loadKernels(): { kernels?: NativeKernels; path?: string; reason?: string } {
  if (loadedKernels) return loadedKernels;
  const reasons: string[] = [];
  const main = loadBinding();
  if (main.binding && typeof main.binding.kernels === 'object' && main.binding.kernels !== null) {
    loadedKernels = { kernels: main.binding.kernels, path: main.path };
    return loadedKernels;
  }
  reasons.push(main.binding ? `${main.path} has no kernels` : main.errors.join('; '));
  const require = createRequire(import.meta.url);
  const candidates = [
    process.env.YQP_KERNELS_ADDON,
    join(PACKAGE_ROOT, 'build', 'kernels', 'yqp_kernels.node'),
  ];
  for (const path of candidates) {
    if (!path || !existsSync(path)) continue;
    try {
      const addon = require(path) as { kernels?: NativeKernels };
      if (addon.kernels) {
        loadedKernels = { kernels: addon.kernels, path };
        return loadedKernels;
      }
      reasons.push(`${path} has no kernels`);
    } catch (e) {
      reasons.push(`${path}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  loadedKernels = { reason: `the GPU kernels are not built (${reasons.join('; ')})` };
  return loadedKernels;
}
