#!/usr/bin/env node
// npm run build:native: builds build/Release/yqp_trt.node with cmake-js. Without a CUDA toolkit (nvcc) or CMake it
// says why and exits 0: the package and its onnxruntime backend work without the addon.
// TENSORRT_ROOT=<folder holding include/NvInfer.h> compiles the TensorRT adapter in.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim();
const cudaHome = process.env.CUDA_HOME || process.env.CUDA_PATH || '/usr/local/cuda';
const nvcc = which('nvcc') || (existsSync(join(cudaHome, 'bin', 'nvcc')) ? join(cudaHome, 'bin', 'nvcc') : '');
const missing = [];
if (!nvcc) missing.push(`the CUDA toolkit (nvcc not on PATH nor in ${cudaHome}/bin)`);
if (!which('cmake')) missing.push('CMake 3.18 or later');
if (missing.length) {
  const message = `yqp-trt: native addon not built: missing ${missing.join(' and ')}. The onnxruntime backend works without it.\nPossible solutions: install the CUDA toolkit and CMake, then run \`npm run build:native\`.`;
  console.error(message);
  process.exit(strict ? 3 : 0);
}
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
// cmake-js at warn (its INFO lines dump every command as an array) and CMake's STATUS lines hidden (the CUDA
// toolkit probe's "Unable to find cublas_v2.h" among them: we never use cuBLAS); our own notes are NOTICE.
const args = [cmakeJs, 'compile', '--out', 'build', '--config', 'Release', '--log-level', 'warn', '--CDCMAKE_CUDA_COMPILER=' + nvcc, '--CDCMAKE_MESSAGE_LOG_LEVEL=NOTICE'];
if (process.env.TENSORRT_ROOT) args.push(`--CDTENSORRT_ROOT=${process.env.TENSORRT_ROOT}`);
if (process.env.YQP_CUDA_ARCHITECTURES) args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.YQP_CUDA_ARCHITECTURES}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? '2' } });
if (r.status !== 0) {
  console.error('yqp-trt: native addon build failed (see above). The onnxruntime backend works without it.');
  process.exit(strict ? 1 : r.status ?? 1);
}
