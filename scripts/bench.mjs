#!/usr/bin/env node
// `npm run bench -- <name> [args]`: runs bench/<name>.mjs against the built package (dist/).
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const benchDir = join(root, 'bench');
const available = readdirSync(benchDir)
  .filter((f) => f.endsWith('.mjs'))
  .map((f) => f.slice(0, -4))
  .sort();
const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  process.stderr.write(`Expected a benchmark name (${available.join(', ')}) but received ${name ?? 'nothing'}\n`);
  process.exit(2);
}
if (!existsSync(join(root, 'dist', 'index.js'))) {
  process.stderr.write('dist/ is missing: run `npm run build:ts` first\n');
  process.exit(2);
}
const mod = await import(pathToFileURL(join(benchDir, `${name}.mjs`)).href);
await mod.default(args);
