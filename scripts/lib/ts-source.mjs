// What the name checks (check-backend-names.mjs, check-postprocessor-names.mjs) share: the TypeScript files of a
// folder, parsed with the compiler's own parser, and the two node tests both ask.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path, { join } from 'node:path';
import ts from 'typescript';

export { ts };

/** The .ts files below dir (declaration files left out). */
export function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

export const parse = (file) =>
  ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
/** A string literal or a template without substitutions. */
export const isText = (n) => ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n);
/** A property's name when it is an identifier or a string. */
export const propName = (p) => (p.name && (ts.isIdentifier(p.name) || isText(p.name)) ? p.name.text : undefined);

/**
 * A name check's command line: scans `dirs` (default src) outside `owners`, prints each use `usesOf(file)` finds as
 * `file:line: what`, and exits 1 with `fix` when there is any; else prints `ok(count of files)`.
 */
export function runNameCheck({ root, owners, usesOf, what, fix, ok }) {
  const { relative, resolve, sep } = path;
  const dirs = (process.argv.length > 2 ? process.argv.slice(2) : ['src']).map((d) => resolve(root, d));
  const scanned = dirs.flatMap(files).filter((f) => !owners.some((o) => f === o || f.startsWith(o + sep)));
  let count = 0;
  for (const file of scanned)
    for (const [line, use] of usesOf(file)) {
      console.error(`${relative(root, file)}:${line}: ${use}`);
      count++;
    }
  if (count > 0) {
    console.error(`${count} ${what} use${count > 1 ? 's' : ''} ${fix}`);
    process.exit(1);
  }
  console.log(ok(scanned.length));
}
