import type { GpuOnnxruntimeStatus } from './backends/onnxruntime-gpu.js';
import { backendEntries } from './backends/index.js';
import type { OnnxruntimeDoctorInfo } from './backends/onnxruntime-doctor.js';
import { loadBinding } from './native/binding.js';
import type { DoctorCheck } from './doctor-check.js';

export type { DoctorCheck } from './doctor-check.js';

export interface DoctorReport {
  node: string;
  checks: DoctorCheck[];
  embeddedBackendWorks: boolean;
  tensorrtAvailable: boolean;
  native?: unknown;
  onnxruntime?: OnnxruntimeDoctorInfo;
  /** The GPU onnxruntime (CUDA and TensorRT execution providers): where it was found and whether each loads. */
  gpuOnnxruntime?: GpuOnnxruntimeStatus;
  /** Each backend's clause of the summary line, in registry order. */
  summary: string[];
}

export async function doctorReport(): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const [major, minor] = process.versions.node.split('.').map(Number);
  const nodeOk = major > 20 || (major === 20 && minor >= 19);
  checks.push({
    name: 'node',
    ok: nodeOk,
    detail: `Node.js ${process.versions.node} (${process.platform}-${process.arch})`,
    solutions: nodeOk ? undefined : ['install Node.js 20.19 or later'],
  });

  const loaded = loadBinding();
  let native: unknown;
  if (loaded.binding) {
    const b = loaded.binding;
    checks.push({ name: 'native addon', ok: true, detail: `loaded ${loaded.path}` });
    const info = b.cudaInfo();
    native = info;
    checks.push({
      name: 'cuda runtime',
      ok: true,
      detail: `CUDA runtime ${info.runtimeVersion} (linked statically)`,
    });
    checks.push({
      name: 'cuda driver',
      ok: info.driverVersion !== undefined,
      detail:
        info.driverVersion !== undefined
          ? `CUDA driver API ${info.driverVersion}`
          : `no CUDA driver: ${info.driverError}`,
      solutions:
        info.driverVersion !== undefined
          ? undefined
          : ['install the NVIDIA driver (GPU machines only); the onnxruntime backend works without it'],
    });
    checks.push({
      name: 'gpus',
      ok: info.devices.length > 0,
      detail:
        info.devices.length > 0
          ? info.devices
              .map(
                (d) =>
                  `#${d.index} ${d.name} sm_${d.sm.replace('.', '')} ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB`,
              )
              .join('; ')
          : 'no CUDA device visible',
      solutions: info.devices.length > 0 ? undefined : ['check `nvidia-smi`', 'check CUDA_VISIBLE_DEVICES'],
    });
    checks.push({
      name: 'tensorrt (compiled in)',
      ok: info.tensorrt.compiled,
      detail: info.tensorrt.compiled
        ? `compiled against TensorRT ${info.tensorrt.version}`
        : 'the addon was built without TensorRT',
      solutions: info.tensorrt.compiled
        ? undefined
        : ['install TensorRT and rebuild with `TENSORRT_ROOT=/path/to/TensorRT npm run build:native`'],
    });
  } else {
    checks.push({
      name: 'native addon',
      ok: false,
      detail: `not loaded: ${loaded.errors.join('; ')}`,
      solutions: loaded.solutions,
    });
  }
  // Each backend checks itself (src/backends/*-entry.ts) and fills the report fields it owns.
  const summary: string[] = [];
  const owned: Record<string, unknown> = { embeddedBackendWorks: false, tensorrtAvailable: false };
  for (const entry of backendEntries()) {
    if (!entry.doctor) continue;
    const d = await entry.doctor();
    checks.push(...d.checks);
    Object.assign(owned, d.report);
    summary.push(d.summary);
  }
  return {
    node: process.versions.node,
    checks,
    ...(owned as Pick<
      DoctorReport,
      'embeddedBackendWorks' | 'tensorrtAvailable' | 'onnxruntime' | 'gpuOnnxruntime'
    >),
    native,
    summary,
  };
}
