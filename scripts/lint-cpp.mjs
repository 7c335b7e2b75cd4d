#!/usr/bin/env node
// Checks the C++/CUDA sources under trt/ against .clang-format (clang-format from npm). --fix rewrites them.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const walk = (d) =>
  readdirSync(d).flatMap((f) => {
    const p = join(d, f);
    return statSync(p).isDirectory() ? walk(p) : /\.(cc|h|cu|cuh)$/.test(f) ? [p] : [];
  });
const files = walk('trt');
const fix = process.argv.includes('--fix');
const bin = 'node_modules/.bin/clang-format';
const r = spawnSync(bin, fix ? ['-i', ...files] : ['--dry-run', '-Werror', ...files], { stdio: 'inherit' });
if (r.status !== 0) {
  if (!fix) console.error('C++ formatting differs from .clang-format: run `npm run format`');
  process.exit(r.status ?? 1);
}
