// What the name checks (check-backend-names.mjs, check-postprocessor-names.mjs) share: the TypeScript files of a
// folder, parsed with the compiler's own parser, and the two node tests both ask.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
