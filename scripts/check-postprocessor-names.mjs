#!/usr/bin/env node
// Postprocessor names belong to the postprocessor registry and its entries (src/postprocess/): code elsewhere asks
// an entry's roles (Postprocessor.faceDetector, .faceLandmarker, .legacyField; src/postprocess/roles.ts) instead
// of comparing names. This fails (exit 1, one line per use) when code outside src/postprocess/ compares a
// postprocessor's name (=== 'blazeface', case 'face-landmarks':, .includes('blazeface')), writes a spec
// (`type: 'blazeface'`), declares a spec's type ('face-landmarks' as a type, PostprocessorTypes merged from
// elsewhere), keys a table by postprocessors, or writes a name at all. Words in messages and comments are fine.
//
//   node scripts/check-postprocessor-names.mjs [dir ...]   (default: src)
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { files, isText, parse, propName, runNameCheck, ts } from './lib/ts-source.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Where postprocessor names may be written: the registry and its entries. */
const OWNER = join(ROOT, 'src', 'postprocess');


/**
 * The registry's names, read from src/postprocess/: the keys of PostprocessorTypes (each entry's file merges its
 * own) and the names of the entries (`const x: Postprocessor<...> = { name: '...', ... }`).
 */
export function postprocessorNames(dir = OWNER) {
  const names = new Set();
  for (const file of files(dir)) {
    const visit = (node) => {
      if (ts.isInterfaceDeclaration(node) && node.name.text === 'PostprocessorTypes')
        for (const m of node.members) if (ts.isPropertySignature(m) && propName(m)) names.add(propName(m));
      if (
        ts.isVariableDeclaration(node) &&
        node.type &&
        /^Postprocessor\b/.test(node.type.getText()) &&
        node.initializer &&
        ts.isObjectLiteralExpression(node.initializer)
      )
        for (const p of node.initializer.properties)
          if (ts.isPropertyAssignment(p) && propName(p) === 'name' && isText(p.initializer))
            names.add(p.initializer.text);
      ts.forEachChild(node, visit);
    };
    visit(parse(file));
  }
  return names;
}

const COMPARE = new Set([
  ts.SyntaxKind.EqualsEqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsEqualsToken,
  ts.SyntaxKind.EqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsToken,
]);
const MEMBERSHIP = new Set(['includes', 'indexOf', 'startsWith', 'endsWith', 'has', 'get']);

/** Each use in one file: [line, what], in line order. */
export function postprocessorNameUses(file, names) {
  const source = parse(file);
  const uses = [];
  const seen = new Set();
  const at = (node, what) => {
    seen.add(node);
    uses.push([source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, what]);
  };
  const named = (n) => n && isText(n) && names.has(n.text);
  const literals = [];
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) return; // module paths
    if (ts.isBinaryExpression(node) && COMPARE.has(node.operatorToken.kind)) {
      for (const side of [node.left, node.right])
        if (named(side)) at(side, `compares the postprocessor name '${side.text}' (ask an entry's role)`);
    } else if (ts.isCaseClause(node) && named(node.expression)) {
      at(node.expression, `switches on the postprocessor name '${node.expression.text}' (ask an entry's role)`);
    } else if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      MEMBERSHIP.has(node.expression.name.text) &&
      named(node.arguments[0])
    ) {
      at(node.arguments[0], `looks up the postprocessor name '${node.arguments[0].text}' (ask an entry's role)`);
    } else if (ts.isPropertyAssignment(node) && propName(node) === 'type' && named(node.initializer)) {
      at(
        node.initializer,
        `writes a postprocessing spec of type '${node.initializer.text}' (build it in src/postprocess/)`,
      );
    } else if (ts.isLiteralTypeNode(node) && named(node.literal)) {
      at(
        node.literal,
        `declares the postprocessor type '${node.literal.text}' (in its src/postprocess/ file, by declaration merging)`,
      );
    } else if (ts.isInterfaceDeclaration(node) && node.name.text === 'PostprocessorTypes') {
      at(node, 'declares a postprocessor outside src/postprocess/ (PostprocessorTypes)');
    } else if (ts.isObjectLiteralExpression(node)) {
      const keyed = node.properties.map(propName).filter((k) => k !== undefined && names.has(k));
      if (keyed.length >= 2) {
        at(node, `is a table keyed by postprocessors ${keyed.join(', ')} (ask the registry or a role)`);
        for (const p of node.properties) if (p.name) seen.add(p.name); // one line for the table
      }
    } else if (named(node)) {
      literals.push(node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  for (const node of literals)
    if (!seen.has(node))
      at(
        node,
        `writes the postprocessor name '${node.text}' (ask the registry: postprocessorNames(role), postprocessorFor())`,
      );
  return uses.sort((a, b) => a[0] - b[0]);
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const names = postprocessorNames();
  runNameCheck({
    root: ROOT,
    owners: [OWNER],
    usesOf: (file) => postprocessorNameUses(file, names),
    what: 'postprocessor name',
    fix: 'outside src/postprocess/: give the entry a role (src/postprocess/registry.ts) and ask it',
    ok: (n) =>
      `no postprocessor name compared or written outside src/postprocess/ (${n} files; names ${[...names].join(', ')})`,
  });
}
