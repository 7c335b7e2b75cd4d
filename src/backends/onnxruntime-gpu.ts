import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PACKAGE_ROOT, loadBinding } from '../native/binding.js';
import { YqpError } from '../errors.js';
import { onnxruntimeLibraryPath } from './onnxruntime-library.js';

/**
 * A GPU-capable onnxruntime: a libonnxruntime core and its execution providers of the same build, in one folder
 * (onnxruntime loads libonnxruntime_providers_*.so from beside the core). It is found, in this order, in:
 * 1. an explicit folder (`loadModel(..., { onnxruntimeDir })`, config.json `onnxruntimeDir`);
 * 2. YQP_ORT_GPU_DIR;
 * 3. beside onnxruntime-node's own binding, where its installer put the CUDA provider (Linux x64, installed
 *    without our `onnxruntime-node-install=skip`);
 * 4. .cache/ort-gpu/lib, written by `npm run data:gpu` (the MIT-licensed npm packages com.github.asus4.onnxruntime
 *    and its linux-x64-gpu provider package, onnxruntime 1.29.0 for CUDA 13: data, not a dependency).
 * Nothing is linked at build time: the addon opens the core with dlopen, so CI machines without CUDA libraries
 * build and test as before.
 */
export interface GpuOnnxruntime {
  dir: string;
  core: string;
  source: 'option' | 'YQP_ORT_GPU_DIR' | 'onnxruntime-node' | 'npm run data:gpu';
  cudaProvider?: string;
  tensorrtProvider?: string;
  /** The version the folder says it holds (its package.json or VERSION file), when it says. */
  declaredVersion?: string;
}

const CORE_NAMES = ['libonnxruntime.so', 'libonnxruntime.so.1'];
export const CACHE_DIR = join(PACKAGE_ROOT, '.cache', 'ort-gpu', 'lib');

function inspect(dir: string, source: GpuOnnxruntime['source']): GpuOnnxruntime | string {
  if (!existsSync(dir)) return `${source}: ${dir} does not exist`;
  const core = CORE_NAMES.map((n) => join(dir, n)).find((p) => existsSync(p));
  if (!core) return `${source}: ${dir} holds no libonnxruntime.so`;
  const provider = (name: string) => {
    const p = join(dir, `libonnxruntime_providers_${name}.so`);
    return existsSync(p) ? p : undefined;
  };
  const cudaProvider = provider('cuda');
  if (!cudaProvider) return `${source}: ${dir} holds no libonnxruntime_providers_cuda.so`;
  let declaredVersion: string | undefined;
  for (const f of ['VERSION', 'ORT_VERSION']) {
    const p = join(dir, f);
    if (existsSync(p)) declaredVersion = readFileSync(p, 'utf8').trim();
  }
  return { dir, core, source, cudaProvider, tensorrtProvider: provider('tensorrt'), declaredVersion };
}

/** The GPU onnxruntime to use, or every place looked at and why each did not hold one. */
export function findGpuOnnxruntime(explicit?: string): { found?: GpuOnnxruntime; tried: string[] } {
  const tried: string[] = [];
  const candidates: [string | undefined, GpuOnnxruntime['source']][] = [
    [explicit, 'option'],
    [process.env.YQP_ORT_GPU_DIR || undefined, 'YQP_ORT_GPU_DIR'],
    [onnxruntimeLibraryPath() ? dirname(onnxruntimeLibraryPath()!) : undefined, 'onnxruntime-node'],
    [CACHE_DIR, 'npm run data:gpu'],
  ];
  for (const [dir, source] of candidates) {
    if (!dir) continue;
    const r = inspect(dir, source);
    if (typeof r !== 'string') return { found: r, tried };
    tried.push(r);
    // An explicit folder that does not hold one is an error, not a reason to look elsewhere.
    if (source === 'option') return { tried };
  }
  return { tried };
}

interface NativeProbe {
  probe(path: string): string;
  providers(library: string): Promise<{ version: string; providers: string[] }>;
}

export interface ProviderStatus {
  name: 'CUDAExecutionProvider' | 'TensorrtExecutionProvider';
  usable: boolean;
  reason?: string;
  library?: string;
  solutions: string[];
}

export interface GpuOnnxruntimeStatus {
  found?: GpuOnnxruntime;
  version?: string;
  /** What the core says it was built with (GetAvailableProviders); informational, see below. */
  compiledProviders?: string[];
  tried: string[];
  providers: ProviderStatus[];
}

const GPU_SOLUTIONS = [
  'npm run data:gpu (fetches onnxruntime 1.29.0 for CUDA 13 with its CUDA and TensorRT providers into .cache/ort-gpu)',
  'or set YQP_ORT_GPU_DIR to a folder holding libonnxruntime.so and libonnxruntime_providers_cuda.so of one build',
  "the CUDA provider needs CUDA 13's cuBLAS, cuRAND and cudart and cuDNN 9 on LD_LIBRARY_PATH (e.g. the nvidia-*-cu13 Python wheels' lib folders)",
];

/**
 * onnxruntime-node's binding asks the dynamic loader for libonnxruntime.so.1, the soname of the GPU core too: once
 * the GPU core (another version) is loaded, the loader hands the binding that one and onnxruntime-node fails to
 * load (version `VERS_1.30.0' not found) for the rest of the process, so a CUDA model followed by an INT8 build's
 * calibration broke. Loaded first, onnxruntime-node keeps its own core and the GPU core loads beside it by path.
 */
function loadOnnxruntimeNodeFirst(): void {
  try {
    createRequire(import.meta.url)('onnxruntime-node');
  } catch {
    // Not installed or not loadable: nothing of it to keep working.
  }
}

/** What `doctor` says of the CUDA and TensorRT providers: found, loadable, and why not. Never throws. */
export async function gpuOnnxruntimeStatus(explicit?: string): Promise<GpuOnnxruntimeStatus> {
  const { found, tried } = findGpuOnnxruntime(explicit);
  const binding = loadBinding().binding as
    | {
        onnxruntime?: NativeProbe;
        cudaInfo(): { driverError?: string; devices: unknown[]; deviceError?: string };
      }
    | undefined;
  const native = binding?.onnxruntime;
  const unusable = (
    name: ProviderStatus['name'],
    reason: string,
    solutions = GPU_SOLUTIONS,
  ): ProviderStatus => ({
    name,
    usable: false,
    reason,
    solutions,
  });
  if (!found || !native) {
    const reason = !native
      ? 'the native addon is not built (npm run build:native)'
      : `no GPU onnxruntime found (${tried.join('; ')})`;
    return {
      tried,
      providers: [unusable('CUDAExecutionProvider', reason), unusable('TensorrtExecutionProvider', reason)],
    };
  }
  let version: string | undefined;
  let compiled: string[] = [];
  loadOnnxruntimeNodeFirst();
  const coreError = native.probe(found.core);
  if (!coreError) {
    try {
      ({ version, providers: compiled } = await native.providers(found.core));
    } catch (e) {
      compiled = [];
      version = undefined;
      tried.push(`${found.core}: ${(e as Error).message}`);
    }
  }
  const info = binding.cudaInfo();
  const driver =
    info.driverError ??
    (info.devices.length === 0 ? (info.deviceError ?? 'no CUDA device is visible') : undefined);
  const status = (
    name: ProviderStatus['name'],
    library: string | undefined,
    extra: string[],
  ): ProviderStatus => {
    if (coreError) return unusable(name, `${found.core} cannot be loaded: ${coreError}`);
    if (version && found.declaredVersion && found.declaredVersion !== version)
      return unusable(
        name,
        `version mismatch: ${found.dir} says ${found.declaredVersion}, its core is ${version}`,
      );
    // Not checked against `compiled`: a core that loads its providers as libraries (the npm GPU build) lists only
    // the CPU provider and still runs the others; whether the library loads is what tells.
    if (!library) return unusable(name, `its library is not in ${found.dir}`);
    // A symbol onnxruntime itself provides (Provider_GetHost, from its providers_shared library, loaded first
    // and global) is undefined to a lone dlopen: every library the provider needs was found by then.
    const probed = native.probe(library);
    const missing = /undefined symbol/.test(probed) ? '' : probed;
    if (missing)
      return unusable(name, `${library} cannot be loaded: ${missing}`, [...extra, ...GPU_SOLUTIONS]);
    if (driver)
      return unusable(name, `no usable GPU: ${driver}`, ['run on a machine with an NVIDIA driver and GPU']);
    return { name, usable: true, library, solutions: [] };
  };
  return {
    found,
    version,
    compiledProviders: compiled,
    tried,
    providers: [
      status('CUDAExecutionProvider', found.cudaProvider, []),
      status('TensorrtExecutionProvider', found.tensorrtProvider, [
        'the TensorRT provider needs libnvinfer 10 (TensorRT 10) on LD_LIBRARY_PATH; it is not installable on our machines',
      ]),
    ],
  };
}

/** The GPU onnxruntime's core for a CUDA session, or a typed error saying why there is none (exit 3 in the CLI). */
export async function requireCudaOnnxruntime(
  explicit: string | undefined,
  tensorrt: boolean,
): Promise<GpuOnnxruntime> {
  const s = await gpuOnnxruntimeStatus(explicit);
  const need = s.providers.filter(
    (p) => p.name === 'CUDAExecutionProvider' || (tensorrt && p.name === 'TensorrtExecutionProvider'),
  );
  const bad = need.find((p) => !p.usable);
  if (bad || !s.found)
    throw new YqpError(
      'E_BACKEND_UNAVAILABLE',
      `device cuda is unavailable: ${bad?.name ?? 'CUDAExecutionProvider'}: ${bad?.reason ?? 'not found'}`,
      {
        argument: 'device',
        solutions: bad?.solutions ?? GPU_SOLUTIONS,
      },
    );
  return s.found;
}
