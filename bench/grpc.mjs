// `npm run bench -- grpc [--duration S] [--concurrency 1,4,16] [--rounds R] [--batch B] [--client-threads T]
//   [--instances N] [--threads-per-context T] [--grpc-connections N] [--sides http,grpc] [--out FILE]
//   [--server-cpu-prof DIR]`
// Issue 14's gRPC target: gRPC at saturation >= HTTP with binary tensors, same server, same run. BlazeFace in a
// Triton-layout repository (config.pbtxt + 1/model.onnx, dynamic batching), served by `yqp-trt serve --grpc-port`
// in its own process; at each concurrency the load generator keeps a client of each protocol and lets them take
// turns in --rounds slices of --duration seconds (the side going first alternating), so machine noise falls on
// both alike; each side's figure is the median of its slices. Beside req/s, each point prints the CPU each side
// spent per request answered: the server process (every thread), its event loop (the main thread, where a
// transport's JavaScript runs) and the load generator. On a loaded machine throughput swings between turns; CPU
// per request holds the comparison. The load is spread over --client-threads worker threads (one client each),
// so on a large machine the generator is not what saturates.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import {
  GrpcClient,
  HttpClient,
  mergePoints,
  resolveShapes,
  runConcurrency,
  syntheticInputs,
} from '../dist/bench/index.js';
import { makeBatchDynamic } from '../dist/onnx/dynamic-batch.js';
import { decodeOnnx, encodeOnnx } from '../dist/onnx/model.js';
import { BLAZEFACE, arg, cpuShares, cpuTimes, processCpuMs } from './lib/common.mjs';
import { spawnServe } from './lib/serve-process.mjs';

const pbtxt = (instances) => `name: "blaze"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "input:0" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 128, 128, 3 ] } ]
dynamic_batching { max_queue_delay_microseconds: 200 }
instance_group [ { count: ${instances} kind: KIND_CPU } ]
`;

const ms = (v) => (v === undefined ? '-' : v.toFixed(2));
const fmt = (p) =>
  `${p.throughput.toFixed(1).padStart(8)} req/s  p50 ${p.latencyMs.p50.toFixed(2)} ms  p99 ${p.latencyMs.p99.toFixed(2)} ms` +
  `  CPU ms/req: server ${ms(p.cpu.server)} (event loop ${ms(p.cpu.loop)}), client ${ms(p.cpu.client)}` +
  (p.errors ? `  errors ${p.errors} (${p.firstError})` : '');

/** A median that averages the middle two of an even count (two rounds: their mean). */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function makeClient({ side, url, grpc, feedsSpec, connections }) {
  const feeds = syntheticInputs(feedsSpec);
  return side === 'http'
    ? new HttpClient({ url, model: 'blaze', protocol: 'binary', feeds, connections })
    : new GrpcClient({ address: grpc, model: 'blaze', feeds, connections });
}

/**
 * A worker thread's share of the load: its own client (connections kept between slices), `concurrency` requests
 * in flight for each slice it is told to run, the answers of each slice counted.
 */
async function workerMain() {
  const { job, concurrency } = workerData;
  const client = makeClient(job);
  let answered = 0;
  const counted = { infer: () => client.infer().then(() => void answered++) };
  await client.infer();
  parentPort.postMessage({ ready: true });
  parentPort.on('message', async (msg) => {
    if (msg === 'close') {
      await client.close();
      parentPort.postMessage({ closed: true });
      return;
    }
    answered = 0;
    const p = await runConcurrency(counted, concurrency, { ...msg, keepLatencies: true });
    parentPort.postMessage({ point: p, answered });
  });
}

/** The first `n` of `value` split as evenly as it goes. */
const shares = (value, n) =>
  Array.from({ length: n }, (_, i) => Math.floor(value / n) + (i < value % n ? 1 : 0));

/** The load of one side at one concurrency over `threads` worker threads, kept for all of its slices. */
async function startGenerator(job, concurrency, threads) {
  const parts = shares(concurrency, Math.min(threads, concurrency));
  const workers = parts.map(
    (c) =>
      new Worker(new URL(import.meta.url), {
        workerData: { job: { ...job, connections: job.connections(c) }, concurrency: c },
      }),
  );
  const next = (w) =>
    new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  await Promise.all(workers.map(next));
  return {
    /**
     * One slice, and the CPU each side spent on it per request answered (its warm-up included, both counted
     * over the same span): the server's process and its event loop, and the load generator (this process, its
     * worker threads included; the other side's threads are idle meanwhile).
     */
    async slice(load, serverPid) {
      const s0 = processCpuMs(serverPid);
      const c0 = process.cpuUsage();
      const done = workers.map(next);
      for (const w of workers) w.postMessage(load);
      const results = await Promise.all(done);
      const c = process.cpuUsage(c0);
      const s1 = processCpuMs(serverPid);
      const p = mergePoints(results.map((r) => r.point));
      delete p.latenciesMs;
      const answered = results.reduce((a, r) => a + r.answered, 0);
      const per = (v) => (answered > 0 ? v / answered : undefined);
      p.cpu = {
        answered,
        server: s0 && per(s1.total - s0.total),
        loop: s0 && per(s1.loop - s0.loop),
        client: per((c.user + c.system) / 1000),
      };
      return p;
    },
    async close() {
      const done = workers.map(next);
      for (const w of workers) w.postMessage('close');
      await Promise.all(done);
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/** `yqp-trt serve --grpc-port 0` on `repo`; resolves to its HTTP URL and gRPC address once both listen. */
function startServer(repo, { profileDir, threadsPerContext }) {
  return spawnServe(
    [
      '--model-repository',
      repo,
      // Idle intra-op threads spinning would count as server CPU of whichever side ran.
      '--no-spin-wait',
      ...(threadsPerContext ? ['--threads-per-context', String(threadsPerContext)] : []),
    ],
    { grpc: true, nodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [] },
  );
}

export default async function main(args) {
  const cores = cpus().length;
  const large = cores >= 8;
  const duration = Number(arg(args, 'duration', '3'));
  const batch = Number(arg(args, 'batch', '1'));
  const levels = arg(args, 'concurrency', large ? '1,4,16,64' : '1,4,16')
    .split(',')
    .map(Number);
  const rounds = Number(arg(args, 'rounds', '4'));
  // One side alone (for a profile of its serving): --sides grpc.
  const sides = arg(args, 'sides', 'http,grpc').split(',');
  // gRPC connections per point (HTTP/2 carries many calls on one): default one per request in flight, as HTTP.
  const grpcConnections = Number(arg(args, 'grpc-connections', '0'));
  // On a large machine: 4 contexts of (cores - 8) / 4 threads, leaving cores for the server's event loop and
  // the load generator's 4 threads; on a small one, one context and the server's default threads.
  const clientThreads = Number(arg(args, 'client-threads', large ? '4' : '1'));
  const instances = Number(arg(args, 'instances', large ? '4' : '1'));
  const threadsPerContext = arg(
    args,
    'threads-per-context',
    large ? String(Math.max(1, Math.floor((cores - 8) / 4))) : undefined,
  );
  const out = arg(args, 'out', undefined);
  const repo = mkdtempSync(join(tmpdir(), 'yqp-bench-grpc-'));
  mkdirSync(join(repo, 'blaze', '1'), { recursive: true });
  const proto = decodeOnnx(readFileSync(BLAZEFACE), BLAZEFACE);
  makeBatchDynamic(proto);
  writeFileSync(join(repo, 'blaze', '1', 'model.onnx'), encodeOnnx(proto));
  writeFileSync(join(repo, 'blaze', 'config.pbtxt'), pbtxt(instances));

  const server = await startServer(repo, {
    profileDir: arg(args, 'server-cpu-prof', undefined),
    threadsPerContext,
  });
  // A load generator that dies of an uncaught error still stops its server.
  process.once('exit', () => server.child.kill('SIGTERM'));
  const say = (line) => process.stdout.write(`${line}\n`);
  say(
    `gRPC vs HTTP binary: BlazeFace (config.pbtxt, ${instances} instance(s)${threadsPerContext ? ` x ${threadsPerContext} threads` : ''}), batch ${batch}, ${duration} s per point, ${rounds} round(s), ${clientThreads} client thread(s), ${cores} cores`,
  );
  say(
    `server: HTTP ${server.url}, gRPC ${server.grpc}; load average at start ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const feedsSpec = resolveShapes(
    [{ name: 'input:0', dtype: 'float32', dims: [-1, 128, 128, 3] }],
    batch,
    {},
  );
  const jobs = {
    http: { side: 'http', url: server.url, feedsSpec, connections: (c) => c },
    grpc: {
      side: 'grpc',
      grpc: server.grpc,
      feedsSpec,
      connections: (c) => (grpcConnections ? Math.min(c, grpcConnections) : c),
    },
  };
  const results = { http: [], grpc: [] };
  const before = cpuTimes();
  try {
    // Per concurrency, both sides' generators are kept and take turns in slices (rounds), the side going first
    // alternating: machine noise of tens of seconds falls on both alike. The first slice of each warms up.
    for (const c of levels) {
      const generators = {};
      for (const name of sides) generators[name] = await startGenerator(jobs[name], c, clientThreads);
      try {
        for (let round = 0; round < rounds; round++) {
          const order = (round % 2 === 0 ? ['http', 'grpc'] : ['grpc', 'http']).filter((n) =>
            sides.includes(n),
          );
          for (const name of order) {
            const load = { durationMs: duration * 1000, warmupMs: round === 0 ? 1000 : 0 };
            const p = await generators[name].slice(load, server.child.pid);
            results[name].push({ round, concurrency: c, ...p });
            say(`  ${name.padEnd(4)} concurrency ${String(c).padStart(3)}: ${fmt(p)}`);
          }
        }
      } finally {
        for (const g of Object.values(generators)) await g.close();
      }
    }
  } finally {
    server.child.kill('SIGTERM');
    rmSync(repo, { recursive: true, force: true });
  }
  if (sides.length < 2) return;
  // Each concurrency's median over the rounds; the best concurrency of each side is its saturation point.
  const summary = (side) =>
    levels.map((c) => {
      const ps = results[side].filter((p) => p.concurrency === c);
      const med = (f) => (ps.some((p) => f(p) === undefined) ? undefined : median(ps.map(f)));
      return {
        concurrency: c,
        throughput: med((p) => p.throughput),
        server: med((p) => p.cpu.server),
        loop: med((p) => p.cpu.loop),
        client: med((p) => p.cpu.client),
      };
    });
  const best = (side) => summary(side).reduce((a, b) => (b.throughput > a.throughput ? b : a));
  const h = best('http');
  const g = best('grpc');
  const cpuLine = (p) =>
    `server ${ms(p.server)} ms/req (event loop ${ms(p.loop)}), client ${ms(p.client)} ms/req`;
  say(`medians of ${rounds} slices per side and concurrency`);
  say(`best HTTP binary: ${h.throughput.toFixed(1)} req/s at concurrency ${h.concurrency}, ${cpuLine(h)}`);
  say(`best gRPC:        ${g.throughput.toFixed(1)} req/s at concurrency ${g.concurrency}, ${cpuLine(g)}`);
  const ratio = g.throughput / h.throughput;
  say(
    `gRPC / HTTP binary at saturation: ${ratio.toFixed(2)} (target >= 1.00): ${ratio >= 1 ? 'met' : 'NOT met'}`,
  );
  const cpuRatio =
    h.loop !== undefined && g.loop !== undefined
      ? { loop: g.loop / h.loop, server: g.server / h.server, client: g.client / h.client }
      : undefined;
  if (cpuRatio)
    say(
      `CPU per request at saturation, gRPC / HTTP binary (lower is cheaper): server event loop ${cpuRatio.loop.toFixed(2)}, server process ${cpuRatio.server.toFixed(2)}, client ${cpuRatio.client.toFixed(2)}`,
    );
  say(
    `machine during the run: ${cpuShares(before, cpuTimes())}, load average at end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  if (out)
    writeFileSync(
      out,
      JSON.stringify(
        {
          batch,
          duration,
          rounds,
          cores,
          clientThreads,
          instances,
          threadsPerContext,
          results,
          summary: { http: summary('http'), grpc: summary('grpc') },
          ratio,
          cpuRatio,
        },
        null,
        2,
      ) + '\n',
    );
}

if (!isMainThread) await workerMain();
