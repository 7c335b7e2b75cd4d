/** The lint step that keeps backend names in the backend registry (scripts/check-backend-names.mjs). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/data.js';

const check = (...dirs: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-backend-names.mjs'), ...dirs], {
    cwd: ROOT,
    encoding: 'utf8',
  });

describe('check-backend-names', () => {
  it('passes on src/: no backend name is compared outside src/backends/ and src/tensorrt/', () => {
    const r = check();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/names onnxruntime, tensorrt\)/);
  });

  it('fails on each way of deciding by name, and lets messages, comments and registry lookups be', () => {
    const dir = mkdtempSync(join(tmpdir(), 'yqp-names-'));
    writeFileSync(
      join(dir, 'bad.ts'),
      [
        "export const a = (b: string) => b === 'tensorrt';",
        "export const c = (b: string) => { switch (b) { case 'onnxruntime': return 1; } return 0; };",
        "export const d = (b: string[]) => b.includes('tensorrt');",
        "export const e = ['onnxruntime', 'tensorrt'];",
        'export const f = { onnxruntime: 1, tensorrt: 2 };',
        "export const g = 'tensorrt_plan';",
        "export const h = { backend: 'onnxruntime' };",
        "export const i = 'model.plan';",
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'good.ts'),
      [
        "// compares nothing: 'tensorrt' === name in a comment",
        "export const m = 'build a TensorRT engine instead: yqp-trt build --backend tensorrt';",
        'export const n = (entry: { name: string }) => ({ backend: entry.name });',
        "export const o = { tensorrt: { workspaceMiB: 1 } }; // one backend's options, under its name",
        "export const p = 'model.onnx'; // every ONNX file's name, not only the embedded backend's",
      ].join('\n'),
    );
    const r = check(dir);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.slice(0, -1).map((l) => l.replace(/^.*?bad\.ts:/, ''))).toEqual([
      "1: compares the backend name 'tensorrt'",
      "2: switches on the backend name 'onnxruntime'",
      "3: looks up the backend name 'tensorrt'",
      "4: lists backends 'onnxruntime', 'tensorrt' (ask the registry)",
      '5: is a table keyed by backends onnxruntime, tensorrt (ask the registry)',
      "6: writes 'tensorrt_plan', a backend entry's field (ask the registry)",
      "7: sets backend to the name 'onnxruntime' (embeddedBackend(), resolveBackend())",
      "8: writes 'model.plan', a backend entry's field (ask the registry)",
    ]);
    expect(lines.at(-1)).toMatch(/^8 backend name uses outside src\/backends\/ and src\/tensorrt\//);
  });
});
