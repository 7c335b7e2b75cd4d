// The HTTP server in process: health and model endpoints, inference, the repository extension, limits and
// overload (shared memory, metrics and statistics: serve-extensions.test.ts; the server: helpers/serve-http.ts).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { decodeBlazeFace } from '../src/postprocess/blazeface.js';
import { preprocessImages } from '../src/preprocess/cpu.js';
import { encodeInferRequest, parseInferResponse } from '../src/serve/client-codec.js';
import { encodeBytesElements } from '../src/serve/tensor-codec.js';
import { InferenceServer } from '../src/serve/server.js';
import { shareOptions } from '../src/serve/model-manager.js';
import { MEDIA_DIR } from './helpers/data.js';
import {
  binaryFaceRequest,
  call,
  faceTensor,
  post,
  repo,
  server,
  tinyInfer,
  url,
  useServer,
} from './helpers/serve-http.js';
import { tempRepo, tinyConfig, writeTiny } from './serve-fixtures.js';

const FRANCK = join(MEDIA_DIR, 'franck_02159.jpg');
const hasCurl = existsSync('/usr/bin/curl') || existsSync('/bin/curl');
const run = promisify(execFile);

useServer();

describe('server, health and model endpoints', () => {
  it('binds 127.0.0.1 by default and reports the server metadata', async () => {
    expect((server.app.server.address() as AddressInfo).address).toBe('127.0.0.1');
    const r = await call('/v2');
    expect(r.status).toBe(200);
    expect(r.json.name).toBe('yqp-trt');
    expect(r.json.extensions).toEqual(
      expect.arrayContaining([
        'binary_tensor_data',
        'system_shared_memory',
        'cuda_shared_memory',
        'model_repository',
      ]),
    );
  });

  it('answers live and ready', async () => {
    expect((await call('/v2/health/live')).status).toBe(200);
    expect((await call('/v2/health/ready')).status).toBe(200);
  });

  it('gives model metadata by name and by version, 404 for unknown ones', async () => {
    const r = await call('/v2/models/face');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ name: 'face', versions: ['1'], platform: 'onnxruntime_onnx' });
    expect(r.json.inputs).toEqual([{ name: 'input:0', datatype: 'FP32', shape: [-1, 128, 128, 3] }]);
    expect(r.json.outputs.map((o: { name: string }) => o.name)).toEqual([
      'Identity:0',
      'Identity_1:0',
      'Identity_2:0',
      'Identity_3:0',
    ]);
    expect((await call('/v2/models/face/versions/1')).json.name).toBe('face');
    const unknown = await call('/v2/models/nope');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/Unknown model: "nope"/);
    const version = await call('/v2/models/face/versions/7');
    expect(version.status).toBe(404);
    expect(version.json.error).toMatch(/no version "7"/);
    expect((await call('/v2/models/face/config')).json.max_batch_size).toBe(16);
  });

  it('says which models are ready: a broken one is not, and does not stop the others', async () => {
    expect((await call('/v2/models/face/ready')).status).toBe(200);
    expect((await call('/v2/models/face/versions/1/ready')).status).toBe(200);
    const broken = await call('/v2/models/broken/ready');
    expect(broken.status).toBe(400);
    expect(broken.json.error).toMatch(/not ready.*onnxruntime cannot load/);
    expect((await call('/v2/models/nope/ready')).status).toBe(404);
    const infer = await tinyInfer([1, 2, 3, 4]);
    expect(infer.status).toBe(200);
  });

  it('answers unknown routes with Triton error JSON', async () => {
    const r = await call('/v2/nothing/here');
    expect(r.status).toBe(404);
    expect(r.json.error).toMatch(/Not found/);
  });
});

describe('inference', () => {
  it('runs JSON tensors (flat and nested data) and echoes the request id', async () => {
    const r = await tinyInfer([1, 2, 3, 4, -1, -2, -3, 0.5], { id: 'abc' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    expect(r.json).toEqual({
      model_name: 'tiny',
      model_version: '1',
      id: 'abc',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 4], data: [2, 4, 6, 8, -2, -4, -6, 1] }],
    });
    const nested = await post('/v2/models/tiny/versions/1/infer', {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [[1, 2, 3, 4]] }],
    });
    expect(nested.json.outputs[0].data).toEqual([2, 4, 6, 8]);
  });

  it('runs binary tensors with binary outputs, equal to the JSON answer', async () => {
    const req = binaryFaceRequest(2);
    const bin = await post('/v2/models/face/infer', req.body, {
      'Inference-Header-Content-Length': req.headerLength,
      'Content-Type': 'application/octet-stream',
    });
    expect(bin.status).toBe(200);
    const hl = Number(bin.headers.get('inference-header-content-length'));
    expect(hl).toBeGreaterThan(0);
    const parsed = parseInferResponse(bin.body, hl);
    expect(parsed.outputs['Identity_2:0'].dims).toEqual([2, 512, 16]);
    const data = Array.from(new Float32Array(faceTensor(2).buffer.slice(0)));
    const js = await post('/v2/models/face/infer', {
      inputs: [{ name: 'input:0', datatype: 'FP32', shape: [2, 128, 128, 3], data }],
      outputs: [{ name: 'Identity_2:0' }],
    });
    expect(js.status).toBe(200);
    expect(js.json.outputs).toHaveLength(1);
    const fromJson = js.json.outputs[0].data as number[];
    const fromBin = parsed.outputs['Identity_2:0'].data as Float32Array;
    expect(fromJson).toHaveLength(fromBin.length);
    let maxDiff = 0;
    for (let i = 0; i < fromBin.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fromJson[i] - fromBin[i]));
    expect(maxDiff).toBeLessThan(1e-5);
  });

  it('takes a JPEG as BYTES and runs it through the model preprocessing: one face found', async () => {
    const jpeg = readFileSync(FRANCK);
    const data = encodeBytesElements([jpeg]);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'input:0', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: data.length } },
        ],
        parameters: { binary_data_output: true },
      }),
    );
    const r = await post('/v2/models/face/infer', Buffer.concat([header, data]), {
      'Inference-Header-Content-Length': String(header.length),
    });
    expect(r.status).toBe(200);
    const out = parseInferResponse(r.body, Number(r.headers.get('inference-header-content-length'))).outputs;
    const config = server.manager.get('face').config;
    const { transforms } = await preprocessImages([jpeg], config.preprocessing!);
    const faces = decodeBlazeFace(out, config.postprocessing!, transforms);
    expect(faces[0]).toHaveLength(1);
    expect(faces[0][0].score).toBeGreaterThan(0.75);
    // BYTES for a model input that takes no images is a dtype error.
    const wrong = await post('/v2/models/tiny/infer', {
      inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], data: ['abc'] }],
    });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error).toMatch(/Input "x" expects datatype FP32 but received BYTES/);
  });

  it('answers bad input with 400 and an error naming what was wrong', async () => {
    const cases: [unknown, RegExp][] = [
      ['{"inputs": [', /Malformed JSON/],
      [
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] },
        /Input "x" expects shape \[-1,4\] but received \[1,3\]/,
      ],
      [
        { inputs: [{ name: 'x', datatype: 'INT32', shape: [1, 4], data: [1, 2, 3, 4] }] },
        /Input "x" expects dtype float32 but received int32/,
      ],
      [{ inputs: [{ name: 'z', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, /Unknown input "z"/],
      [
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3] }] },
        /4 elements\) but its data holds 3/,
      ],
      [
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [9, 4], data: new Array(36).fill(1) }] },
        /fits no optimization profile/,
      ],
      [
        {
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
          outputs: [{ name: 'q' }],
        },
        /Unknown output "q"/,
      ],
      [
        {
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
          outputs: [{ name: 'y' }, { name: 'y' }],
        },
        /Output "y" appears twice/,
      ],
      [{ inputs: 'x' }, /non-empty array for inputs/],
      ['', /Malformed JSON/],
    ];
    for (const [body, message] of cases) {
      const r = await post('/v2/models/tiny/infer', body);
      expect(r.status, String(message)).toBe(400);
      expect(r.json.error).toMatch(message);
    }
    const req = binaryFaceRequest(1);
    const truncated = await post('/v2/models/face/infer', req.body.subarray(0, req.body.length - 100), {
      'Inference-Header-Content-Length': req.headerLength,
    });
    expect(truncated.status).toBe(400);
    expect(truncated.json.error).toMatch(/Truncated binary body/);
    const unknown = await post('/v2/models/nope/infer', { inputs: [] });
    expect(unknown.status).toBe(404);
    const broken = await post('/v2/models/broken/infer', { inputs: [] });
    expect(broken.status).toBe(503);
    expect(broken.json.error).toMatch(/not ready/);
  });

  it.skipIf(!hasCurl)(
    `works from curl with the protocol documented requests${hasCurl ? '' : ' (skipped: no curl)'}`,
    async () => {
      const body = JSON.stringify({
        inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
      });
      const { stdout } = await run('curl', ['-s', '-X', 'POST', `${url}/v2/models/tiny/infer`, '-d', body]);
      expect(JSON.parse(stdout).outputs[0].data).toEqual([2, 4, 6, 8]);
      const ready = await run('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        `${url}/v2/health/ready`,
      ]);
      expect(ready.stdout).toBe('200');
      // Binary extension from curl: JSON header then raw little-endian floats.
      const { body: bin, headerLength } = encodeInferRequest(
        [{ name: 'x', tensor: { dtype: 'float32', dims: [1, 4], data: new Float32Array([1, 1, 2, 3]) } }],
        { binaryOutput: false },
      );
      const file = join(repo, 'curl-body.bin');
      writeFileSync(file, bin);
      const out = await run('curl', [
        '-s',
        '-X',
        'POST',
        `${url}/v2/models/tiny/infer`,
        '-H',
        `Inference-Header-Content-Length: ${headerLength}`,
        '-H',
        'Content-Type: application/octet-stream',
        '--data-binary',
        `@${file}`,
      ]);
      expect(JSON.parse(out.stdout).outputs[0].data).toEqual([2, 2, 4, 6]);
    },
  );

  it('answers many concurrent large binary requests each with its own numbers (pooled bodies never mix)', async () => {
    // Bodies of 64-256 KiB go through the server's buffer pool, request and response: each answer must be
    // exactly twice its own request, across 3 rounds of 24 at once (slabs reused from round to round).
    const own = tempRepo();
    // The tiny model with room for such bodies; its warm-up runs the largest batch only.
    await writeTiny(own, 'big', { ...tinyConfig('big', 16384), warmup: { batchSizes: [16384] } });
    const big = await InferenceServer.create({ modelRepository: own, port: 0, loadOptions: { contexts: 2 } });
    const base = await big.listen();
    const rows = (i: number) => 4096 + 1024 * (i % 9); // 64 KiB to 192 KiB of floats
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: 24 }, async (_, i) => {
          const n = rows(i);
          const x = new Float32Array(n * 4).map((_, k) => round * 1e6 + i * 1e4 + (k % 997));
          const { body, headerLength } = encodeInferRequest(
            [{ name: 'x', tensor: { dtype: 'float32', dims: [n, 4], data: x } }],
            { binaryOutput: true },
          );
          const r = await post(
            '/v2/models/big/infer',
            body,
            { 'Inference-Header-Content-Length': String(headerLength) },
            base,
          );
          expect(r.status, r.text.slice(0, 200)).toBe(200);
          const decoded = parseInferResponse(
            r.body,
            Number(r.headers.get('inference-header-content-length')),
          );
          return { x, y: decoded.outputs.y.data as Float32Array };
        }),
      );
      for (const { x, y } of answers) {
        expect(y.length).toBe(x.length);
        expect(y.every((v, k) => v === 2 * x[k])).toBe(true);
      }
    }
    await big.close();
    rmSync(own, { recursive: true, force: true });
  });
});

describe('repository extension', () => {
  it('indexes every entry with its state and reason', async () => {
    const r = await post('/v2/repository/index', {});
    expect(r.status).toBe(200);
    const byName = Object.fromEntries((r.json as unknown as { name: string }[]).map((e) => [e.name, e]));
    expect(byName.face).toMatchObject({ version: '1', state: 'READY' });
    expect(byName.tiny).toMatchObject({ state: 'READY' });
    expect(byName.broken).toMatchObject({ state: 'UNAVAILABLE' });
    expect((byName.broken as { reason: string }).reason).toMatch(/onnxruntime cannot load/);
    const ready = await post('/v2/repository/index', { ready: true });
    expect((ready.json as unknown as { name: string }[]).map((e) => e.name)).toEqual(['face', 'tiny']);
  });

  it('unloads and loads a model', async () => {
    expect((await post('/v2/repository/models/tiny/unload', '')).status).toBe(200);
    expect((await call('/v2/models/tiny/ready')).status).toBe(400);
    expect((await tinyInfer([1, 2, 3, 4])).status).toBe(503);
    expect((await post('/v2/repository/models/tiny/load', '')).status).toBe(200);
    expect((await tinyInfer([1, 2, 3, 4])).json.outputs[0].data).toEqual([2, 4, 6, 8]);
    const broken = await post('/v2/repository/models/broken/load', {});
    expect(broken.status).toBe(400);
    expect(broken.json.error).toMatch(/onnxruntime cannot load/);
    const missing = await post('/v2/repository/models/absent/load', {});
    expect(missing.status).toBe(404);
  });

  it('keeps model names inside the repository', async () => {
    for (const name of ['..%2F..%2Fetc', '..', '.hidden', '%2Fetc%2Fpasswd', 'a%2F..%2F..%2Fb']) {
      const load = await post(`/v2/repository/models/${name}/load`, {});
      expect([400, 404], name).toContain(load.status);
      expect(load.json.error).toBeTruthy();
      expect((await call(`/v2/models/${name}`)).status).toBe(404);
      expect([400, 404]).toContain((await post(`/v2/models/${name}/infer`, { inputs: [] })).status);
    }
    const load = await post('/v2/repository/models/..%2F..%2Fetc/load', {});
    expect(load.status).toBe(400);
    expect(load.json.error).toMatch(/model name/);
  });
});

describe('limits, auth, overload and disconnects', () => {
  it('refuses bodies over the limit with 413 and error JSON', async () => {
    const small = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['tiny'],
      bodyLimit: 1024,
    });
    const base = await small.listen();
    try {
      const r = await post(
        '/v2/models/tiny/infer',
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [64, 4], data: new Array(256).fill(1.25) }] },
        {},
        base,
      );
      expect(r.status).toBe(413);
      expect(r.json.error).toMatch(/larger than the limit of 1024 bytes/);
      expect(
        (
          await post(
            '/v2/models/tiny/infer',
            { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] },
            {},
            base,
          )
        ).status,
      ).toBe(200);
      // Without a Content-Length (chunked), the limit holds as the bytes arrive, and a body under it is served.
      const chunked = (body: string) =>
        new Promise<{ status: number; text: string }>((resolve, reject) => {
          const req = http.request(`${base}/v2/models/tiny/infer`, { method: 'POST' }, (res) => {
            let text = '';
            res.on('data', (d: Buffer) => (text += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          });
          req.on('error', reject);
          for (let i = 0; i < body.length; i += 300) req.write(body.slice(i, i + 300));
          req.end();
        });
      const over = await chunked(
        JSON.stringify({
          inputs: [{ name: 'x', datatype: 'FP32', shape: [64, 4], data: new Array(256).fill(1.25) }],
        }),
      );
      expect(over.status).toBe(413);
      expect(JSON.parse(over.text).error).toMatch(/larger than the limit of 1024 bytes/);
      const under = await chunked(
        JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
      );
      expect(under.status, under.text).toBe(200);
      expect(JSON.parse(under.text).outputs[0].data).toEqual([2, 4, 6, 8]);
    } finally {
      await small.close();
    }
  });

  it('asks for a bearer token when given one (health stays open)', async () => {
    const secure = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['tiny'],
      authToken: 's3cret',
    });
    const base = await secure.listen();
    try {
      const none = await call('/v2/models/tiny', {}, base);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expect(none.json.error).toMatch(/bearer token/);
      expect(
        (await call('/v2/models/tiny', { headers: { authorization: 'Bearer wrong!' } }, base)).status,
      ).toBe(401);
      expect(
        (await call('/v2/models/tiny', { headers: { authorization: 'Bearer s3cret' } }, base)).status,
      ).toBe(200);
      expect((await call('/metrics', {}, base)).status).toBe(401);
      expect((await call('/v2/health/live', {}, base)).status).toBe(200);
    } finally {
      await secure.close();
    }
  });

  it('answers a full queue with 503 and Retry-After, serves the rest, and keeps serving', async () => {
    const busy = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['face'],
      loadOptions: { contexts: 1, maxQueueSize: 2, dynamicBatching: false, threadsPerContext: 1 },
      retryAfterSeconds: 2,
    });
    const base = await busy.listen();
    try {
      const req = binaryFaceRequest(8);
      const answers = await Promise.all(
        Array.from({ length: 24 }, () =>
          post(
            '/v2/models/face/infer',
            req.body,
            { 'Inference-Header-Content-Length': req.headerLength },
            base,
          ),
        ),
      );
      const ok = answers.filter((a) => a.status === 200);
      const full = answers.filter((a) => a.status === 503);
      expect(ok.length + full.length).toBe(24);
      expect(ok.length).toBeGreaterThanOrEqual(3);
      expect(full.length).toBeGreaterThan(0);
      expect(full[0].headers.get('retry-after')).toBe('2');
      expect(full[0].json.error).toMatch(/Queue is full/);
      const metrics = await call('/metrics', {}, base);
      expect(metrics.text).toMatch(/outcome="queue_full"\} [1-9]/);
      expect(
        (
          await post(
            '/v2/models/face/infer',
            req.body,
            { 'Inference-Header-Content-Length': req.headerLength },
            base,
          )
        ).status,
      ).toBe(200);
    } finally {
      await busy.close();
    }
  });

  it('answers 504 when a request waits longer than its timeout parameter', async () => {
    const slow = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['face'],
      loadOptions: { contexts: 1, dynamicBatching: false, threadsPerContext: 1 },
    });
    const base = await slow.listen();
    try {
      // timeout is Triton's, in microseconds: 1 ms, while 12 batches of 16 wait for one context.
      const req = binaryFaceRequest(16, { parameters: { binary_data_output: true, timeout: 1000 } });
      const answers = await Promise.all(
        Array.from({ length: 12 }, () =>
          post(
            '/v2/models/face/infer',
            req.body,
            { 'Inference-Header-Content-Length': req.headerLength },
            base,
          ),
        ),
      );
      const late = answers.filter((a) => a.status === 504);
      expect(late.length).toBeGreaterThan(0);
      expect(late[0].json.error).toMatch(/waited longer than 1 ms in the queue/);
      expect(answers.every((a) => a.status === 200 || a.status === 504)).toBe(true);
      const bad = await post('/v2/models/tiny/infer', {
        parameters: { timeout: 'soon' },
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
      });
      expect(bad.status).toBe(400);
      expect(bad.json.error).toMatch(/microseconds for parameters.timeout/);
    } finally {
      await slow.close();
    }
  });

  it('cancels the queued work of clients that disconnect', async () => {
    const slow = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      models: ['face'],
      loadOptions: { contexts: 1, dynamicBatching: false, threadsPerContext: 1 },
    });
    const base = new URL(await slow.listen());
    try {
      const req = binaryFaceRequest(16);
      const sent = 30;
      const requests = Array.from({ length: sent }, () => {
        const r = http.request({
          host: base.hostname,
          port: base.port,
          method: 'POST',
          path: '/v2/models/face/infer',
          headers: {
            'Inference-Header-Content-Length': req.headerLength,
            'Content-Length': String(req.body.length),
          },
          agent: false,
        });
        r.on('error', () => {});
        r.end(req.body);
        return r;
      });
      const model = slow.manager.get('face');
      // Wait until every request is queued or running, then hang up on all of them.
      const deadline = Date.now() + 20_000;
      while (
        model.scheduler.stats.queued + model.scheduler.stats.inFlight + model.scheduler.stats.completed <
          sent &&
        Date.now() < deadline
      )
        await new Promise((r) => setTimeout(r, 5));
      // What waits in the queue at the hang-up must be dropped; what already runs may finish (a context takes up
      // to two runs, and one more may start while the server learns of the closed sockets).
      const queuedAtHangUp = model.scheduler.stats.queued;
      for (const r of requests) r.destroy();
      await new Promise((r) => setTimeout(r, 100));
      await model.scheduler.idle();
      const { completed, failed } = model.scheduler.stats;
      expect(completed + failed).toBe(sent);
      expect(queuedAtHangUp).toBeGreaterThan(5);
      expect(failed).toBeGreaterThanOrEqual(queuedAtHangUp - 2);
      const metrics = await call('/metrics', {}, base.origin);
      expect(metrics.text).toMatch(/outcome="cancelled"\} [1-9]/);
      expect(metrics.text).toMatch(/yqp_inflight_requests\{model="face"\} 0/);
    } finally {
      await slow.close();
    }
  });
});

describe('server processes sharing the machine (serve --http-workers)', () => {
  it('deals each model its contexts among the processes and sizes threads from the whole', () => {
    const cores = availableParallelism();
    const deal = (contexts: number | undefined, instances: number, of: number) =>
      Array.from({ length: of }, (_, index) => shareOptions({ contexts }, instances, { index, of }));
    const four = deal(4, 1, 2);
    expect(four.map((o) => o.contexts)).toEqual([2, 2]);
    expect(four[0].threadsPerContext).toBe(Math.max(1, Math.floor(cores / 4)));
    expect(deal(5, 1, 2).map((o) => o.contexts)).toEqual([3, 2]);
    // From config instances when no option says; at least one context per process.
    expect(deal(undefined, 3, 2).map((o) => o.contexts)).toEqual([2, 1]);
    expect(deal(1, 1, 3).map((o) => o.contexts)).toEqual([1, 1, 1]);
    expect(deal(1, 1, 3)[0].threadsPerContext).toBe(Math.max(1, Math.floor(cores / 3)));
    // Spinning only with a core to spare across every process; an explicit choice is kept.
    const spare = deal(2, 1, 2)[0];
    expect(spare.spinWait).toBe(2 * spare.threadsPerContext! < cores);
    expect(
      shareOptions({ contexts: 4, threadsPerContext: 2, spinWait: true }, 1, { index: 0, of: 4 }),
    ).toEqual({
      contexts: 1,
      threadsPerContext: 2,
      spinWait: true,
    });
  });
});
