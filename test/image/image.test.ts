/**
 * npm run test:image: builds the OCI image (npm run image), starts it with podman as Kubernetes would (read-only
 * root, no capabilities, the repository mounted read-only at /mnt/models, the image's own user and command),
 * and checks health, inference (numbers and a JPEG through sharp, against the same model in this process),
 * /metrics, and the SIGTERM drain (every request answered, exit 0). Opt-in: it needs podman and mmdebstrap.
 */
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model.js';
import { encodeBytesElements, parseInferResponse } from '../../src/serve/protocol.js';
import { MEDIA_DIR } from '../helpers/data.js';
import { tempRepo, writeBlazeFace, writeTiny } from '../serve-fixtures.js';
import { buildImage, podman, podmanLogs, requireTools, runtimeArgs } from './podman.js';

const FRANCK = join(MEDIA_DIR, 'franck_02159.jpg');
// The image's size, stated in docs/deploy.md: 199 MB measured (Debian's node and its libraries 112 MB, the
// package and its production dependencies 87 MB). The bound leaves room for dependency updates, not for a
// second copy of anything.
const MAX_IMAGE_BYTES = 240e6;
const CUDA = process.env.YQP_IMAGE_CUDA !== '0';

let tags: string[];
let repo: string;
const name = `yqp-image-test-${process.pid}`;
let url: string;

async function post(path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const r = await fetch(url + path, { method: 'POST', body, headers });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

/** node:http on a given agent, so the test knows which connection carries which request. */
function request(
  agent: http.Agent,
  method: string,
  path: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const r = http.request(url + path, { method, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

function faceRequest(jpeg: Buffer): { body: Buffer; headers: Record<string, string> } {
  const data = encodeBytesElements([jpeg]);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: 'input:0', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: data.length } },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  return {
    body: Buffer.concat([header, data]),
    headers: { 'Inference-Header-Content-Length': String(header.length) },
  };
}

async function waitReady(timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await fetch(url + '/v2/health/ready').catch(() => undefined);
    if (r?.status === 200) return;
    if (Date.now() > end)
      throw new Error(`not ready after ${timeoutMs} ms: ${await podmanLogs(name).catch((e) => e.message)}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

beforeAll(async () => {
  requireTools();
  tags = await buildImage(CUDA);
  repo = tempRepo('yqp-image-');
  await writeTiny(repo);
  await writeBlazeFace(repo);
  // The server's user (uid 10001) reads the repository; mkdtemp made it 0700.
  chmodSync(repo, 0o755);
  await podman('rm', '-f', name).catch(() => undefined);
  await podman(
    'run',
    '-d',
    '--name',
    name,
    ...runtimeArgs(),
    '--read-only',
    '--tmpfs',
    '/tmp',
    '--cap-drop',
    'all',
    '--security-opt',
    'no-new-privileges',
    '-p',
    '127.0.0.1::8080',
    '-v',
    `${repo}:/mnt/models:ro`,
    tags[0],
  );
  url = `http://${await podman('port', name, '8080/tcp')}`;
  await waitReady(90_000);
}, 900_000);

afterAll(async () => {
  await podman('rm', '-f', name).catch(() => undefined);
  if (repo) rmSync(repo, { recursive: true, force: true });
});

describe('the image', () => {
  it('is small, made of Debian packages, and runs yqp-trt serve as a non-root user', async () => {
    const [size, user, entrypoint, cmd] = (
      await podman(
        'image',
        'inspect',
        '--format',
        '{{.Size}}|{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}',
        tags[0],
      )
    ).split('|');
    console.log(`image ${tags[0]}: ${(Number(size) / 1e6).toFixed(0)} MB`);
    expect(Number(size)).toBeLessThan(MAX_IMAGE_BYTES);
    expect(user).toBe('10001:10001');
    expect(JSON.parse(entrypoint)).toEqual([
      '/usr/bin/node',
      '--initial-old-space-size=128',
      '/opt/yqp-trt/dist/cli/main.js',
      'serve',
    ]);
    expect(JSON.parse(cmd)).toEqual([
      '--model-repository',
      '/mnt/models',
      '--host',
      '0.0.0.0',
      '--port',
      '8080',
    ]);
    const inside = JSON.parse(
      await podman(
        'exec',
        name,
        '/usr/bin/node',
        '-e',
        `const fs = require('fs');
         const status = fs.readFileSync('/var/lib/dpkg/status', 'utf8');
         console.log(JSON.stringify({ uid: process.getuid(), node: process.version,
           nodejs: /Package: nodejs\\nStatus: [^\\n]+\\nVersion: ([^\\n]+)/.exec(status)?.[1],
           packages: status.match(/^Package: /gm).length,
           addon: fs.existsSync('/opt/yqp-trt/build/Release/yqp_trt.node'),
           ort: fs.existsSync('/opt/yqp-trt/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1'),
           otherPlatforms: fs.readdirSync('/opt/yqp-trt/node_modules/onnxruntime-node/bin/napi-v6'),
           docs: fs.readdirSync('/usr/share').filter((d) => ['man', 'locale', 'info'].includes(d)) }));`,
      ),
    );
    expect(inside.uid).toBe(10001);
    // package.json engines: node >= 20.19.0, from Debian's nodejs package.
    const [major, minor] = inside.node.slice(1).split('.').map(Number);
    expect(major > 20 || (major === 20 && minor >= 19)).toBe(true);
    expect(inside.nodejs).toMatch(/^20\.19\./);
    expect(inside.packages).toBeGreaterThan(10);
    expect(inside).toMatchObject({ addon: true, ort: true, otherPlatforms: ['linux'], docs: [] });
  });

  it('answers inference as the same model does in process: numbers, and a JPEG decoded by sharp inside', async () => {
    const tiny = await post(
      '/v2/models/tiny/infer',
      JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, -1, 0.5, 7, 9] }],
      }),
    );
    expect(tiny.status).toBe(200);
    expect(JSON.parse(tiny.body.toString()).outputs[0].data).toEqual([2, 4, 6, 8, -2, 1, 14, 18]);

    const jpeg = readFileSync(FRANCK);
    const req = faceRequest(jpeg);
    const r = await post('/v2/models/face/infer', req.body, req.headers);
    expect(r.status).toBe(200);
    const served = parseInferResponse(
      r.body,
      Number(r.headers.get('inference-header-content-length')),
    ).outputs;
    const model = await loadModel(join(repo, 'face'), { warmup: false });
    try {
      const local = (await model.inferImages([jpeg])).outputs;
      expect(Object.keys(served).sort()).toEqual(Object.keys(local).sort());
      let maxDiff = 0;
      for (const k of Object.keys(local)) {
        const a = local[k].data as Float32Array;
        const b = served[k].data as Float32Array;
        expect(b.length).toBe(a.length);
        for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      }
      console.log(`face outputs, container against in process: max abs diff ${maxDiff}`);
      expect(maxDiff).toBeLessThan(1e-5);
    } finally {
      await model.close();
    }
  });

  it('serves /metrics with the requests just made', async () => {
    const text = await (await fetch(url + '/metrics')).text();
    expect(text).toMatch(/^yqp_inference_requests_total\{model="tiny",outcome="success"\} 1$/m);
    expect(text).toMatch(/^yqp_inference_requests_total\{model="face",outcome="success"\} 1$/m);
    expect(text).toMatch(/^yqp_model_ready\{model="face",version="1"\} 1$/m);
    expect(text).toMatch(/^yqp_inflight_requests\{model="face"\} 0$/m);
  });

  it('drains on SIGTERM: every request already sent is answered, then exit 0', async () => {
    const req = faceRequest(readFileSync(FRANCK));
    const n = 16;
    // One request per connection, each connection accepted before the signal: "sent" means the server has it.
    // (A connection still in the kernel's accept queue when the port closes is reset; in Kubernetes the preStop
    // wait keeps new connections away before SIGTERM, docs/deploy.md.)
    const agent = new http.Agent({ keepAlive: true, maxSockets: n });
    const warm = await Promise.all(Array.from({ length: n }, () => request(agent, 'GET', '/v2/health/live')));
    expect(warm.map((w) => w.status)).toEqual(Array(n).fill(200));
    let signalledAt = 0;
    const done: { status: number; at: number }[] = [];
    let first!: () => void;
    const firstAnswer = new Promise<void>((res) => (first = res));
    const sends = Array.from({ length: n }, () =>
      request(agent, 'POST', '/v2/models/face/infer', req.body, req.headers).then((r) => {
        done.push({ status: r.status, at: Date.now() });
        first();
      }),
    );
    await firstAnswer;
    signalledAt = Date.now();
    await podman('kill', '--signal', 'SIGTERM', name);
    await Promise.all(sends);
    const code = await podman('wait', name);
    const exitedAt = Date.now();
    const logs = await podmanLogs(name);
    const afterSignal = done.filter((d) => d.at > signalledAt).length;
    console.log(
      `drain: ${afterSignal} of ${n} requests answered after SIGTERM, exit ${code} ${exitedAt - signalledAt} ms after it`,
    );
    expect(done.map((d) => d.status)).toEqual(Array(n).fill(200));
    // Without requests still running at the signal this would not test the drain.
    expect(afterSignal).toBeGreaterThan(0);
    expect(code).toBe('0');
    expect(logs).toMatch(/SIGTERM: draining[\s\S]*drained, exiting/);
    agent.destroy();
  });
});

describe('the CUDA variant', () => {
  it.skipIf(!CUDA)(
    'adds onnxruntime GPU core and providers, checksums intact (YQP_IMAGE_CUDA=0 skips)',
    async () => {
      const tag = tags[1];
      expect(tag).toMatch(/-cuda$/);
      const [size, env] = (
        await podman('image', 'inspect', '--format', '{{.Size}}|{{json .Config.Env}}', tag)
      ).split('|');
      console.log(`image ${tag}: ${(Number(size) / 1e6).toFixed(0)} MB`);
      expect(JSON.parse(env)).toContain('YQP_ORT_GPU_DIR=/opt/yqp-trt/ort-gpu');
      // The CPU image plus the GPU libraries (ONNX Runtime 1.29.0's core, 28 MB, and its CUDA provider, 230 MB).
      expect(Number(size)).toBeLessThan(MAX_IMAGE_BYTES + 330e6);
      const check = await podman(
        'run',
        '--rm',
        ...runtimeArgs(),
        '--read-only',
        '--entrypoint',
        '/usr/bin/node',
        tag,
        '-e',
        `const fs = require('fs'), c = require('crypto'), d = process.env.YQP_ORT_GPU_DIR;
       const bad = fs.readFileSync(d + '/SHA256SUMS', 'utf8').trim().split('\\n').map((l) => l.split(/\\s+/))
         .filter(([h, f]) => c.createHash('sha256').update(fs.readFileSync(d + '/' + f)).digest('hex') !== h);
       console.log(JSON.stringify({ files: fs.readdirSync(d).sort(), bad, uid: process.getuid() }));`,
      );
      expect(JSON.parse(check)).toEqual({
        files: [
          'LICENSE',
          'SHA256SUMS',
          'VERSION',
          'libonnxruntime.so',
          'libonnxruntime_providers_cuda.so',
          'libonnxruntime_providers_shared.so',
          'libonnxruntime_providers_tensorrt.so',
        ],
        bad: [],
        uid: 10001,
      });
    },
  );
});
