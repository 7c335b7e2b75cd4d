import http from 'node:http';
import { rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer } from '../src/serve/server.js';
import { tempRepo, writeTiny } from './serve-fixtures.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let repo: string;
let server: InferenceServer;
let base: URL;

beforeAll(async () => {
  repo = tempRepo('yqp-serve-mem-');
  await writeTiny(repo);
  server = await InferenceServer.create({
    modelRepository: repo,
    port: 0,
    loadOptions: { contexts: 1, threadsPerContext: 1, dynamicBatching: { maxQueueDelayMicroseconds: 0 } },
  });
  base = new URL(await server.listen());
});
afterAll(async () => {
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

describe('memory under sustained load', () => {
  it('stays steady over 100,000 HTTP requests (heap and RSS)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const json = JSON.stringify({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    });
    let bad = 0;
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const req = http.request(
          {
            host: base.hostname,
            port: base.port,
            path: '/v2/models/tiny/infer',
            method: 'POST',
            agent,
            headers: { 'content-length': Buffer.byteLength(json) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              if (res.statusCode !== 200 || !Buffer.concat(chunks).includes('[2,4,6,8]')) bad++;
              resolve();
            });
          },
        );
        req.on('error', reject);
        req.end(json);
      });
    const drive = async (count: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next++ < count) await one();
        }),
      );
    };
    const sample = () => {
      gc();
      gc();
      return { heap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss };
    };
    await drive(10_000); // warm-up: JIT, pools, connection buffers
    const before = sample();
    const started = performance.now();
    await drive(100_000);
    const seconds = (performance.now() - started) / 1000;
    const after = sample();
    agent.destroy();
    const heapGrowth = (after.heap - before.heap) / 2 ** 20;
    const rssGrowth = (after.rss - before.rss) / 2 ** 20;
    console.log(
      `100,000 requests in ${seconds.toFixed(1)} s (${(100_000 / seconds).toFixed(0)}/s); heap ${(before.heap / 2 ** 20).toFixed(1)} -> ${(after.heap / 2 ** 20).toFixed(1)} MiB, RSS ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(bad).toBe(0);
    expect(server.manager.get('tiny').scheduler.stats.completed).toBeGreaterThanOrEqual(110_000);
    // A leak of even 100 bytes per request would show as ~10 MiB of heap.
    expect(heapGrowth).toBeLessThan(8);
    expect(rssGrowth).toBeLessThan(64);
  }, 180_000);
});
