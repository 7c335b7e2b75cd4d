import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BLAZEFACE_ONNX, MEDIA_DIR, ROOT, requireData } from './helpers/data.js';

const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const repo = mkdtempSync(join(tmpdir(), 'yqp-cli-'));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One line on stderr, no stack trace, a non-zero exit. */
function expectOneLineError(r: ReturnType<typeof cli>, pattern: RegExp, code = 2) {
  expect(r.code).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

const PROFILE = 'input:0=1x128x128x3,4x128x128x3,16x128x128x3';

describe('CLI', () => {
  beforeAll(() => {
    requireData();
    if (!existsSync(CLI))
      throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it in pretest)`);
    const r = cli(
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'face',
      '--repo',
      repo,
      '--dynamic-batch',
      '--profile',
      PROFILE,
      '--backend',
      'onnxruntime',
    );
    expect(r.stderr).toBe(r.code === 0 ? r.stderr : '');
    expect(r.code).toBe(0);
  });

  it('build says what it rewrote and proved', () => {
    const r = cli(
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'face2',
      '--repo',
      repo,
      '--dynamic-batch',
      '--profile',
      PROFILE,
      '--backend',
      'onnxruntime',
      '--json',
    );
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.config.maxBatchSize).toBe(16);
    expect(out.notes.join('\n')).toMatch(/4 Reshape targets, 11 ConstantOfShape shapes/);
    expect(out.notes.join('\n')).toMatch(/batch 16 equals 16 single runs/);
  });

  it('build --fp16 is refused without --device cuda: one line naming --fp16 and the CUDA provider, exit 2', () => {
    for (const device of [[], ['--device', 'cpu']]) {
      const r = cli('build', BLAZEFACE_ONNX, '--name', 'face16', '--repo', repo, '--fp16', ...device);
      expectOneLineError(
        r,
        /^yqp-trt build: --fp16 needs --device cuda: FP16 runs on onnxruntime's CUDA execution provider; pass --device cuda .*slower than FP32 or not at all$/,
        2,
      );
      expect(existsSync(join(repo, 'face16'))).toBe(false);
    }
    expectOneLineError(
      cli('build', BLAZEFACE_ONNX, '--name', 'face16', '--repo', repo, '--fp16', '--device', 'gpu'),
      /Expected 'cpu', 'cuda' or 'cuda:N' for --device but received "gpu" of type string/,
    );
  });

  it('build --fp16 --device cuda writes the FP16 model without a GPU', () => {
    const r = cli(
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'face16',
      '--repo',
      repo,
      '--dynamic-batch',
      '--profile',
      PROFILE,
      '--fp16',
      '--device',
      'cuda',
      '--json',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect([out.config.precision, out.config.device, out.config.backend]).toEqual([
      'fp16',
      'cuda',
      'onnxruntime',
    ]);
    expect(out.notes.join('\n')).toMatch(/fp16: 58 initializers and 11 constants to float16/);
  });

  it('infer prints faces in pixels of the original image, as text and JSON', () => {
    const img = join(MEDIA_DIR, 'franck_02159.jpg');
    const text = cli('infer', join(repo, 'face'), '--image', img);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/franck_02159\.jpg \(720x576\): 1 face\n\s+score 0\.\d+ box \[/);
    const json = JSON.parse(cli('infer', join(repo, 'face'), '--image', img, '--json').stdout);
    const face = json.images[0].faces[0];
    expect(face.box).toHaveLength(4);
    expect(face.keypoints).toHaveLength(6);
    expect(face.box[2]).toBeLessThanOrEqual(720);
  });

  describe('errors a user will make', () => {
    const bad = mkdtempSync(join(tmpdir(), 'yqp-bad-'));
    it('model file missing', () =>
      expectOneLineError(
        cli('build', join(bad, 'none.onnx'), '--name', 'x', '--repo', repo),
        /yqp-trt build: Model file .* does not exist/,
      ));
    it('model file not ONNX', () => {
      writeFileSync(join(bad, 'text.onnx'), 'hello\n'.repeat(50));
      expectOneLineError(
        cli('build', join(bad, 'text.onnx'), '--name', 'x', '--repo', repo),
        /not a valid ONNX model/,
      );
    });
    it('model file truncated', () => {
      writeFileSync(join(bad, 'cut.onnx'), readFileSync(BLAZEFACE_ONNX).subarray(0, 200_000));
      expectOneLineError(cli('build', join(bad, 'cut.onnx'), '--name', 'x', '--repo', repo), /truncated/);
    });
    it('profile min greater than max', () =>
      expectOneLineError(
        cli(
          'build',
          BLAZEFACE_ONNX,
          '--name',
          'x',
          '--repo',
          repo,
          '--dynamic-batch',
          '--profile',
          'input:0=8x128x128x3,8x128x128x3,4x128x128x3',
        ),
        /min 8x128x128x3 is greater than max 4x128x128x3/,
      ));
    it('profile for an unknown input', () =>
      expectOneLineError(
        cli(
          'build',
          BLAZEFACE_ONNX,
          '--name',
          'x',
          '--repo',
          repo,
          '--profile',
          'image=1x128x128x3,1x128x128x3,1x128x128x3',
        ),
        /unknown input "image"; the model's inputs are "input:0"/,
      ));
    it('profile of the wrong rank', () =>
      expectOneLineError(
        cli(
          'build',
          BLAZEFACE_ONNX,
          '--name',
          'x',
          '--repo',
          repo,
          '--profile',
          'input:0=1x128x128,1x128x128,1x128x128',
        ),
        /has rank 3, the input has rank 4/,
      ));
    it('repository entry missing', () =>
      expectOneLineError(
        cli('infer', join(repo, 'nothing'), '--image', 'a.jpg'),
        /Repository entry .* not found/,
      ));
    it('repository entry config invalid, naming the field', () => {
      const dir = join(repo, 'broken');
      mkdirSync(join(dir, '1'), { recursive: true });
      const config = JSON.parse(readFileSync(join(repo, 'face', 'config.json'), 'utf8'));
      config.preprocessing.layout = 'CHW';
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      expectOneLineError(
        cli('infer', dir, '--image', 'a.jpg'),
        /Invalid .*config\.json: preprocessing\.layout: expected one of NHWC, NCHW/,
      );
    });
    it('image missing', () =>
      expectOneLineError(
        cli('infer', join(repo, 'face'), '--image', join(bad, 'none.jpg')),
        /Image .* does not exist/,
      ));
    it('image not an image', () =>
      expectOneLineError(cli('infer', join(repo, 'face'), '--image', BLAZEFACE_ONNX), /cannot be decoded/));
    it('--verbose adds the stack', () => {
      const r = cli('infer', join(repo, 'face'), '--image', join(bad, 'none.jpg'), '--verbose');
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/\n\s+at /);
    });
    it('an unknown option is a usage error', () =>
      expectOneLineError(
        cli('build', BLAZEFACE_ONNX, '--nme', 'x'),
        /^yqp-trt: Unknown option --nme: did you mean --name\?$/,
      ));
  });

  it('doctor exits 0 where the embedded backend works and says what is missing', () => {
    const r = cli('doctor', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.embeddedBackendWorks).toBe(true);
    const names = report.checks.map((c: { name: string }) => c.name);
    expect(names).toContain('onnxruntime');
    expect(names).toContain('tensorrt backend');
    for (const c of report.checks) if (!c.ok) expect(c.solutions?.length ?? 0).toBeGreaterThan(0);
    // The runner loadModel will use, proven on the test model (native wherever the addon is built).
    const addonBuilt = existsSync(join(ROOT, 'build', 'Release', 'yqp_trt.node'));
    expect(report.onnxruntime.runner.name).toBe(addonBuilt ? 'native' : 'worker');
    const runner = report.checks.find((c: { name: string }) => c.name === 'onnxruntime runner');
    expect(runner.detail).toMatch(addonBuilt ? /^native: .*ran the test model/ : /^worker threads/);
  });
});
