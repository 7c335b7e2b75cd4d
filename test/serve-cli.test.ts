import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/data.js';
import { tempRepo, writeBlazeFace, writeTiny } from './serve-fixtures.js';

// YQP_CLI: run another build of the CLI (a scratch build while dist/ is being rebuilt by others).
const CLI = process.env.YQP_CLI ?? join(ROOT, 'dist', 'cli', 'main.js');
let repo: string;

/** Starts `yqp-trt serve` on a free port and resolves with its URL once it listens. */
function startServer(args: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--model-repository', repo, '--port', '0', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], stderr: () => err });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited ${code}: ${err}`));
    });
  });
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build:ts\` first`);
  repo = tempRepo('yqp-serve-cli-');
  await writeBlazeFace(repo);
  await writeTiny(repo);
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe('yqp-trt serve (the real CLI)', () => {
  it('drains on SIGTERM: every request already sent is answered, then it exits 0', async () => {
    const { child, url, stderr } = await startServer([
      '--contexts',
      '1',
      '--threads-per-context',
      '1',
      '--no-dynamic-batching',
    ]);
    const data = Buffer.from(new Float32Array(16 * 128 * 128 * 3).fill(0.25).buffer);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'input:0',
            datatype: 'FP32',
            shape: [16, 128, 128, 3],
            parameters: { binary_data_size: data.length },
          },
        ],
        outputs: [{ name: 'Identity:0', parameters: { binary_data: false } }],
      }),
    );
    const body = Buffer.concat([header, data]);
    const sent = 32;
    let answered = 0;
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const answers = Array.from({ length: sent }, () =>
      fetch(`${url}/v2/models/face/infer`, {
        method: 'POST',
        body,
        headers: { 'Inference-Header-Content-Length': String(header.length) },
      }).then(async (res) => {
        const answer = {
          status: res.status,
          body: (await res.json()) as { outputs?: { shape: number[] }[] },
        };
        answered++;
        return answer;
      }),
    );
    // Let the requests arrive (several are queued behind one context), then ask it to stop.
    await new Promise((r) => setTimeout(r, 300));
    const answeredBeforeSignal = answered;
    child.kill('SIGTERM');
    const results = await Promise.all(answers);
    expect(results.map((r) => r.status)).toEqual(new Array(sent).fill(200));
    for (const r of results) expect(r.body.outputs![0].shape).toEqual([16, 512, 1]);
    expect(await exited).toBe(0);
    // The signal came while requests were still queued or running: the drain is what answered them.
    expect(answeredBeforeSignal).toBeLessThan(sent);
    expect(stderr()).toMatch(/SIGTERM: draining/);
    // Nothing listens any more.
    await expect(fetch(`${url}/v2/health/live`)).rejects.toThrow();
  });

  it('refuses a missing repository with one line and a usage exit code', () => {
    const r = spawnSync(process.execPath, [CLI, 'serve', '--model-repository', join(repo, 'absent')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^yqp-trt serve: Model repository ".*absent" does not exist/);
  });

  it('runs as an executable through its shebang, which sizes the V8 heap for serving', () => {
    expect(readFileSync(CLI, 'utf8').split('\n')[0]).toBe(
      '#!/usr/bin/env -S node --initial-old-space-size=128',
    );
    // As npm links a bin: started as an executable, the shebang line must start it.
    const r = spawnSync(CLI, ['--version'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('yqp-trt bench (the real CLI)', () => {
  it('sweeps concurrency over HTTP binary and writes JSON and an SVG plot', async () => {
    const { child, url } = await startServer(['--load-model', 'tiny']);
    try {
      const json = join(repo, 'bench.json');
      const svg = join(repo, 'bench.svg');
      const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const b = spawn(process.execPath, [
          CLI,
          'bench',
          url,
          '--model',
          'tiny',
          '--concurrency',
          '1',
          '4',
          '--duration',
          '0.5',
          '--warmup',
          '0.1',
          '--json',
          json,
          '--plot',
          svg,
        ]);
        let out = '';
        let err = '';
        b.stdout.on('data', (d: Buffer) => (out += d.toString()));
        b.stderr.on('data', (d: Buffer) => (err += d.toString()));
        b.on('exit', (code) => resolve({ code, out, err }));
      });
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/concurrency {3}4: +[0-9.]+ infer\/s {2}p50/);
      const report = JSON.parse(readFileSync(json, 'utf8'));
      expect(report.mode).toBe('http-binary');
      expect(report.points.map((p: { concurrency: number }) => p.concurrency)).toEqual([1, 4]);
      for (const p of report.points) {
        expect(p.requests).toBeGreaterThan(0);
        expect(p.errors).toBe(0);
        expect(p.latencyMs.p99).toBeGreaterThanOrEqual(p.latencyMs.p50);
      }
      const plot = readFileSync(svg, 'utf8');
      expect(plot.startsWith('<svg')).toBe(true);
      expect(plot.match(/<polyline/g)).toHaveLength(2);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
