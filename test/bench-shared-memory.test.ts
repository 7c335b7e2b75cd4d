/**
 * The bench's shared-memory requests (src/bench/shared-memory-client.ts, perf_analyzer's --shared-memory): the
 * region is created, filled and registered, each body sends the inputs from it and puts the outputs into its own
 * slot, and closing unregisters and removes it. System shared memory here; the CUDA kind exports device memory,
 * which only a GPU machine has (bench serve-shm runs it there, against a server in another process).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient } from '../src/bench/client.js';
import { openBenchSharedMemory } from '../src/bench/shared-memory-client.js';
import { InferenceServer } from '../src/serve/server.js';
import { ROOT } from './helpers/data.js';
import { tempRepo, writeTiny } from './serve-fixtures.js';

const shm = existsSync('/dev/shm');
let server: InferenceServer;
let url: string;

beforeAll(async () => {
  const repo = tempRepo('yqp-bench-shm-');
  await writeTiny(repo, 'tiny');
  server = await InferenceServer.create({
    modelRepository: repo,
    port: 0,
    models: ['tiny'],
    sharedMemory: ['system'],
  });
  url = await server.listen();
}, 120_000);

afterAll(async () => {
  await server?.close();
});

describe.skipIf(!shm)(`bench requests through shared memory${shm ? '' : ' (skipped: no /dev/shm)'}`, () => {
  it('sends no tensor in the body, writes each slot its outputs, and unregisters on close', async () => {
    const x = new Float32Array([1, 2, 3, 4]);
    const region = await openBenchSharedMemory({
      url,
      model: 'tiny',
      kind: 'system',
      feeds: { x: { dtype: 'float32', dims: [1, 4], data: x } },
      outputs: [{ name: 'y', byteSize: 16 }],
      slots: 3,
    });
    const file = `/dev/shm${region.key}`;
    expect(existsSync(file)).toBe(true);
    expect(region.bodies).toHaveLength(3);
    for (const body of region.bodies) {
      const request = JSON.parse(body.toString()) as { inputs: { data?: unknown }[] };
      expect(request.inputs[0].data).toBeUndefined();
      expect(body.length).toBeLessThan(512);
    }
    const client = new HttpClient({
      url,
      model: 'tiny',
      protocol: 'json',
      feeds: {},
      connections: 2,
      requestBodies: region.bodies,
    });
    for (let i = 0; i < 3; i++) await client.infer(); // each body once: slots 0, 1, 2
    await client.close();
    const bytes = readFileSync(file);
    for (const [slot, [at]] of region.outputOffsets.entries()) {
      const y = Array.from(new Float32Array(Uint8Array.from(bytes.subarray(at, at + 16)).buffer));
      expect(y, `slot ${slot}`).toEqual([2, 4, 6, 8]);
    }
    const listed = async () =>
      ((await fetch(`${url}/v2/systemsharedmemory/status`).then((r) => r.json())) as { name: string }[])
        .length;
    expect(await listed()).toBe(1);
    await region.close();
    expect(await listed()).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it('refuses a kind it does not know and a slot count below 1, naming them', async () => {
    const base = { url, model: 'tiny', feeds: {}, outputs: [] };
    await expect(openBenchSharedMemory({ ...base, kind: 'gpu' as never, slots: 1 })).rejects.toMatchObject({
      code: 'E_ARGUMENT',
      argument: 'sharedMemory',
    });
    await expect(openBenchSharedMemory({ ...base, kind: 'system', slots: 0 })).rejects.toMatchObject({
      code: 'E_ARGUMENT',
      argument: 'slots',
    });
  });

  it('yqp-trt bench --shared-memory: measures through the region; refuses a body protocol or an in-process target', async () => {
    // Asynchronously: the server answering it runs on this process's event loop.
    const cli = (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [join(ROOT, 'dist', 'cli', 'main.js'), 'bench', ...args],
          { encoding: 'utf8', timeout: 60_000 },
          (e, stdout, stderr) =>
            resolve({ status: e ? ((e as { code?: number }).code ?? null) : 0, stdout, stderr }),
        ),
      );
    const ok = await cli(
      url,
      '--model',
      'tiny',
      '--protocol',
      'json',
      '--shared-memory',
      'system',
      '--concurrency',
      '2',
      '--duration',
      '0.3',
      '--warmup',
      '0.1',
      '--json',
    );
    expect(ok.status, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as { mode: string; points: { requests: number; errors: number }[] };
    expect(report.mode).toBe('http-system-shm');
    expect(report.points[0].requests).toBeGreaterThan(0);
    expect(report.points[0].errors).toBe(0);
    const binary = await cli(url, '--model', 'tiny', '--shared-memory', 'system');
    expect(binary.status).toBe(2);
    expect(binary.stderr).toMatch(
      /Expected json with --shared-memory .* for --protocol but received "binary"/,
    );
    const inProcess = await cli('models/face', '--shared-memory', 'cuda');
    expect(inProcess.status).toBe(2);
    expect(inProcess.stderr).toMatch(/Expected a server URL as the target .* for --shared-memory/);
  });
});
