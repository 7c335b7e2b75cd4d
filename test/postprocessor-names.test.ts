/** The lint step that keeps postprocessor names in the postprocessor registry (scripts/check-postprocessor-names.mjs). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/data.js';

const check = (...dirs: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-postprocessor-names.mjs'), ...dirs], {
    cwd: ROOT,
    encoding: 'utf8',
  });

describe('check-postprocessor-names', () => {
  it('passes on src/: no postprocessor name is compared or written outside src/postprocess/', () => {
    const r = check();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/names blazeface, face-landmarks\)/);
  });

  it('fails on each way of deciding or writing by name, and lets messages, comments and role lookups be', () => {
    const dir = mkdtempSync(join(tmpdir(), 'yqp-post-names-'));
    writeFileSync(
      join(dir, 'bad.ts'),
      [
        "export const a = (p?: { type: string }) => p?.type === 'blazeface';",
        "export const b = (t: string) => { switch (t) { case 'face-landmarks': return 1; } return 0; };",
        "export const c = (t: Set<string>) => t.has('blazeface');",
        "export const d = { type: 'face-landmarks', landmarks: 'x', presence: 'y' };",
        "export interface E { type: 'blazeface' }",
        "export const f = { blazeface: 1, 'face-landmarks': 2 };",
        "export const g = 'face-landmarks';",
        "declare module './registry.js' { interface PostprocessorTypes { x: { spec: string; image: number } } }",
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'good.ts'),
      [
        "// compares nothing: 'blazeface' === type in a comment",
        "export const m = 'a detector with blazeface postprocessing (yqp-trt import face_detection.tflite)';",
        'export const n = (p: { type: string }, names: string[]) => names.includes(p.type);',
        "export const o = { preset: 'auto', metric: 'faces' }; // no postprocessor's name",
        'export const q = (entry: { faceDetector?: object }) => entry.faceDetector !== undefined;',
      ].join('\n'),
    );
    const r = check(dir);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.slice(0, -1).map((l) => l.replace(/^.*?bad\.ts:/, ''))).toEqual([
      "1: compares the postprocessor name 'blazeface' (ask an entry's role)",
      "2: switches on the postprocessor name 'face-landmarks' (ask an entry's role)",
      "3: looks up the postprocessor name 'blazeface' (ask an entry's role)",
      "4: writes a postprocessing spec of type 'face-landmarks' (build it in src/postprocess/)",
      "5: declares the postprocessor type 'blazeface' (in its src/postprocess/ file, by declaration merging)",
      '6: is a table keyed by postprocessors blazeface, face-landmarks (ask the registry or a role)',
      "7: writes the postprocessor name 'face-landmarks' (ask the registry: postprocessorNames(role), postprocessorFor())",
      '8: declares a postprocessor outside src/postprocess/ (PostprocessorTypes)',
    ]);
    expect(lines.at(-1)).toMatch(/^8 postprocessor name uses outside src\/postprocess\//);
  });
});
