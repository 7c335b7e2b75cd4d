#!/usr/bin/env node
// Import cycles in src/: static imports that run at load time (`import type`, type-only specifiers and dynamic
// import() are not edges: they do not order module evaluation). Exits 1 and prints each cycle when there is one.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = resolve(ROOT, process.argv[2] ?? 'src');

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

// import ... from '...'; export ... from '...'; import '...';
const STATEMENT = /^\s*(import|export)\s+([^'";]*?)\s*(?:from\s*)?['"]([^'"]+)['"]/gm;

/** Whether the clause brings in only types (`type X`, `{ type A, type B }`). */
function typeOnly(clause) {
  if (/^type\s/.test(clause)) return true;
  const braces = clause.match(/^\{([^}]*)\}$/s);
  if (!braces) return false;
  const names = braces[1]
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return names.length > 0 && names.every((n) => n.startsWith('type '));
}

const graph = new Map();
for (const file of files(SRC)) {
  const text = readFileSync(file, 'utf8');
  const edges = [];
  for (const m of text.matchAll(STATEMENT)) {
    const [, , clause, spec] = m;
    if (!spec.startsWith('.')) continue;
    if (typeOnly(clause.trim())) continue;
    if (m[1] === 'export' && !/from\s*['"]/.test(m[0])) continue;
    edges.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  graph.set(file, edges);
}

const cycles = [];
const state = new Map(); // 1: on the stack, 2: done
const stack = [];
function visit(node) {
  state.set(node, 1);
  stack.push(node);
  for (const next of graph.get(node) ?? []) {
    if (!graph.has(next)) continue;
    if (state.get(next) === 1) cycles.push([...stack.slice(stack.indexOf(next)), next]);
    else if (!state.has(next)) visit(next);
  }
  stack.pop();
  state.set(node, 2);
}
for (const node of graph.keys()) if (!state.has(node)) visit(node);

if (cycles.length === 0) {
  console.log(`no import cycle among ${graph.size} files of ${relative(ROOT, SRC)}/`);
} else {
  for (const c of cycles) console.error(`import cycle: ${c.map((f) => relative(ROOT, f)).join(' -> ')}`);
  process.exit(1);
}
