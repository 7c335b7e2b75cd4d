import { createRequire } from 'node:module';
import { onnx } from './onnx/model.js';
import { backendAvailability } from './backends/index.js';
import { loadBinding } from './binding.js';

const require = createRequire(import.meta.url);

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  solutions?: string[];
}

export interface DoctorReport {
  node: string;
  checks: DoctorCheck[];
  embeddedBackendWorks: boolean;
  tensorrtAvailable: boolean;
  native?: unknown;
  onnxruntime?: { version: string; executionProviders: { name: string; bundled: boolean }[] };
}

/** A one-node model (y = x + x) that proves onnxruntime loads and runs here. */
function tinyModel(): Uint8Array {
  const tensorType = (name: string) =>
    onnx.ValueInfoProto.create({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 2 }] } } },
    });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'yqp-trt doctor',
    graph: {
      name: 'doctor',
      node: [{ opType: 'Add', input: ['x', 'x'], output: ['y'] }],
      input: [tensorType('x')],
      output: [tensorType('y')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

async function checkOnnxruntime(): Promise<{ check: DoctorCheck; info?: DoctorReport['onnxruntime'] }> {
  try {
    const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');
    const session = await ort.InferenceSession.create(tinyModel());
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
    const y = Array.from(out.y.data as Float32Array);
    await session.release();
    if (y[0] !== 2 || y[1] !== 4) throw new Error(`test model computed ${y.join(',')} instead of 2,4`);
    const providers = ort.listSupportedBackends();
    const version = ort.env.versions.node ?? 'unknown';
    return {
      check: {
        name: 'onnxruntime',
        ok: true,
        detail: `onnxruntime-node ${version}, ran a test model; execution providers: ${providers.map((p) => `${p.name}${p.bundled ? '' : ' (not bundled)'}`).join(', ')}`,
      },
      info: { version, executionProviders: providers },
    };
  } catch (e) {
    return {
      check: {
        name: 'onnxruntime',
        ok: false,
        detail: `onnxruntime-node does not work: ${(e as Error).message}`,
        solutions: [
          'reinstall dependencies with `npm ci`',
          'check that this platform is one onnxruntime-node ships binaries for',
        ],
      },
    };
  }
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
  const trt = await backendAvailability('tensorrt');
  checks.push({
    name: 'tensorrt backend',
    ok: trt.available,
    detail: trt.available ? `available (TensorRT ${trt.version})` : `unavailable: ${trt.reason}`,
    solutions: trt.available
      ? undefined
      : ['builds and serving use the onnxruntime backend meanwhile (--backend onnxruntime)'],
  });
  const ort = await checkOnnxruntime();
  checks.push(ort.check);
  return {
    node: process.versions.node,
    checks,
    embeddedBackendWorks: ort.check.ok,
    tensorrtAvailable: trt.available,
    native,
    onnxruntime: ort.info,
  };
}
