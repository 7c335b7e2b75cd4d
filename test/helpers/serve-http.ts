/**
 * One in-process server for the HTTP tests of a file: BlazeFace, the tiny model and a broken entry in a temporary
 * repository, two contexts each, system and CUDA shared memory on. `useServer()` starts it before the file's tests
 * and closes it after; `repo`, `server` and `url` are live bindings (set once it listens).
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { InferenceServer } from '../../src/serve/server.js';
import { tempRepo, writeBlazeFace, writeBroken, writeTiny } from '../serve-fixtures.js';

export let repo: string;
export let server: InferenceServer;
export let url: string;

export function useServer(): void {
  beforeAll(async () => {
    repo = tempRepo();
    await writeBlazeFace(repo);
    await writeTiny(repo);
    writeBroken(repo);
    server = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      loadOptions: { contexts: 2 },
      sharedMemory: ['system', 'cuda'],
    });
    url = await server.listen();
  });
  afterAll(async () => {
    await server?.close();
    rmSync(repo, { recursive: true, force: true });
  });
}

export async function call(path: string, init: RequestInit = {}, base = url) {
  const res = await fetch(base + path, init);
  const body = Buffer.from(await res.arrayBuffer());
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body, text, json: json as Record<string, any> };
}

export const post = (path: string, body: unknown, headers: Record<string, string> = {}, base = url) =>
  call(
    path,
    {
      method: 'POST',
      body: typeof body === 'string' || Buffer.isBuffer(body) ? (body as string) : JSON.stringify(body),
      headers,
    },
    base,
  );

export const tinyInfer = (data: number[], extra: object = {}) =>
  post('/v2/models/tiny/infer', {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [data.length / 4, 4], data }],
    ...extra,
  });

export function faceTensor(batch: number): Buffer {
  const f = new Float32Array(batch * 128 * 128 * 3).map((_, i) => Math.sin(i * 0.001));
  return Buffer.from(f.buffer);
}

/** A batch of BlazeFace input as a binary request body (binary outputs asked for). */
export function binaryFaceRequest(batch: number, extra: object = {}) {
  const data = faceTensor(batch);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        {
          name: 'input:0',
          datatype: 'FP32',
          shape: [batch, 128, 128, 3],
          parameters: { binary_data_size: data.length },
        },
      ],
      parameters: { binary_data_output: true },
      ...extra,
    }),
  );
  return { body: Buffer.concat([header, data]), headerLength: String(header.length) };
}
