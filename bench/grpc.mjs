// `npm run bench -- grpc [--duration S] [--concurrency 1,4,16] [--batch B] [--out FILE]`
// Issue 14's gRPC target: gRPC at saturation >= HTTP with binary tensors, same server, same run. BlazeFace in a
// Triton-layout repository (config.pbtxt + 1/model.onnx, dynamic batching), served by `yqp-trt serve --grpc` in
// its own process; one load generator process drives both protocols in turns (HTTP binary, then gRPC, at each
// concurrency), so each side sees the same machine state. Prints each point, each side's best and the ratio.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GrpcClient, HttpClient, resolveShapes, runConcurrency, syntheticInputs } from '../dist/bench/index.js';
import { makeBatchDynamic } from '../dist/onnx/dynamic-batch.js';
import { decodeOnnx, encodeOnnx } from '../dist/onnx/model.js';
import { BLAZEFACE, arg, cpuShares, cpuTimes } from './lib/common.mjs';

const PBTXT = `name: "blaze"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "input:0" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 128, 128, 3 ] } ]
dynamic_batching { max_queue_delay_microseconds: 200 }
instance_group [ { count: 1 kind: KIND_CPU } ]
`;

const fmt = (p) =>
  `${p.throughput.toFixed(1).padStart(8)} req/s  p50 ${p.latencyMs.p50.toFixed(2)} ms  p99 ${p.latencyMs.p99.toFixed(2)} ms` +
  (p.errors ? `  errors ${p.errors} (${p.firstError})` : '');

/** `yqp-trt serve --grpc-port 0` on `repo`; resolves to its HTTP URL and gRPC address once both listen. */
function startServer(repo) {
  const child = spawn(
    process.execPath,
    ['dist/cli/main.js', 'serve', '--model-repository', repo, '--port', '0', '--grpc-port', '0'],
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
  const out = arg(args, 'out', undefined);
  const repo = mkdtempSync(join(tmpdir(), 'yqp-bench-grpc-'));
  mkdirSync(join(repo, 'blaze', '1'), { recursive: true });
  const proto = decodeOnnx(readFileSync(BLAZEFACE), BLAZEFACE);
  makeBatchDynamic(proto);
  writeFileSync(join(repo, 'blaze', '1', 'model.onnx'), encodeOnnx(proto));
  writeFileSync(join(repo, 'blaze', 'config.pbtxt'), PBTXT);

  const server = await startServer(repo);
  const say = (line) => process.stdout.write(`${line}\n`);
  say(`gRPC vs HTTP binary: BlazeFace (config.pbtxt), batch ${batch}, ${duration} s per point, ${cpus().length} cores`);
  say(`server: HTTP ${server.url}, gRPC ${server.grpc}`);
  const feeds = syntheticInputs(
    resolveShapes([{ name: 'input:0', dtype: 'float32', dims: [-1, 128, 128, 3] }], batch, {}),
  );
  const results = { http: [], grpc: [] };
  const before = cpuTimes();
  try {
    for (const c of levels) {
      const clients = {
        http: new HttpClient({ url: server.url, model: 'blaze', protocol: 'binary', feeds, connections: c }),
        grpc: new GrpcClient({ address: server.grpc, model: 'blaze', feeds, connections: c }),
      };
      for (const [name, client] of Object.entries(clients)) {
        await client.infer();
        const p = await runConcurrency(client, c, { durationMs: duration * 1000, warmupMs: 1000 });
        await client.close();
        results[name].push({ concurrency: c, ...p });
        say(`  ${name.padEnd(4)} concurrency ${String(c).padStart(3)}: ${fmt(p)}`);
      }
    }
  } finally {
    server.child.kill('SIGTERM');
  }
  const best = (side) => Math.max(...results[side].map((p) => p.throughput));
  const ratio = best('grpc') / best('http');
  say(`best: HTTP binary ${best('http').toFixed(1)} req/s, gRPC ${best('grpc').toFixed(1)} req/s`);
  say(`gRPC / HTTP binary at saturation: ${ratio.toFixed(2)} (target >= 1.00): ${ratio >= 1 ? 'met' : 'NOT met'}`);
  say(`machine during the run: ${cpuShares(before, cpuTimes())}`);
  if (out) writeFileSync(out, JSON.stringify({ batch, duration, results, ratio }, null, 2) + '\n');
}
