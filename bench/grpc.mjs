// `npm run bench -- grpc [--duration S] [--concurrency 1,4,16] [--batch B] [--out FILE] [--server-cpu-prof DIR]`
// Issue 14's gRPC target: gRPC at saturation >= HTTP with binary tensors, same server, same run. BlazeFace in a
// Triton-layout repository (config.pbtxt + 1/model.onnx, dynamic batching), served by `yqp-trt serve --grpc` in
// its own process; one load generator process drives both protocols in turns (HTTP binary, then gRPC, at each
// concurrency), so each side sees the same machine state. Prints each point, each side's best and the ratio.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GrpcClient,
  HttpClient,
  resolveShapes,
  runConcurrency,
  syntheticInputs,
} from '../dist/bench/index.js';
import { makeBatchDynamic } from '../dist/onnx/dynamic-batch.js';
import { decodeOnnx, encodeOnnx } from '../dist/onnx/model.js';
import { BLAZEFACE, arg, cpuShares, cpuTimes, median, processCpuMs } from './lib/common.mjs';

const PBTXT = `name: "blaze"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "input:0" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 128, 128, 3 ] } ]
dynamic_batching { max_queue_delay_microseconds: 200 }
instance_group [ { count: 1 kind: KIND_CPU } ]
`;

const ms = (v) => (v === undefined ? '-' : v.toFixed(2));
const fmt = (p) =>
  `${p.throughput.toFixed(1).padStart(8)} req/s  p50 ${p.latencyMs.p50.toFixed(2)} ms  p99 ${p.latencyMs.p99.toFixed(2)} ms` +
  `  CPU ms/req: server ${ms(p.cpu.server)} (event loop ${ms(p.cpu.loop)}), client ${ms(p.cpu.client)}` +
  (p.errors ? `  errors ${p.errors} (${p.firstError})` : '');

/**
 * Runs one point and the CPU each side spent on it, per request answered (warm-up included, both counted over
 * the same span): the server's process (every thread) and its event loop, and this load generator's process.
 * Per-request CPU holds the comparison where a loaded machine makes throughput swing between turns.
 */
async function measuredPoint(client, concurrency, options, serverPid) {
  let answered = 0;
  const counted = { infer: () => client.infer().then(() => void answered++), close: () => client.close() };
  const s0 = processCpuMs(serverPid);
  const c0 = process.cpuUsage();
  const p = await runConcurrency(counted, concurrency, options);
  const c = process.cpuUsage(c0);
  const s1 = processCpuMs(serverPid);
  const per = (v) => (answered > 0 ? v / answered : undefined);
  p.cpu = {
    answered,
    server: s0 && per(s1.total - s0.total),
    loop: s0 && per(s1.loop - s0.loop),
    client: per((c.user + c.system) / 1000),
  };
  return p;
}

/** `yqp-trt serve --grpc-port 0` on `repo`; resolves to its HTTP URL and gRPC address once both listen. */
function startServer(repo, profileDir) {
  const child = spawn(
    process.execPath,
    [
      ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
      'dist/cli/main.js',
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
      '--grpc-port',
      '0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let log = '';
    const found = {};
    child.stderr.on('data', (d) => {
      log += d;
      const http = /listening on (http:\/\/\S+)/.exec(log);
      const grpc = /gRPC listening on (\S+)/.exec(log);
      if (http) found.url = http[1];
      if (grpc) found.grpc = grpc[1];
      if (found.url && found.grpc) resolve({ child, ...found, log: () => log });
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}:\n${log}`)));
  });
}

export default async function main(args) {
  const duration = Number(arg(args, 'duration', '5'));
  const batch = Number(arg(args, 'batch', '1'));
  const levels = arg(args, 'concurrency', '1,4,16').split(',').map(Number);
  const rounds = Number(arg(args, 'rounds', '1'));
  // One side alone (for a profile of its serving): --sides grpc.
  const sides = arg(args, 'sides', 'http,grpc').split(',');
  // gRPC connections per point (HTTP/2 carries many calls on one): default one per request in flight, as HTTP.
  const grpcConnections = Number(arg(args, 'grpc-connections', '0'));
  const out = arg(args, 'out', undefined);
  const repo = mkdtempSync(join(tmpdir(), 'yqp-bench-grpc-'));
  mkdirSync(join(repo, 'blaze', '1'), { recursive: true });
  const proto = decodeOnnx(readFileSync(BLAZEFACE), BLAZEFACE);
  makeBatchDynamic(proto);
  writeFileSync(join(repo, 'blaze', '1', 'model.onnx'), encodeOnnx(proto));
  writeFileSync(join(repo, 'blaze', 'config.pbtxt'), PBTXT);

  const server = await startServer(repo, arg(args, 'server-cpu-prof', undefined));
  const say = (line) => process.stdout.write(`${line}\n`);
  say(
    `gRPC vs HTTP binary: BlazeFace (config.pbtxt), batch ${batch}, ${duration} s per point, ${cpus().length} cores`,
  );
  say(`server: HTTP ${server.url}, gRPC ${server.grpc}`);
  const feeds = syntheticInputs(
    resolveShapes([{ name: 'input:0', dtype: 'float32', dims: [-1, 128, 128, 3] }], batch, {}),
  );
  const results = { http: [], grpc: [] };
  const before = cpuTimes();
  try {
    // Rounds alternate which side goes first, so neither always meets the machine's state the other left.
    for (let round = 0; round < rounds; round++)
      for (const c of levels) {
        const clients = {
          http: () =>
            new HttpClient({ url: server.url, model: 'blaze', protocol: 'binary', feeds, connections: c }),
          grpc: () =>
            new GrpcClient({
              address: server.grpc,
              model: 'blaze',
              feeds,
              connections: grpcConnections ? Math.min(c, grpcConnections) : c,
            }),
        };
        const order = (round % 2 === 0 ? ['http', 'grpc'] : ['grpc', 'http']).filter((n) =>
          sides.includes(n),
        );
        for (const name of order) {
          const client = clients[name]();
          await client.infer();
          const p = await measuredPoint(
            client,
            c,
            { durationMs: duration * 1000, warmupMs: 1000 },
            server.child.pid,
          );
          await client.close();
          results[name].push({ round, concurrency: c, ...p });
          say(`  ${name.padEnd(4)} concurrency ${String(c).padStart(3)}: ${fmt(p)}`);
        }
      }
  } finally {
    server.child.kill('SIGTERM');
  }
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
  if (sides.length < 2) return;
  const best = (side) => summary(side).reduce((a, b) => (b.throughput > a.throughput ? b : a));
  const h = best('http');
  const g = best('grpc');
  const cpuLine = (p) =>
    `server ${ms(p.server)} ms/req (event loop ${ms(p.loop)}), client ${ms(p.client)} ms/req`;
  if (rounds > 1) say(`medians of ${rounds} rounds`);
  say(`best HTTP binary: ${h.throughput.toFixed(1)} req/s at concurrency ${h.concurrency}, ${cpuLine(h)}`);
  say(`best gRPC:        ${g.throughput.toFixed(1)} req/s at concurrency ${g.concurrency}, ${cpuLine(g)}`);
  const ratio = g.throughput / h.throughput;
  say(
    `gRPC / HTTP binary at saturation: ${ratio.toFixed(2)} (target >= 1.00): ${ratio >= 1 ? 'met' : 'NOT met'}`,
  );
  if (h.loop !== undefined && g.loop !== undefined)
    say(
      `server CPU per request, gRPC / HTTP binary: event loop ${(g.loop / h.loop).toFixed(2)}, process ${(g.server / h.server).toFixed(2)}; client ${(g.client / h.client).toFixed(2)} (lower is cheaper)`,
    );
  say(
    `machine during the run: ${cpuShares(before, cpuTimes())}, load average ${loadavg()
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
          results,
          summary: { http: summary('http'), grpc: summary('grpc') },
          ratio,
        },
        null,
        2,
      ) + '\n',
    );
}
