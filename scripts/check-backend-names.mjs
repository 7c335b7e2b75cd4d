#!/usr/bin/env node
// Backend names belong to the backend registry (src/backends/) and the TensorRT adapter (src/tensorrt/): code
// elsewhere asks a BackendEntry's fields instead of comparing names. This fails (exit 1, one line per use) when
// code outside them compares a backend's name (=== 'tensorrt', case 'onnxruntime':, .includes('tensorrt')), sets
// `backend: 'onnxruntime'`, lists two backends in a closed array or table, or writes a registry string (a Triton
// platform, a build step's model file). Words in messages and comments are fine.
//
//   node scripts/check-backend-names.mjs [dir ...]   (default: src)
import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { files, isText, parse, propName, runNameCheck, ts } from './lib/ts-source.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BACKENDS = join(ROOT, 'src', 'backends');
/** Where backend names may be compared: the registry and its entries, and the TensorRT adapter. */
const OWNERS = [BACKENDS, join(ROOT, 'src', 'tensorrt')];


/** The registry's strings, read from the entries (`const x: BackendEntry = { name, modelFile, platform, ... }`). */
function registryStrings() {
  const names = new Set();
  const owned = new Set(); // platforms, Triton backend names, model files of backends with a build step
  for (const file of readdirSync(BACKENDS).filter((f) => f.endsWith('-entry.ts'))) {
    const visit = (node) => {
      if (
        ts.isVariableDeclaration(node) &&
        node.type?.getText() === 'BackendEntry' &&
        node.initializer &&
        ts.isObjectLiteralExpression(node.initializer)
      ) {
        const fields = new Map();
        const read = (obj, prefix) => {
          for (const p of obj.properties) {
            const key = propName(p);
            if (!key || !ts.isPropertyAssignment(p)) continue;
            if (isText(p.initializer)) fields.set(prefix + key, p.initializer.text);
            else if (ts.isObjectLiteralExpression(p.initializer)) read(p.initializer, `${prefix}${key}.`);
            else if (p.initializer.kind === ts.SyntaxKind.TrueKeyword) fields.set(prefix + key, true);
          }
        };
        read(node.initializer, '');
        names.add(fields.get('name'));
        for (const k of ['platform', 'triton.backend']) if (fields.has(k)) owned.add(fields.get(k));
        // The embedded backend's model.onnx is also every ONNX file's name; a built model file is the backend's.
        if (!fields.get('embedded') && fields.has('modelFile')) owned.add(fields.get('modelFile'));
      }
      ts.forEachChild(node, visit);
    };
    visit(parse(join(BACKENDS, file)));
  }
  names.delete(undefined);
  for (const n of names) owned.delete(n); // a Triton backend name equal to ours is checked as a name
  return { names, owned };
}

const COMPARE = new Set([
  ts.SyntaxKind.EqualsEqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsEqualsToken,
  ts.SyntaxKind.EqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsToken,
]);
const MEMBERSHIP = new Set(['includes', 'indexOf', 'startsWith', 'endsWith', 'has', 'get']);

/** Each use in one file: [line, what]. */
export function backendNameUses(file, { names, owned }) {
  const source = parse(file);
  const uses = [];
  const at = (node, what) =>
    uses.push([source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, what]);
  const named = (n) => n && isText(n) && names.has(n.text);
  const visit = (node) => {
    if (ts.isBinaryExpression(node) && COMPARE.has(node.operatorToken.kind)) {
      for (const side of [node.left, node.right])
        if (named(side)) at(side, `compares the backend name '${side.text}'`);
    } else if (ts.isCaseClause(node) && named(node.expression)) {
      at(node.expression, `switches on the backend name '${node.expression.text}'`);
    } else if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      MEMBERSHIP.has(node.expression.name.text) &&
      named(node.arguments[0])
    ) {
      at(node.arguments[0], `looks up the backend name '${node.arguments[0].text}'`);
    } else if (ts.isPropertyAssignment(node) && propName(node) === 'backend' && named(node.initializer)) {
      at(
        node.initializer,
        `sets backend to the name '${node.initializer.text}' (embeddedBackend(), resolveBackend())`,
      );
    } else if (ts.isArrayLiteralExpression(node)) {
      const listed = node.elements.filter(named);
      if (listed.length >= 2)
        at(node, `lists backends ${listed.map((e) => `'${e.text}'`).join(', ')} (ask the registry)`);
    } else if (ts.isObjectLiteralExpression(node)) {
      const keyed = node.properties.map(propName).filter((k) => k !== undefined && names.has(k));
      if (keyed.length >= 2) at(node, `is a table keyed by backends ${keyed.join(', ')} (ask the registry)`);
    } else if (isText(node) && owned.has(node.text) && !ts.isImportDeclaration(node.parent)) {
      at(node, `writes '${node.text}', a backend entry's field (ask the registry)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return uses;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const strings = registryStrings();
  runNameCheck({
    root: ROOT,
    owners: OWNERS,
    usesOf: (file) => backendNameUses(file, strings),
    what: 'backend name',
    fix: 'outside src/backends/ and src/tensorrt/: move the decision into a BackendEntry field (src/backends/registry.ts)',
    ok: (n) =>
      `no backend name compared outside src/backends/ and src/tensorrt/ (${n} files; names ${[...strings.names].join(', ')})`,
  });
}
