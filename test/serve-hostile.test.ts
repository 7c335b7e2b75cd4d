/**
 * `yqp-trt serve` under hostile clients (issue #13), against a real server process on 127.0.0.1: every
 * finding of the probe is tried again and refused, while /v2/health/live keeps answering in time, the decoy
 * /dev/shm objects are never read nor changed, and the server's RSS stays within a stated bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/data.js';
import { tempRepo, writeBlazeFace, writeBroken, writeTiny } from './serve-fixtures.js';

const CLI = process.env.YQP_CLI ?? join(ROOT, 'dist', 'cli', 'main.js');
const shm = existsSync('/dev/shm') && process.platform === 'linux';
const MiB = 1024 * 1024;
/** The RSS the server may grow by over the whole suite (the probe saw 4.4 GB from one request). */
const RSS_BOUND_MIB = 640;
const INFLIGHT_CAP = 150 * MiB;
const MAX_REGIONS = 8;

let repo: string;
let child: ChildProcess;
let url: string;
let port: number;
let stderr = '';
let rssBefore = 0;
let rssPeak = 0;
let rssTimer: NodeJS.Timeout | undefined;
/**
 * The slowest /v2/health/live answer with no attack, measured the same way: the machine's own tail. On a
 * quiet machine it is a few ms; on a shared VM (load 19 on 2 cores while this was written) ~300 ms, which no
 * server can beat. "Within 250 ms" is asserted on top of it.
 */
let baselineMs = 0;
const LIVE_MS = 250;
/** Every response body the suite saw: the decoys' bytes must appear in none. */
const seen: Buffer[] = [];

const tag = `${process.pid}-${Date.now()}`;
const decoys = {
  /** Outside the key prefix. */
  outside: `/dev/shm/decoy-${tag}`,
  /** Under the prefix, but readable by others. */
  open: `/dev/shm/yqp-open-${tag}`,
  /** Under the prefix, a link to the first decoy. */
  link: `/dev/shm/yqp-link-${tag}`,
  /** Under the prefix, mode 600, another user's (as root only). */
  foreign: `/dev/shm/yqp-foreign-${tag}`,
};
const own = `/dev/shm/yqp-own-${tag}`;
const secret = randomBytes(4096);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function call(path: string, init: RequestInit = {}) {
  const res = await fetch(url + path, init);
  const body = Buffer.from(await res.arrayBuffer());
  seen.push(body);
  let json: Record<string, any> | undefined;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body, text: body.toString('utf8'), json };
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  call(path, {
    method: 'POST',
    body: Buffer.isBuffer(body) || typeof body === 'string' ? (body as string) : JSON.stringify(body),
    headers,
  });

/**
 * Runs `attack` while /v2/health/live is asked every 50 ms from another process (so this process's own work,
 * sending a 57 MiB body say, does not count); resolves with the attack's result and the slowest answer.
 */
async function whileLive<T>(attack: () => Promise<T>): Promise<{ result: T; slowestMs: number; ms: number }> {
  const probe = spawn(
    process.execPath,
    [
      '-e',
      `let slowest = 0, stop = false;
       process.stdin.on('data', () => (stop = true));
       (async () => {
         process.stdout.write('ready\\n');
         while (!stop) {
           const t = performance.now();
           const r = await fetch(${JSON.stringify(url)} + '/v2/health/live');
           await r.arrayBuffer();
           if (r.status !== 200) slowest = Infinity;
           slowest = Math.max(slowest, performance.now() - t);
           await new Promise((r) => setTimeout(r, 50));
         }
         process.stdout.write('slowest ' + slowest + '\\n', () => process.exit(0));
       })();`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  probe.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => {
    const check = () => (out.includes('ready') ? resolve() : setTimeout(check, 20));
    check();
  });
  // Let it answer a few before the attack.
  await new Promise((r) => setTimeout(r, 200));
  const t = performance.now();
  let result: T;
  try {
    result = await attack();
  } finally {
    probe.stdin!.write('stop\n');
  }
  const ms = performance.now() - t;
  await new Promise((r) => probe.once('exit', r));
  const m = /slowest ([0-9.]+|Infinity)/.exec(out);
  const slowestMs = m ? Number(m[1]) : Infinity;
  console.log(
    `attack answered in ${ms.toFixed(0)} ms; health/live slowest meanwhile ${slowestMs.toFixed(0)} ms`,
  );
  return { result, slowestMs, ms };
}

/** A raw socket to the server (for trickling and lying clients). */
function socket(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with the ms until the server closes `s`, or rejects after `withinMs`. */
function closedWithin(s: Socket, withinMs: number): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${withinMs} ms`)), withinMs);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(performance.now() - t);
    });
  });
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build:ts\` first`);
  repo = tempRepo('yqp-serve-hostile-');
  await writeBlazeFace(repo);
  await writeTiny(repo);
  writeBroken(repo);
  if (shm) {
    writeFileSync(decoys.outside, secret, { mode: 0o600 });
    writeFileSync(decoys.open, secret, { mode: 0o644 });
    chmodSync(decoys.open, 0o644);
    symlinkSync(decoys.outside, decoys.link);
    writeFileSync(decoys.foreign, secret, { mode: 0o600 });
    if (process.getuid?.() === 0) chownSync(decoys.foreign, 65534, 65534);
    writeFileSync(own, Buffer.alloc(4096), { mode: 0o600 });
  }
  child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
      '--no-warmup',
      '--shared-memory',
      'system',
      '--shared-memory-max-regions',
      String(MAX_REGIONS),
      '--max-inflight-body-bytes',
      String(INFLIGHT_CAP),
      '--headers-timeout-ms',
      '1000',
      '--request-timeout-ms',
      '3000',
      '--idle-timeout-ms',
      '3000',
      '--max-connections',
      '64',
    ],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(stderr);
      if (m && !url) {
        clearTimeout(timer);
        url = m[1];
        port = Number(m[2]);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${stderr}`)));
  });
  baselineMs = (await whileLive(() => new Promise((r) => setTimeout(r, 2000)))).slowestMs;
  console.log(`health/live slowest with no attack: ${baselineMs.toFixed(0)} ms`);
  rssBefore = rssMiB(child.pid!);
  rssPeak = rssBefore;
  rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(child.pid!))), 100);
}, 120_000);

afterAll(async () => {
  if (rssTimer) clearInterval(rssTimer);
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  for (const f of [...Object.values(decoys), own]) rmSync(f, { force: true });
  if (repo) rmSync(repo, { recursive: true, force: true });
});

describe.skipIf(!shm)(
  `shared memory serves only its owner's regions${shm ? '' : ' (skipped: no /dev/shm)'}`,
  () => {
    it('refuses keys outside the prefix, objects others may read and links', async () => {
      const tries = [
        { key: '/' + decoys.outside.split('/').pop(), why: /starting with "\/yqp"/ },
        { key: '/' + decoys.open.split('/').pop(), why: /mode 644/ },
        { key: '/' + decoys.link.split('/').pop(), why: /Unable to open shared memory key .*ELOOP/ },
      ];
      for (const { key, why } of tries) {
        const r = await post('/v2/systemsharedmemory/region/d/register', { key, byte_size: 4096 });
        expect(r.status, `${key}: ${r.text}`).toBeGreaterThanOrEqual(400);
        expect(r.status, `${key}: ${r.text}`).toBeLessThan(500);
        expect(r.json?.error).toMatch(why);
      }
      expect((await call('/v2/systemsharedmemory/status')).json).toEqual([]);
    });

    const root = process.getuid?.() === 0;
    it.skipIf(!root)(
      `refuses another user's mode-600 object under the prefix${root ? '' : ' (skipped: only root can make one for another user)'}`,
      async () => {
        const key = '/' + decoys.foreign.split('/').pop();
        const r = await post('/v2/systemsharedmemory/region/d/register', { key, byte_size: 4096 });
        expect(r.status, r.text).toBe(400);
        expect(r.json?.error).toMatch(/not owned by the server's user/);
      },
    );

    it('lists, serves and unregisters a region for the caller that registered it only', async () => {
      const key = '/' + own.split('/').pop();
      const alice = { authorization: 'Bearer alice' };
      const bob = { authorization: 'Bearer bob' };
      expect(
        (await post('/v2/systemsharedmemory/region/mine/register', { key, byte_size: 64 }, alice)).status,
      ).toBe(200);
      expect((await call('/v2/systemsharedmemory/status', { headers: alice })).json).toHaveLength(1);
      expect((await call('/v2/systemsharedmemory/status', { headers: bob })).json).toEqual([]);
      expect((await call('/v2/systemsharedmemory/status')).json).toEqual([]);
      const read = (headers: Record<string, string>) =>
        post(
          '/v2/models/tiny/infer',
          {
            inputs: [
              {
                name: 'x',
                datatype: 'FP32',
                shape: [1, 4],
                parameters: { shared_memory_region: 'mine', shared_memory_byte_size: 16 },
              },
            ],
          },
          headers,
        );
      expect((await read(alice)).status).toBe(200);
      const other = await read(bob);
      expect(other.status).toBe(404);
      // Bob's unregister-all leaves Alice's region.
      await post('/v2/systemsharedmemory/unregister', '', bob);
      expect((await call('/v2/systemsharedmemory/status', { headers: alice })).json).toHaveLength(1);
      expect((await post('/v2/systemsharedmemory/region/mine/unregister', '', alice)).status).toBe(200);
    });

    it('checks a read against the tensor before reading: a 2 GiB shared_memory_byte_size is a quick 400', async () => {
      const key = '/' + own.split('/').pop();
      expect(
        (await post('/v2/systemsharedmemory/region/big/register', { key, byte_size: 4096 })).status,
      ).toBe(200);
      const { result, slowestMs, ms } = await whileLive(() =>
        post('/v2/models/face/infer', {
          inputs: [
            {
              name: 'input:0',
              datatype: 'BYTES',
              shape: [1],
              parameters: { shared_memory_region: 'big', shared_memory_byte_size: 2147483647 },
            },
          ],
        }),
      );
      expect(result.status, result.text).toBe(400);
      expect(ms).toBeLessThan(3000);
      expect(slowestMs).toBeLessThan(LIVE_MS + baselineMs);
      const numeric = await post('/v2/models/tiny/infer', {
        inputs: [
          {
            name: 'x',
            datatype: 'FP32',
            shape: [1, 4],
            parameters: { shared_memory_region: 'big', shared_memory_byte_size: 2147483647 },
          },
        ],
      });
      expect(numeric.status).toBe(400);
      expect(numeric.json?.error).toMatch(/needs 16 bytes but shared_memory_byte_size is 2147483647/);
      await post('/v2/systemsharedmemory/region/big/unregister', '');
    });

    it(`caps registrations at ${MAX_REGIONS} (descriptors), and the server keeps serving`, async () => {
      const key = '/' + own.split('/').pop();
      for (let i = 0; i < MAX_REGIONS; i++)
        expect(
          (await post(`/v2/systemsharedmemory/region/r${i}/register`, { key, byte_size: 8 })).status,
        ).toBe(200);
      const over = await post('/v2/systemsharedmemory/region/over/register', { key, byte_size: 8 });
      expect(over.status).toBe(400);
      expect(over.json?.error).toMatch(/--shared-memory-max-regions/);
      expect((await post('/v2/repository/index', '')).status).toBe(200);
      expect((await post('/v2/systemsharedmemory/unregister', '')).status).toBe(200);
      expect((await call('/v2/systemsharedmemory/status')).json).toEqual([]);
    });
  },
);

describe('no single request stalls the others', () => {
  it('refuses 20M empty BYTES elements in JSON (57 MiB) with a 4xx within seconds, health answering meanwhile', async () => {
    const body = Buffer.from(
      `{"inputs":[{"name":"input:0","datatype":"BYTES","shape":[20000000],"data":[${'"",'.repeat(19_999_999)}""]}]}`,
    );
    const { result, slowestMs, ms } = await whileLive(() => post('/v2/models/face/infer', body));
    expect(result.status, result.text).toBeGreaterThanOrEqual(400);
    expect(result.status).toBeLessThan(500);
    expect(result.json?.error).toBeTypeOf('string');
    expect(ms).toBeLessThan(5000);
    expect(slowestMs).toBeLessThan(LIVE_MS + baselineMs);
  }, 30_000);

  it('refuses 20M [] in data, a 100k-deep nesting and huge shapes with 400', async () => {
    const empties = Buffer.from(
      `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,4],"data":[${'[],'.repeat(19_999_999)}[]]}]}`,
    );
    const { result, slowestMs } = await whileLive(() => post('/v2/models/tiny/infer', empties));
    expect(result.status, result.text).toBe(400);
    expect(slowestMs).toBeLessThan(LIVE_MS + baselineMs);
    const deep = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":${'['.repeat(100_000)}1${']'.repeat(100_000)}}]}`;
    const d = await post('/v2/models/tiny/infer', deep);
    expect(d.status, d.text).toBe(400);
    expect(d.json?.error).toMatch(/nests deeper/);
    const huge = await post('/v2/models/tiny/infer', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1e9, 4], data: [1, 2, 3, 4] }],
    });
    expect(huge.status).toBe(400);
    expect(huge.json?.error).toMatch(/fits no optimization profile/);
  }, 30_000);

  it('checks the batch before decoding: 8000 images in one binary BYTES request are a quick 400', async () => {
    // A valid 1x1 PNG (67 bytes): each would decode if the count were not checked first.
    const png = Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
      'base64',
    );
    const n = 8000;
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(png.length);
      parts.push(len, png);
    }
    const data = Buffer.concat(parts);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'input:0', datatype: 'BYTES', shape: [n], parameters: { binary_data_size: data.length } },
        ],
      }),
    );
    const { result, slowestMs, ms } = await whileLive(() =>
      post('/v2/models/face/infer', Buffer.concat([header, data]), {
        'Inference-Header-Content-Length': String(header.length),
      }),
    );
    expect(result.status, result.text).toBe(400);
    expect(result.json?.error).toMatch(/8000 images but the model takes at most 16/);
    expect(ms).toBeLessThan(3000);
    expect(slowestMs).toBeLessThan(LIVE_MS + baselineMs);
  });

  it(`caps the body bytes in flight at ${INFLIGHT_CAP / MiB} MiB: past it 503 + Retry-After`, async () => {
    // Uploads that declare 60 MiB and then hold: two fit under the cap, the third is turned away at once.
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const s = await socket();
        s.write(
          `POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ${60 * MiB}\r\nContent-Type: application/json\r\n\r\n{`,
        );
        held.push(s);
      }
      await new Promise((r) => setTimeout(r, 200));
      // The third sends its headers only: the answer comes before any body byte is taken.
      const third = await socket();
      held.push(third);
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        third.on('data', (d: Buffer) => {
          text += d.toString();
          if (/\r\n\r\n[\s\S]*\}/.test(text)) resolve(text);
        });
        third.write(
          `POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ${60 * MiB}\r\nContent-Type: application/json\r\n\r\n`,
        );
      });
      seen.push(Buffer.from(answer));
      expect(answer).toMatch(/^HTTP\/1\.1 503/);
      expect(answer).toMatch(/\r\nretry-after: 1\r\n/i);
      expect(answer).toMatch(/--max-inflight-body-bytes/);
    } finally {
      for (const s of held) s.destroy();
    }
    // Their share comes back once they are gone.
    await new Promise((r) => setTimeout(r, 200));
    const after = await post('/v2/models/tiny/infer', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    });
    expect(after.status).toBe(200);
  }, 30_000);
});

describe('timeouts and caps', () => {
  it('drops clients that trickle their headers or their body', async () => {
    const heads = await Promise.all(Array.from({ length: 10 }, () => socket()));
    const bodies = await Promise.all(Array.from({ length: 10 }, () => socket()));
    const timers: NodeJS.Timeout[] = [];
    for (const s of heads) {
      s.write('POST /v2/models/tiny/infer HTTP/1.1\r\n');
      timers.push(setInterval(() => s.writable && s.write('X'), 200));
    }
    for (const s of bodies) {
      s.write('POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n');
      timers.push(setInterval(() => s.writable && s.write(' '), 200));
    }
    try {
      // Headers within 1 s, the whole request within 3 s (the server's flags), checked every 250 ms.
      const headMs = await Promise.all(heads.map((s) => closedWithin(s, 5000)));
      const bodyMs = await Promise.all(bodies.map((s) => closedWithin(s, 8000)));
      expect(Math.max(...headMs)).toBeLessThan(5000);
      expect(Math.max(...bodyMs)).toBeLessThan(8000);
    } finally {
      for (const t of timers) clearInterval(t);
      for (const s of [...heads, ...bodies]) s.destroy();
    }
    expect((await call('/v2/health/live')).status).toBe(200);
  }, 20_000);

  it('clamps parameters.timeout: 3e12 microseconds runs instead of timing out at once', async () => {
    const r = await post('/v2/models/tiny/infer', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
      parameters: { timeout: 3e12 },
    });
    expect(r.status, r.text).toBe(200);
    expect(stderr).not.toMatch(/TimeoutOverflowWarning/);
  });

  it('holds at most --max-connections (64) connections', async () => {
    const sockets = await Promise.all(Array.from({ length: 80 }, () => socket()));
    const closed = new Set<Socket>();
    for (const s of sockets) {
      s.on('error', () => undefined);
      s.once('close', () => closed.add(s));
    }
    await new Promise((r) => setTimeout(r, 1000));
    // Those past the cap are closed at accept; the rest stay open (their idle timeout is 3 s).
    expect(closed.size).toBeGreaterThanOrEqual(16);
    expect(sockets.length - closed.size).toBeLessThanOrEqual(64);
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await call('/v2/health/live')).status).toBe(200);
  }, 20_000);
});

describe('no ghost state, 4xx for client errors, no server paths', () => {
  it('leaves nothing in the index or the metrics for unknown names', async () => {
    const before = (await call('/metrics')).text.length;
    for (let i = 0; i < 200; i++) {
      expect((await post(`/v2/repository/models/ghost-${i}/load`, '')).status).toBe(404);
      expect((await post(`/v2/models/ghost-${i}/infer`, { inputs: [] })).status).toBe(404);
    }
    const index = (await post('/v2/repository/index', '')).json as unknown as { name: string }[];
    expect(index.map((e) => e.name).sort()).toEqual(['broken', 'face', 'tiny']);
    const metrics = (await call('/metrics')).text;
    expect(metrics).not.toMatch(/ghost-/);
    // The unknown-model series is one, whatever the names (a few counters grew).
    expect(metrics.length).toBeLessThan(before + 4096);
  }, 60_000);

  it('answers malformed bodies, lying lengths and traversal with 4xx and Triton error JSON', async () => {
    const cases = [
      await post('/v2/models/tiny/infer', '{"inputs": ['),
      await post('/v2/models/tiny/infer', 'x'.repeat(10), { 'Inference-Header-Content-Length': '99' }),
      await post('/v2/models/tiny/infer', '{}', { 'Inference-Header-Content-Length': '-1' }),
      await post('/v2/repository/models/..%2F..%2Fetc/load', ''),
      await post('/v2/systemsharedmemory/region/r/register', { key: '/../etc/passwd', byte_size: 1 }),
      await post('/v2/models/tiny/infer', {
        inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 1e15 } }],
      }),
    ];
    for (const r of cases) {
      expect(r.status, r.text).toBeGreaterThanOrEqual(400);
      expect(r.status, r.text).toBeLessThan(500);
      expect(r.json?.error, r.text).toBeTypeOf('string');
    }
  });

  it('says why a model is not ready without the repository path', async () => {
    const r = await call('/v2/models/broken/ready');
    expect(r.status).toBe(400);
    const index = await post('/v2/repository/index', '');
    for (const text of [r.text, index.text]) {
      expect(text).not.toContain(repo);
      expect(text).not.toContain(ROOT);
    }
  });
});

describe('afterwards', () => {
  it.skipIf(!shm)('never showed nor changed the decoys', () => {
    for (const f of [decoys.outside, decoys.open, decoys.foreign])
      expect(readFileSync(f).equals(secret), f).toBe(true);
    // The oracle of the probe: the first 4 bytes as a length in an error message.
    const oracle = String(secret.readUInt32LE(0));
    const chunk = secret.subarray(0, 16);
    for (const body of seen) {
      expect(body.includes(chunk)).toBe(false);
      expect(body.toString('utf8').includes(`claims ${oracle} bytes`)).toBe(false);
    }
  });

  it(`kept the server's RSS within ${RSS_BOUND_MIB} MiB of its start`, () => {
    rssPeak = Math.max(rssPeak, rssMiB(child.pid!));
    // Said in the log so the bound can be checked against what it held.
    console.log(`RSS ${rssBefore.toFixed(0)} MiB at start, ${rssPeak.toFixed(0)} MiB at peak`);
    expect(rssPeak - rssBefore).toBeLessThan(RSS_BOUND_MIB);
  });
});
