import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
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

/** A binary infer request of 16 BlazeFace frames (slow enough to queue behind one context), JSON scores back. */
function faceBatchRequest(): { header: Buffer; body: Buffer } {
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
  return { header, body: Buffer.concat([header, data]) };
}

type Answer = { status: number; text: string };

/**
 * Sends rounds of batch-16 face requests, each over its own connection, until one round is caught with requests
 * still queued or running once the server holds all of them (its in-flight gauge plus the answers so far reach the
 * round's size). A fast machine can answer a whole round before that moment, which would test no drain: the next
 * round is twice as large. Resolves with that round's answers, how many were pending, and the round's size; the
 * caller signals at once.
 */
async function floodUntilQueued(
  url: string,
): Promise<{ answers: Promise<Answer>[]; pending: number; sent: number }> {
  const { header, body } = faceBatchRequest();
  const inFlight = async () =>
    Number(
      /^yqp_inflight_requests\{model="face"\} (\S+)$/m.exec(
        await (await fetch(`${url}/metrics`)).text(),
      )?.[1] ?? 0,
    );
  for (let sent = 32; ; sent *= 2) {
    let answered = 0;
    const answers = Array.from(
      { length: sent },
      () =>
        new Promise<Answer>((resolve, reject) => {
          const req = httpRequest(
            `${url}/v2/models/face/infer`,
            {
              method: 'POST',
              agent: false,
              headers: { 'Inference-Header-Content-Length': String(header.length) },
            },
            (res) => {
              let text = '';
              res.on('data', (d: Buffer) => (text += d.toString()));
              res.on('end', () => {
                answered++;
                resolve({ status: res.statusCode ?? 0, text });
              });
            },
          );
          req.on('error', reject);
          req.end(body);
        }),
    );
    // The gauge drops before a response is written, so `before + pending` never counts a request twice.
    for (;;) {
      const before = answered;
      const pending = await inFlight();
      if (pending > 0 && before + pending >= sent) return { answers, pending, sent };
      if (before === sent) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    for (const r of await Promise.all(answers)) expect(r.status, r.text).toBe(200);
    if (sent >= 256)
      throw new Error(`every round of up to ${sent} requests was answered before it was all received`);
  }
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
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    // Several requests are queued behind one context when the signal comes: the drain is what answers them.
    const { answers, pending, sent } = await floodUntilQueued(url);
    child.kill('SIGTERM');
    const results = await Promise.all(answers);
    expect(pending).toBeGreaterThan(0);
    expect(results.map((r) => r.status)).toEqual(new Array(sent).fill(200));
    for (const r of results) expect(JSON.parse(r.text).outputs[0].shape).toEqual([16, 512, 1]);
    expect(await exited).toBe(0);
    expect(stderr()).toMatch(/SIGTERM: draining/);
    // Every batch size ran on the context before the model was ready, and the log says so.
    expect(stderr()).toMatch(/model face: warmed up batch 16\.\.1 on 1 context \(16 runs, \d+ ms\)/);
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

/** One request on a connection of its own: behind several server processes, each new one reaches the next. */
function fresh(
  url: string,
  path: string,
  method = 'GET',
  body?: Buffer,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const tinyBody = (values: number[]) =>
  Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: values }] }));

/** Requests each server process answered (yqp_http_worker_requests_total), by worker index. */
async function perWorker(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return new Map(
    [...text.matchAll(/^yqp_http_worker_requests_total\{worker="(\d+)"\} (\S+)$/gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]),
  );
}

describe('yqp-trt serve --http-workers (several server processes behind one port)', () => {
  it('spreads connections over the processes and sums their metrics and statistics', async () => {
    const { child, url, stderr } = await startServer(['--http-workers', '2', '--load-model', 'tiny']);
    try {
      expect(stderr()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(2 HTTP worker processes\)/);
      expect(stderr()).toMatch(
        /HTTP worker 0: model tiny: warmed up batch 8\.\.1 on 1 context \(8 runs, \d+ ms\)/,
      );
      const workers = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n');
      expect(workers).toHaveLength(2);
      const sent = 12;
      for (let i = 0; i < sent; i++) {
        const r = await fresh(url, '/v2/models/tiny/infer', 'POST', tinyBody([i, 1, 2, 3]));
        expect(r.status, r.text).toBe(200);
        expect(JSON.parse(r.text).outputs[0].data).toEqual([2 * i, 2, 4, 6]);
      }
      const shares = await perWorker(url);
      expect([...shares.keys()].sort()).toEqual(['0', '1']);
      expect([...shares.values()].every((n) => n > 0)).toBe(true);
      expect([...shares.values()].reduce((a, b) => a + b, 0)).toBe(sent);
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toMatch(
        new RegExp(`^yqp_inference_requests_total\\{model="tiny",outcome="success"\\} ${sent}$`, 'm'),
      );
      // Ready in every process: the minimum, not the sum.
      expect(text).toMatch(/^yqp_model_ready\{model="tiny",version="1"\} 1$/m);
      const stats = (await (await fetch(`${url}/v2/models/tiny/stats`)).json()) as {
        model_stats: { inference_count: number; inference_stats: { success: { count: number } } }[];
      };
      expect(stats.model_stats).toHaveLength(1);
      expect(stats.model_stats[0].inference_count).toBe(sent);
      expect(stats.model_stats[0].inference_stats.success.count).toBe(sent);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('applies load, unload and shared-memory registration in every process, and replays them into a replacement', async () => {
    const { child, url, stderr } = await startServer([
      '--http-workers',
      '2',
      '--load-model',
      'tiny',
      '--shared-memory',
      'system',
    ]);
    const key = `yqp-cluster-test-${process.pid}`;
    writeFileSync(join('/dev/shm', key), Buffer.alloc(64), { mode: 0o600 });
    try {
      const readyEverywhere = async (model: string) => {
        const statuses = new Set<number>();
        for (let i = 0; i < 6; i++) statuses.add((await fresh(url, `/v2/models/${model}/ready`)).status);
        return [...statuses];
      };
      // Not loaded anywhere yet: unknown to every process (Triton: 404).
      expect(await readyEverywhere('face')).toEqual([404]);
      expect((await fresh(url, '/v2/repository/models/face/load', 'POST')).status).toBe(200);
      expect(await readyEverywhere('face')).toEqual([200]);
      const reg = await fresh(
        url,
        '/v2/systemsharedmemory/region/r0/register',
        'POST',
        Buffer.from(JSON.stringify({ key: `/${key}`, offset: 0, byte_size: 64 })),
      );
      expect(reg.status, reg.text).toBe(200);
      for (let i = 0; i < 4; i++)
        expect(JSON.parse((await fresh(url, '/v2/systemsharedmemory/status')).text)).toEqual([
          { name: 'r0', key: `/${key}`, offset: 0, byte_size: 64 },
        ]);
      // A bad registration fails the same way wherever it lands, with Triton's error JSON.
      const bad = await fresh(
        url,
        '/v2/systemsharedmemory/region/r1/register',
        'POST',
        Buffer.from('{"key":"/yqp-nope-absent","byte_size":4}'),
      );
      expect(bad.status).toBe(404);
      expect(JSON.parse(bad.text).error).toMatch(/Unable to open shared memory key/);

      // A process that dies is replaced, and the replacement holds what the clients changed.
      const victim = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n')[0];
      process.kill(Number(victim), 'SIGKILL');
      const deadline = Date.now() + 60_000;
      while (!/is serving again/.test(stderr()) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(stderr()).toMatch(/HTTP worker \d exited \(signal SIGKILL\); starting a new one/);
      expect(stderr()).toMatch(/HTTP worker \d \(pid \d+\) is serving again/);
      expect(await readyEverywhere('face')).toEqual([200]);
      for (let i = 0; i < 4; i++)
        expect(JSON.parse((await fresh(url, '/v2/systemsharedmemory/status')).text)).toHaveLength(1);

      expect((await fresh(url, '/v2/repository/models/face/unload', 'POST')).status).toBe(200);
      expect(await readyEverywhere('face')).toEqual([400]);
      expect((await fresh(url, '/v2/systemsharedmemory/unregister', 'POST')).status).toBe(200);
      for (let i = 0; i < 4; i++)
        expect(JSON.parse((await fresh(url, '/v2/systemsharedmemory/status')).text)).toEqual([]);
    } finally {
      child.kill('SIGTERM');
      rmSync(join('/dev/shm', key), { force: true });
    }
  });

  it('drains every process on SIGTERM: each request received is answered, then it exits 0', async () => {
    const { child, url, stderr } = await startServer([
      '--http-workers',
      '2',
      '--load-model',
      'face',
      '--contexts',
      '1',
      '--threads-per-context',
      '1',
      '--no-dynamic-batching',
    ]);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      // Every request reaches a process and queues behind its one context; then the signal.
      const { answers, pending } = await floodUntilQueued(url);
      child.kill('SIGTERM');
      const results = await Promise.all(answers);
      expect(pending).toBeGreaterThan(0);
      for (const r of results) {
        expect(r.status, r.text).toBe(200);
        expect(JSON.parse(r.text).outputs[0].shape).toEqual([16, 512, 1]);
      }
      expect(await exited).toBe(0);
      expect(stderr()).toMatch(/SIGTERM: draining 2 HTTP workers/);
      expect(stderr()).toMatch(/drained, exiting/);
      expect(spawnSync('pgrep', ['-P', String(child.pid)]).status).toBe(1);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('leaves no process behind when the primary is killed: the workers drain and exit', async () => {
    const { child } = await startServer(['--http-workers', '2', '--load-model', 'tiny']);
    const workers = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .map(Number);
    expect(workers).toHaveLength(2);
    child.kill('SIGKILL');
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 30_000;
    while (workers.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(workers.filter(alive)).toEqual([]);
  });

  it('refuses a bad --http-workers with one line and a usage exit code', () => {
    const r = spawnSync(process.execPath, [CLI, 'serve', '--model-repository', repo, '--http-workers', '0'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Expected positive integer for --http-workers but received 0/);
  });
});
