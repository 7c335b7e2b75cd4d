// `npm run bench -- serve [--duration S] [--concurrency N] [--cores N] [--threads-per-context N] [--delay-us US]
//   [--spin-wait true|false] [--client-processes N] [--http-workers N] [--serve-contexts N --serve-threads T]
//   [--serve-delay-us D] [--out FILE] [--repo DIR]`
// The serving targets of issue 6, BlazeFace on the onnxruntime backend, every side measured in this one run:
//   1. 4 contexts + dynamic batching against 1 context without batching, in process, concurrency N (16):
//      target >= 3x throughput.
//   2. HTTP with binary tensors against in-process calls at saturation (same model settings: with several server
//      processes by default one single-thread context per core they leave, 12 x 1 on 16 cores; the HTTP load
//      generator in its own processes, as perf_analyzer; the server as `yqp-trt serve --http-workers N` (4 from
//      8 cores up); each side's best throughput over concurrency N, 2N, 4N, 8N): >= 0.8x.
//   3. Below saturation (HTTP binary, open loop at half the saturated rate, 16 clients per generator process
//      with a connection each; and one request at a time): p99 <= 2x p50. Beside it, the machine's own tail for
//      the same work (Python onnxruntime, no HTTP, bench/peers/ort_tail.py), the servers' GC and the VM's steal.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../dist/index.js';
import { InProcessClient, resolveShapes, runConcurrency, runRate, syntheticInputs } from '../dist/bench/index.js';
import { InferenceServer } from '../dist/serve/index.js';
import { arg, buildBatchedBlazeFace, cpuShares, cpuTimes, ortTailPeer } from './lib/common.mjs';
import { httpClients } from './lib/http-client-process.mjs';
import { spawnServe } from './lib/serve-process.mjs';

const fmt = (p) =>
  `${p.throughput.toFixed(1).padStart(8)} req/s  p50 ${p.latencyMs.p50.toFixed(2)} ms  p90 ${p.latencyMs.p90.toFixed(2)} ms  p99 ${p.latencyMs.p99.toFixed(2)} ms` +
  (p.errors ? `  errors ${p.errors} (${p.firstError})` : '');

/**
 * Watches a model's batches while `run` goes: mean batch size, and how busy its contexts were (compute time over
 * wall time, per context, averaged): whether a shortfall is the contexts waiting for work or working slower.
 */
async function watched(model, run) {
  const batches = [];
  const listener = (e) => batches.push({ ...e, end: performance.now() });
  model.scheduler.on('batch', listener);
  const t0 = performance.now();
  try {
    const p = await run();
    const wall = performance.now() - t0;
    // A context that pipelines holds two batches at once: count the union of its batches' spans, not their sum.
    let busy = 0;
    for (let c = 0; c < model.scheduler.contexts; c++) {
      let until = -Infinity;
      for (const e of batches
        .filter((b) => b.context === c)
        .sort((a, b) => a.end - a.computeMs - (b.end - b.computeMs))) {
        const start = Math.max(e.end - e.computeMs, until);
        if (e.end > start) busy += e.end - start;
        until = Math.max(until, e.end);
      }
    }
    p.meanBatch = batches.reduce((a, e) => a + e.size, 0) / Math.max(1, batches.length);
    p.contextBusy = busy / (wall * model.scheduler.contexts);
    return p;
  } finally {
    model.scheduler.off('batch', listener);
  }
}

/** Every sample of metric `name` in a Prometheus text, as [the labels inside the braces, value]. */
function samples(text, name) {
  return [...text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))].map((m) => [
    m[1],
    Number(m[2]),
  ]);
}

/** A label's value in a sample's label text (`le="0.005",model="face"`). */
const label = (labels, key) => new RegExp(`(?:^|,)${key}="([^"]*)"`).exec(labels)?.[1];

/**
 * Sum and count of the server's own duration histograms for model face (and of yqp_batch_size: the mean batch
 * where the server is other processes and its batches cannot be watched).
 */
async function serverTimes(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name) => samples(text, name).find(([l]) => label(l, 'model') === 'face')?.[1] ?? 0;
  const read = (name) => ({ sum: value(`${name}_sum`), count: value(`${name}_count`) });
  return {
    request: read('yqp_request_duration_seconds'),
    queue: read('yqp_queue_duration_seconds'),
    compute: read('yqp_compute_duration_seconds'),
    batch: read('yqp_batch_size'),
  };
}

/** Requests each server process answered between two /metrics texts, as shares of the whole ("31/25/22/22%"). */
function workerShares(beforeText, afterText) {
  const counts = (text) =>
    new Map(samples(text, 'yqp_http_worker_requests_total').map(([l, v]) => [Number(label(l, 'worker')), v]));
  const a = counts(beforeText);
  const d = [...counts(afterText)].sort(([x], [y]) => x - y).map(([w, n]) => n - (a.get(w) ?? 0));
  const total = d.reduce((x, y) => x + y, 0);
  return d.map((n) => `${Math.round((100 * n) / Math.max(1, total))}%`).join('/');
}

/** The smallest bucket bound holding `q` of the server's request durations between two /metrics texts (ms). */
function serverQuantileMs(beforeText, afterText, q) {
  const buckets = (text) =>
    new Map(
      samples(text, 'yqp_request_duration_seconds_bucket')
        .filter(([l]) => label(l, 'model') === 'face')
        .map(([l, v]) => [label(l, 'le'), v]),
    );
  const a = buckets(beforeText);
  const b = buckets(afterText);
  const total = (b.get('+Inf') ?? 0) - (a.get('+Inf') ?? 0);
  for (const [le, n] of b)
    if (n - (a.get(le) ?? 0) >= q * total) return le === '+Inf' ? Infinity : Number(le) * 1000;
  return NaN;
}

/** The server processes' GC pauses between two /metrics texts (prom-client's default GC histogram, every kind). */
function serverGc(beforeText, afterText) {
  const total = (text, le) =>
    samples(text, 'yqp_process_nodejs_gc_duration_seconds_bucket')
      .filter(([l]) => label(l, 'le') === le)
      .reduce((s, [, v]) => s + v, 0);
  const sum = (text) =>
    samples(text, 'yqp_process_nodejs_gc_duration_seconds_sum').reduce((s, [, v]) => s + v, 0);
  const pauses = total(afterText, '+Inf') - total(beforeText, '+Inf');
  return {
    pauses,
    over10ms: pauses - (total(afterText, '0.01') - total(beforeText, '0.01')),
    ms: (sum(afterText) - sum(beforeText)) * 1000,
  };
}

/** Mean per observation of each server histogram between two serverTimes readings (ms; batch: requests). */
function meanMs(before, after) {
  const out = {};
  for (const k of Object.keys(after))
    out[k] =
      ((after[k].sum - before[k].sum) / Math.max(1, after[k].count - before[k].count)) *
      (k === 'batch' ? 1 : 1000);
  return out;
}

/**
 * `yqp-trt serve --http-workers N` as its own process (N server processes behind one port), with the model
 * settings of `options`; resolves with its URL and a stop function (SIGTERM, drained).
 */
function serveProcess(repo, options, workers) {
  const batching = options.dynamicBatching;
  return spawnServe(
    [
      '--model-repository',
      repo,
      '--load-model',
      'face',
      '--contexts',
      String(options.contexts),
      '--threads-per-context',
      String(options.threadsPerContext),
      '--http-workers',
      String(workers),
      ...(options.spinWait === undefined ? [] : [options.spinWait ? '--spin-wait' : '--no-spin-wait']),
      ...(batching
        ? [
            '--max-queue-delay-us',
            String(batching.maxQueueDelayMicroseconds),
            ...(batching.preferredBatchSizes ?? []).flatMap((b) => ['--preferred-batch-size', String(b)]),
          ]
        : ['--no-dynamic-batching']),
    ],
    { nodeArgs: process.execArgv },
  );
}

/** The best throughput over concurrency, 2x, 4x ..., stopping once doubling gains under 3%. */
async function saturate(point, from, to = from * 8) {
  let best;
  for (let c = from; c <= to; c *= 2) {
    const p = await point(c);
    const gain = best ? p.throughput / best.throughput : Infinity;
    if (!best || p.throughput > best.throughput) best = p;
    if (gain < 1.03) break;
  }
  return best;
}

export default async function main(args) {
  const durationMs = Math.round(Number(arg(args, 'duration', '4')) * 1000);
  const warmupMs = Math.min(1500, Math.round(durationMs / 3));
  const concurrency = Number(arg(args, 'concurrency', '16'));
  const cores = Number(arg(args, 'cores', String(availableParallelism())));
  const delayUs = Number(arg(args, 'delay-us', '500'));
  const clientProcesses = Number(arg(args, 'client-processes', String(cores >= 8 ? 4 : 1)));
  const httpWorkers = Number(arg(args, 'http-workers', String(cores >= 8 ? 4 : 1)));
  const out = arg(args, 'out', undefined);
  const repo = arg(args, 'repo', mkdtempSync(join(tmpdir(), 'yqp-bench-serve-')));
  const machine = `${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()} (using ${cores})`;
  console.log(`serve bench on ${machine}; concurrency ${concurrency}, ${durationMs / 1000} s per point`);

  const entry = await buildBatchedBlazeFace(repo);
  const feeds = syntheticInputs(resolveShapes(entry.config.inputs, 1));
  const load = { durationMs, warmupMs };
  const nodeOptions = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ').trim();
  if (nodeOptions) console.log(`node options: ${nodeOptions}`);
  const results = {
    nodeOptions,
    clientProcesses,
    httpWorkers,
    date: new Date().toISOString(),
    machine,
    cores,
    concurrency,
    durationS: durationMs / 1000,
    points: {},
  };

  const spinArg = arg(args, 'spin-wait', undefined);
  const spin = spinArg === undefined ? {} : { spinWait: spinArg !== 'false' };
  const inProcess = async (label, options, rate, inFlight = concurrency) => {
    const model = await loadModel(entry.dir, { ...options, ...spin });
    try {
      const client = new InProcessClient(model, feeds);
      const p = await watched(model, () =>
        rate === undefined ? runConcurrency(client, inFlight, load) : runRate(client, rate, load),
      );
      console.log(
        `${label.padEnd(44)} ${fmt(p)}  mean batch ${p.meanBatch.toFixed(1)}  busy ${(100 * p.contextBusy).toFixed(0)}%`,
      );
      results.points[label] = p;
      return p;
    } finally {
      await model.close();
    }
  };

  // --- 1. dynamic batching over 4 contexts vs 1 context, no batching (threads: all cores either way) ---
  const single = await inProcess(`1 context x ${cores} threads, no batching`, {
    contexts: 1,
    threadsPerContext: cores,
    dynamicBatching: false,
  });
  // Intra-op threads: the cores left once each HTTP server process has one for its event loop (4 x 3 on 16 cores
  // with 4 server processes); the in-process side uses the same settings.
  const perContext = Number(
    arg(
      args,
      'threads-per-context',
      String(Math.max(1, Math.floor((cores - (httpWorkers > 1 ? httpWorkers : 0)) / 4))),
    ),
  );
  await inProcess(`4 contexts x ${perContext} threads, no batching`, {
    contexts: 4,
    threadsPerContext: perContext,
    dynamicBatching: false,
  });
  // Triton's default max queue delay is 0 (batch whatever waits when a context frees); the second variant
  // waits up to delayUs for a preferred batch of concurrency / contexts.
  const preferred = Math.max(1, Math.round(concurrency / 4));
  const variants = [
    { label: `4 x ${perContext}, dynamic batching (0 us)`, batching: { maxQueueDelayMicroseconds: 0 } },
    {
      label: `4 x ${perContext}, dynamic batching (${delayUs} us, preferred ${preferred})`,
      batching: { maxQueueDelayMicroseconds: delayUs, preferredBatchSizes: [preferred] },
    },
  ];
  let batched;
  let settings;
  for (const v of variants) {
    const options = { contexts: 4, threadsPerContext: perContext, dynamicBatching: v.batching };
    const p = await inProcess(v.label, options);
    if (!batched || p.throughput > batched.throughput) {
      batched = p;
      settings = options;
      results.batchingSettings = v.label;
    }
  }

  // The serving settings (2 and 3), both sides: with several server processes, by default one single-thread
  // context per core left once each server process has one (12 x 1 on 16 cores, 3 per process; no spinning),
  // the batching variant above kept. Single-thread contexts leave no intra-op pool waiting on its slowest thread,
  // and 3 per process leave a request waiting behind its own process's busy context less often than 1 does (the
  // tail of 4 x 3; BENCHMARKS.md, serving, fourth session). --serve-contexts N --serve-threads T choose others.
  const serveContexts = arg(
    args,
    'serve-contexts',
    httpWorkers > 1 ? String(Math.max(1, cores - httpWorkers)) : undefined,
  );
  // --serve-delay-us D: the serving settings batch with this max queue delay (no preferred size) instead of the
  // batching variant that won in 1.
  const serveDelay = arg(args, 'serve-delay-us', undefined);
  if (serveDelay !== undefined)
    settings = { ...settings, dynamicBatching: { maxQueueDelayMicroseconds: Number(serveDelay) } };
  if (serveContexts !== undefined) {
    const threads = Number(arg(args, 'serve-threads', '1'));
    settings = {
      ...settings,
      contexts: Number(serveContexts),
      threadsPerContext: threads,
      ...(threads === 1 ? { spinWait: false } : {}),
    };
  }
  console.log(
    `serving with ${settings.contexts} contexts x ${settings.threadsPerContext} threads${httpWorkers > 1 ? ` over ${httpWorkers} server processes` : ''}, max queue delay ${settings.dynamicBatching.maxQueueDelayMicroseconds} us${settings.dynamicBatching.preferredBatchSizes ? `, preferred ${settings.dynamicBatching.preferredBatchSizes}` : ''}`,
  );
  results.servingSettings = { ...settings, ...spin };

  // --- 2. HTTP binary (client in its own process) vs in process, the best batching settings, at saturation ---
  // One server process (this one, so its batches can be watched), or `yqp-trt serve --http-workers N`.
  const server =
    httpWorkers > 1
      ? undefined
      : await InferenceServer.create({
          modelRepository: repo,
          port: 0,
          models: ['face'],
          loadOptions: { ...settings, ...spin },
        });
  const child = server ? undefined : await serveProcess(repo, { ...settings, ...spin }, httpWorkers);
  const url = server ? await server.listen() : child.url;
  const servedBy = server ? '1 server process' : `${httpWorkers} server processes`;
  let http;
  let below;
  let belowClosed;
  let quarter;
  let machineTail;
  try {
    const feedsSpec = resolveShapes(entry.config.inputs, 1);
    const common = { url, feedsSpec, protocol: 'binary', load };
    // Saturation as perf_analyzer finds it: raise the concurrency until throughput stops growing (a closed loop
    // at a fixed concurrency also measures the round trip's latency, by Little's law, not only capacity).
    const served = server?.manager.get('face');
    http = await saturate(async (c) => {
      const before = await serverTimes(url);
      const load = () => httpClients({ ...common, mode: 'concurrency', value: c }, clientProcesses);
      const p = served ? await watched(served, load) : await load();
      // Where a request's time goes: the client's mean latency against the server's own handler, queue and
      // compute means (the handler starts once the body is read, and ends when the answer is handed to Node).
      p.serverMs = meanMs(before, await serverTimes(url));
      p.meanBatch ??= p.serverMs.batch;
      console.log(
        `${`HTTP binary, concurrency ${c} (${clientProcesses} clients, ${servedBy})`.padEnd(44)} ${fmt(p)}  mean batch ${p.meanBatch.toFixed(1)}${p.contextBusy === undefined ? '' : `  busy ${(100 * p.contextBusy).toFixed(0)}%`}`,
      );
      console.log(
        `${''.padEnd(44)} mean ms: client ${p.latencyMs.mean.toFixed(2)}, server handler ${p.serverMs.request.toFixed(2)} (queue ${p.serverMs.queue.toFixed(2)}, compute ${p.serverMs.compute.toFixed(2)})`,
      );
      results.points[`HTTP binary, concurrency ${c}`] = p;
      return p;
    }, concurrency);
    // --- 3. below saturation: open loop at half the saturated HTTP rate, and one request at a time ---
    const rate = Math.max(1, Math.round(http.throughput / 2));
    const metricsBefore = await (await fetch(`${url}/metrics`)).text();
    const cpuBefore = cpuTimes();
    below = await httpClients({ ...common, mode: 'rate', value: rate }, clientProcesses);
    below.machine = cpuShares(cpuBefore, cpuTimes());
    const metricsAfter = await (await fetch(`${url}/metrics`)).text();
    below.serverGc = serverGc(metricsBefore, metricsAfter);
    below.serverP50Ms = serverQuantileMs(metricsBefore, metricsAfter, 0.5);
    below.serverP99Ms = serverQuantileMs(metricsBefore, metricsAfter, 0.99);
    below.workerShares = workerShares(metricsBefore, metricsAfter);
    console.log(`${`HTTP binary, open loop ${rate} req/s`.padEnd(44)} ${fmt(below)}`);
    console.log(
      `${''.padEnd(44)} server handler p50 <= ${below.serverP50Ms} ms, p99 <= ${below.serverP99Ms} ms (histogram buckets); client event-loop delay p99 ${below.clientLoopDelayMs.p99.toFixed(2)} ms, max ${below.clientLoopDelayMs.max.toFixed(2)} ms; requests per server process ${below.workerShares}`,
    );
    console.log(
      `${''.padEnd(44)} server GC: ${below.serverGc.pauses} pauses, ${below.serverGc.over10ms} over 10 ms, ${below.serverGc.ms.toFixed(0)} ms in all; machine: ${below.machine}`,
    );
    results.points['HTTP binary, half rate'] = below;
    // The machine's own tail for this work, right after: Python onnxruntime (none of our code), BlazeFace batch 1
    // at the same rate over the same contexts x threads. A lent VM's noise shows here as well as in ours.
    machineTail = ortTailPeer({
      sessions: settings.contexts,
      threads: settings.threadsPerContext,
      rate,
      seconds: 3,
    });
    console.log(
      `${'machine reference, same rate, no HTTP'.padEnd(44)} ${machineTail.error ? `unavailable (${machineTail.error})` : `Python onnxruntime ${machineTail.ort}: run p50 ${machineTail.p50.toFixed(2)} ms p99 ${machineTail.p99.toFixed(2)} ms (x${(machineTail.p99 / machineTail.p50).toFixed(2)}); latency from due time p50 ${machineTail.latencyP50.toFixed(2)} p99 ${machineTail.latencyP99.toFixed(2)} (x${(machineTail.latencyP99 / machineTail.latencyP50).toFixed(2)})`}`,
    );
    // A lighter load for reference (not a target): how the tail depends on how busy the contexts are.
    const quarterRate = Math.max(1, Math.round(http.throughput / 4));
    quarter = await httpClients({ ...common, mode: 'rate', value: quarterRate }, clientProcesses);
    console.log(`${`HTTP binary, open loop ${quarterRate} req/s`.padEnd(44)} ${fmt(quarter)}`);
    results.points['HTTP binary, quarter rate'] = quarter;
    belowClosed = await httpClients({ ...common, mode: 'concurrency', value: 1 }, 1);
    console.log(`${'HTTP binary, concurrency 1'.padEnd(44)} ${fmt(belowClosed)}`);
    results.points['HTTP binary, concurrency 1'] = belowClosed;
  } finally {
    await server?.close();
    await child?.stop();
  }
  const inproc = await saturate(
    (c) => inProcess(`in process, concurrency ${c}`, settings, undefined, c),
    concurrency,
  );
  // Where a tail below saturation comes from: the same open loop in process (no HTTP).
  const rate = Math.max(1, Math.round(http.throughput / 2));
  const belowInProcess = await inProcess(`in process, open loop ${rate} req/s`, settings, rate);

  const saturated = inproc.throughput;
  results.targets = {
    batchingSpeedup: { value: batched.throughput / single.throughput, target: 3 },
    httpOverInProcess: { value: http.throughput / saturated, target: 0.8 },
    p99OverP50BelowSaturation: { value: below.latencyMs.p99 / below.latencyMs.p50, target: 2, max: true },
    p99OverP50BelowSaturationInProcess: {
      value: belowInProcess.latencyMs.p99 / belowInProcess.latencyMs.p50,
      target: 2,
      max: true,
      note: 'not a target: the same open loop without HTTP',
    },
    p99OverP50QuarterRate: {
      value: quarter.latencyMs.p99 / quarter.latencyMs.p50,
      target: 2,
      max: true,
      note: 'not a target: HTTP open loop at a quarter of the saturated rate',
    },
    machineLatencyP99OverP50: {
      value: machineTail?.error ? NaN : machineTail.latencyP99 / machineTail.latencyP50,
      target: 2,
      max: true,
      note: "not a target: the machine's own tail for this work (Python onnxruntime open loop, batch 1, the half rate, no HTTP)",
    },
    p99OverP50Concurrency1: {
      value: belowClosed.latencyMs.p99 / belowClosed.latencyMs.p50,
      target: 2,
      max: true,
    },
  };
  console.log('');
  for (const [name, t] of Object.entries(results.targets)) {
    if (Number.isNaN(t.value)) {
      console.log(`${name.padEnd(36)} unavailable (${t.note})`);
      continue;
    }
    const ok = t.max ? t.value <= t.target : t.value >= t.target;
    console.log(
      `${name.padEnd(36)} ${t.value.toFixed(2)}  (${t.note ? 'for reference, ' : ''}target ${t.max ? '<=' : '>='} ${t.target}) ${ok ? 'met' : 'NOT met'}`,
    );
  }
  if (out) writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
}
