// The HTTP load generator in processes of its own, as perf_analyzer runs it: the server's event loop and heap then
// carry only the server's work, and one Node process's limit (it reads and writes only so many bodies a second) is
// not the measurement's. A child is this file run directly with its parameters in the environment; `bodies`
// (base64 request bodies, e.g. shared-memory references) are split between the processes, so no two share one.
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { HttpClient, mergePoints, runConcurrency, runRate, syntheticInputs } from '../../dist/bench/index.js';

if (process.env.YQP_BENCH_HTTP_CLIENT) {
  const { url, model, feedsSpec, protocol, mode, value, load, bodies } = JSON.parse(process.env.YQP_BENCH_HTTP_CLIENT);
  const client = new HttpClient({
    url,
    model: model ?? 'face',
    protocol,
    feeds: syntheticInputs(feedsSpec),
    connections: mode === 'rate' ? 256 : value,
    // Open loop: independent clients with a connection each, as cameras stream (see HttpClientOptions.clients).
    clients: mode === 'rate' ? 16 : undefined,
    ...(bodies ? { requestBodies: bodies.map((b) => Buffer.from(b, 'base64')), verify: false } : {}),
  });
  const options = { ...load, keepLatencies: true };
  // The generator's own event-loop delay: a tail it makes itself is not the server's.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const p = mode === 'rate' ? await runRate(client, value, options) : await runConcurrency(client, value, options);
  loop.disable();
  p.clientLoopDelayMs = { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
  await client.close();
  // Exit only once the pipe has taken everything (every latency rides along: it can be megabytes).
  process.stdout.write(JSON.stringify(p), () => process.exit(0));
}

function httpClientProcess(params) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      env: { ...process.env, YQP_BENCH_HTTP_CLIENT: JSON.stringify(params) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`HTTP client exited ${code}`))));
  });
}

/**
 * `params` ({ url, model?, feedsSpec, protocol, mode: 'concurrency' | 'rate', value, load, bodies? }) spread over
 * `processes` generator processes: concurrency or rate divided between them, their points merged.
 */
export async function httpClients(params, processes) {
  const n = params.mode === 'concurrency' ? Math.min(processes, params.value) : processes;
  const shares = Array.from({ length: n }, (_, i) =>
    params.mode === 'concurrency' ? Math.floor(params.value / n) + (i < params.value % n ? 1 : 0) : params.value / n,
  );
  const bodiesOf = (i) => params.bodies?.filter((_, k) => k % n === i);
  const points = await Promise.all(shares.map((value, i) => httpClientProcess({ ...params, value, bodies: bodiesOf(i) })));
  const merged = mergePoints(points);
  delete merged.latenciesMs;
  merged.clientLoopDelayMs = {
    p99: Math.max(...points.map((p) => p.clientLoopDelayMs.p99)),
    max: Math.max(...points.map((p) => p.clientLoopDelayMs.max)),
  };
  return merged;
}
