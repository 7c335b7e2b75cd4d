/** `yqp-trt serve --grpc-port` as a user starts it: a Triton-layout repository, gRPC beside HTTP, SIGTERM drains. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, type Client } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inferenceService, type Message } from '../src/serve/grpc/service.js';
import { ROOT } from './helpers/data.js';
import { tempRepo } from './serve-fixtures.js';
import { writeTinyTriton } from './triton-fixtures.js';

const CLI = process.env.YQP_CLI ?? join(ROOT, 'dist', 'cli', 'main.js');
let repo: string;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build:ts\` first`);
  repo = tempRepo('yqp-grpc-cli-');
  writeTinyTriton(
    repo,
    'tiny',
    `max_batch_size: 8
     input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
     parameters { key: "execution_mode" value { string_value: "1" } }`,
  );
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

it('refuses --grpc-port with --http-workers above 1, naming both', () => {
  const r = spawnSync(
    process.execPath,
    [CLI, 'serve', '--model-repository', repo, '--grpc-port', '0', '--http-workers', '2'],
    {
      encoding: 'utf8',
    },
  );
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/--grpc-port cannot be combined with --http-workers 2/);
  const bad = spawnSync(
    process.execPath,
    [CLI, 'serve', '--model-repository', repo, '--grpc-port', '70000'],
    { encoding: 'utf8' },
  );
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/Expected a port 0..65535 for --grpc-port but received 70000/);
});

it('serves gRPC beside HTTP, logs config.pbtxt warnings, and drains both on SIGTERM', async () => {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--model-repository', repo, '--port', '0', '--grpc-port', '0'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /gRPC listening on (\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
  expect(err).toMatch(/model tiny: config.pbtxt: parameters.execution_mode: not supported here \(ignored\)/);
  const Ctor = makeGenericClientConstructor(inferenceService(), 'GRPCInferenceService');
  const client = new Ctor(address, credentials.createInsecure()) as Client & Record<string, Function>;
  const unary = (name: string, req: Message) =>
    new Promise<Message>((resolve, reject) =>
      client[name](req, (e: Error | null, r: Message) => (e ? reject(e) : resolve(r))),
    );
  try {
    expect(await unary('ServerReady', {})).toEqual({ ready: true });
    const res = await unary('ModelInfer', {
      model_name: 'tiny',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
    });
    expect(Array.from(new Float32Array(Uint8Array.from(res.raw_output_contents[0]).buffer))).toEqual([
      2, 4, 6, 8,
    ]);
  } finally {
    client.close();
  }
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(err).toMatch(/drained, exiting/);
}, 90_000);
