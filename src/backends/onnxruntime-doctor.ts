import { gpuOnnxruntimeStatus } from './onnxruntime-gpu.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DoctorCheck } from '../doctor-check.js';
import { onnx } from '../onnx/model.js';
import { nativeRunner } from './onnxruntime.js';
import type { BackendDoctor } from './registry.js';

const require = createRequire(import.meta.url);

/** What doctor says about onnxruntime (DoctorReport.onnxruntime). */
export interface OnnxruntimeDoctorInfo {
  version: string;
  executionProviders: { name: string; bundled: boolean }[];
  /** How contexts run off the event loop: the addon's runner threads, or worker threads (and why). */
  runner?: { name: 'native' | 'worker'; reason?: string };
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

async function checkOnnxruntime(): Promise<{ check: DoctorCheck; info?: OnnxruntimeDoctorInfo }> {
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

/** Runs the test model through the addon's onnxruntime runner, which `loadModel` uses by default. */
async function checkRunner(): Promise<{
  check: DoctorCheck;
  runner: { name: 'native' | 'worker'; reason?: string };
}> {
  const found = nativeRunner();
  if (!found.native)
    return {
      check: {
        name: 'onnxruntime runner',
        ok: true,
        detail: `worker threads (one input copy and a thread hop per request): the native runner is unavailable: ${found.reason}`,
        solutions: [
          'build the addon for the native runner: `npm run build:native` (needs the CUDA toolkit and CMake)',
        ],
      },
      runner: { name: 'worker', reason: found.reason },
    };
  const dir = mkdtempSync(join(tmpdir(), 'yqp-doctor-'));
  try {
    const path = join(dir, 'double.onnx');
    writeFileSync(path, tinyModel());
    const session = new found.native.Session(
      await found.native.open(found.library!, path, {
        intraOpThreads: 1,
        interOpThreads: 1,
        spinning: false,
        graphOptimization: 99,
      }),
    );
    const [[, , buffer]] = await session.run([[0, 1, [2], Float32Array.from([1, 2])]]);
    await session.close();
    const y = Array.from(new Float32Array(buffer ?? new ArrayBuffer(0)));
    if (y[0] !== 2 || y[1] !== 4) throw new Error(`test model computed ${y.join(',')} instead of 2,4`);
    return {
      check: {
        name: 'onnxruntime runner',
        ok: true,
        detail: `native: the addon runs onnxruntime ${session.version} (${found.library}) on its own threads; ran the test model`,
      },
      runner: { name: 'native' },
    };
  } catch (e) {
    const reason = (e as Error).message;
    return {
      check: {
        name: 'onnxruntime runner',
        ok: true,
        detail: `worker threads: the native runner failed the test model: ${reason}`,
        solutions: [
          'report this with `yqp-trt doctor --json`; meanwhile loadModel({ runner: "worker" }) avoids it',
        ],
      },
      runner: { name: 'worker', reason },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The onnxruntime backend's part of doctor: the test model through onnxruntime-node, then through the runner. */
export async function onnxruntimeDoctor(): Promise<BackendDoctor> {
  const checks: DoctorCheck[] = [];
  const ort = await checkOnnxruntime();
  checks.push(ort.check);
  if (ort.info) {
    const runner = await checkRunner();
    checks.push(runner.check);
    ort.info.runner = runner.runner;
  }
  // The GPU execution providers (--device cuda): found, loadable, and why not.
  const gpu = await gpuOnnxruntimeStatus();
  for (const p of gpu.providers)
    checks.push({
      name: `onnxruntime ${p.name}`,
      ok: p.usable,
      detail: p.usable
        ? `usable: onnxruntime ${gpu.version} from ${gpu.found!.dir} (${gpu.found!.source}); --device cuda runs on it`
        : `not usable: ${p.reason}`,
      solutions: p.usable ? undefined : p.solutions,
    });
  return {
    checks,
    report: { embeddedBackendWorks: ort.check.ok, onnxruntime: ort.info, gpuOnnxruntime: gpu },
    summary: `embedded backend (onnxruntime): ${ort.check.ok ? 'works' : 'NOT working'}`,
  };
}
