#!/usr/bin/env node
// npm run data:gpu: fetches a GPU build of onnxruntime from the npm registry (and nowhere else) into
// .cache/ort-gpu/lib: ONNX Runtime 1.29.0 for CUDA 13 with its CUDA and TensorRT execution providers, from the
// MIT-licensed Unity packages com.github.asus4.onnxruntime (the core) and com.github.asus4.onnxruntime.linux-x64-gpu
// (the providers). Data, not a dependency: nothing links against it; the addon opens it at run time when a model
// runs with --device cuda. The CUDA provider needs CUDA 13's cuBLAS/cuRAND/cudart and cuDNN 9 on LD_LIBRARY_PATH.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const VERSION = '0.4.9';
const ONNXRUNTIME_VERSION = '1.29.0';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = join(root, '.cache', 'ort-gpu', 'lib');
const FILES = {
  core: ['libonnxruntime.so'],
  gpu: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_tensorrt.so'],
};
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`yqp-trt: the GPU onnxruntime packages are built for linux-x64, not ${process.platform}-${process.arch}`);
  process.exit(3);
}
if ([...FILES.core, ...FILES.gpu].every((f) => existsSync(join(lib, f)))) {
  process.stderr.write(`GPU onnxruntime ${ONNXRUNTIME_VERSION} ready in ${lib}\n`);
  process.exit(0);
}
const work = mkdtempSync(join(tmpdir(), 'yqp-ort-gpu-'));
try {
  mkdirSync(lib, { recursive: true });
  for (const [pkg, files] of [
    ['com.github.asus4.onnxruntime', FILES.core],
    ['com.github.asus4.onnxruntime.linux-x64-gpu', FILES.gpu],
  ]) {
    process.stderr.write(`fetching ${pkg}@${VERSION} from the npm registry\n`);
    const out = execFileSync('npm', ['pack', `${pkg}@${VERSION}`, '--pack-destination', work, '--silent'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const tarball = join(work, out.trim().split('\n').pop());
    const dir = join(work, pkg);
    mkdirSync(dir);
    execFileSync('tar', ['-xzf', tarball, '-C', dir, ...files.map((f) => `package/Plugins/Linux/x64/${f}`), 'package/LICENSE']);
    for (const f of files) copyFileSync(join(dir, 'package', 'Plugins', 'Linux', 'x64', f), join(lib, f));
    copyFileSync(join(dir, 'package', 'LICENSE'), join(lib, `LICENSE.${pkg}`));
  }
  // What the folder holds, checked against the core's own version at load (a mismatch is reported by doctor).
  writeFileSync(join(lib, 'VERSION'), `${ONNXRUNTIME_VERSION}\n`);
  process.stderr.write(`GPU onnxruntime ${ONNXRUNTIME_VERSION} ready in ${lib}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
