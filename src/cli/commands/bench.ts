import { writeFile } from 'node:fs/promises';
import type { Argv, CommandModule } from 'yargs';
import { YqpError, expectPositiveInteger, invalidParameter } from '../../errors.js';
import { loadModel, type Model } from '../../model.js';
import {
  HttpClient,
  InProcessClient,
  fetchModelMetadata,
  resolveShapes,
  syntheticInputs,
  type BenchClient,
} from '../../bench/client.js';
import { GrpcClient, fetchModelInputsGrpc } from '../../bench/grpc-client.js';
import { plotHtml, plotSvg } from '../../bench/plot.js';
import { openBenchSharedMemory, type BenchSharedMemory } from '../../bench/shared-memory-client.js';
import { DTYPE_BYTES, elementCount } from '../../tensor.js';
import { sweep, type LoadPoint } from '../../bench/runner.js';
import { deviceLoadOptions, withDeviceOptions, type DeviceArgs } from '../device-options.js';
import { EXIT, runCommand } from '../run-command.js';

interface BenchArgs extends DeviceArgs {
  target: string;
  model?: string;
  'model-version'?: string;
  protocol: 'json' | 'binary' | 'grpc';
  concurrency?: (number | string)[];
  'concurrency-range'?: string;
  'request-rate'?: number[];
  clients?: number;
  duration: number;
  warmup: number;
  batch: number;
  shape?: string[];
  contexts?: number;
  'threads-per-context'?: number;
  'spin-wait'?: boolean;
  'dynamic-batching': boolean;
  'max-queue-delay-us'?: number;
  'auth-token'?: string;
  'shared-memory': 'none' | 'system' | 'cuda';
  'shared-memory-key-prefix': string;
  json?: string | boolean;
  plot?: string;
  verbose?: boolean;
}

const CONCURRENCY_FORMS =
  'a positive integer, a list (1 2 4, or 1,2,4) or a range start:end[:step] (1:8, 1:8:2, 1:16:x2, 1-8)';

/**
 * Concurrency levels: numbers, comma lists, ranges start:end[:step] (perf_analyzer's --concurrency-range; step
 * doubling when written x2) and start-end. Each malformed value is named as given.
 */
export function parseConcurrency(values: (number | string)[], flag = '--concurrency'): number[] {
  const out: number[] = [];
  for (const v of values.flatMap((x) => String(x).split(','))) {
    const text = v.trim();
    const range = /^(\d+)(?::(\d+)(?::(x?)(\d+))?|-(\d+))$/.exec(text);
    if (range && (range[2] !== undefined || range[5] !== undefined)) {
      const [start, end] = [Number(range[1]), Number(range[2] ?? range[5])];
      const mul = range[3] === 'x';
      const step = Number(range[4] ?? (mul ? 2 : 1));
      if (start < 1 || end < start || step < 1 || (mul && step < 2))
        throw invalidParameter(flag, 'start:end[:step] with 1 <= start <= end and step >= 1', text);
      for (let c = start; c <= end; c = mul ? c * step : c + step) out.push(c);
      continue;
    }
    const n = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(Number.isInteger(n) && n >= 1)) throw invalidParameter(flag, CONCURRENCY_FORMS, text);
    out.push(n);
  }
  return out;
}

/** A fetch that failed before any answer, as one line naming the URL and why (refused, unknown host, ...). */
export function unreachable(url: string, e: unknown): YqpError | undefined {
  if (!(e instanceof TypeError) || e.message !== 'fetch failed') return undefined;
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const why =
    cause?.code === 'ECONNREFUSED'
      ? 'connection refused'
      : cause?.code === 'ENOTFOUND'
        ? 'no such host'
        : (cause?.code ?? cause?.message ?? 'no answer');
  return new YqpError('E_UNREACHABLE', `Cannot reach the server at ${url}: ${why}`, {
    argument: 'target',
    expected: 'a running server (yqp-trt serve, Triton)',
    received: url,
    solutions: [`start one: yqp-trt serve --model-repository models --port ${new URL(url).port || '80'}`],
  });
}

function parseShapes(list: string[] = []): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const s of list) {
    const i = s.lastIndexOf(':');
    const dims =
      i > 0
        ? s
            .slice(i + 1)
            .split(',')
            .map(Number)
        : [];
    if (i <= 0 || dims.length === 0 || !dims.every((d) => Number.isInteger(d) && d >= 0))
      throw invalidParameter('--shape', 'name:d0,d1,... (e.g. x:1,3,640,640)', s);
    out[s.slice(0, i)] = dims;
  }
  return out;
}

const fmt = (p: LoadPoint, batch: number) =>
  `${p.concurrency !== undefined ? `concurrency ${String(p.concurrency).padStart(3)}` : `rate ${String(p.requestRate).padStart(6)}/s`}: ` +
  `${(p.throughput * batch).toFixed(1).padStart(8)} infer/s  p50 ${p.latencyMs.p50.toFixed(2)} ms  p90 ${p.latencyMs.p90.toFixed(2)} ms  p99 ${p.latencyMs.p99.toFixed(2)} ms` +
  (p.errors ? `  errors ${p.errors} (${p.firstError})` : '');

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench <target>',
  describe:
    'Measure throughput and latency (perf_analyzer-like) of a repository entry in process or of a server over HTTP',
  builder: (y: Argv) =>
    withDeviceOptions(y)
      .positional('target', {
        type: 'string',
        demandOption: true,
        describe:
          'repository entry (<repo>/<name>) to run in process, a server URL (http://127.0.0.1:8000), or with --protocol grpc its gRPC address (127.0.0.1:8001)',
      })
      .option('model', { type: 'string', describe: 'model name on the server (HTTP)' })
      .option('model-version', { type: 'string', describe: 'model version (HTTP)' })
      .option('protocol', {
        choices: ['json', 'binary', 'grpc'] as const,
        default: 'binary' as const,
        describe:
          'HTTP body format, or grpc (the target is then grpc://host:port or host:port of `serve --grpc`)',
      })
      .option('concurrency', {
        type: 'string',
        array: true,
        describe:
          'requests in flight: list (1 2 4), comma list, or range start:end[:step] / start:end:x2 / start-end',
      })
      .option('concurrency-range', {
        type: 'string',
        describe: "perf_analyzer's form of --concurrency: start:end:step (1:8:1)",
        conflicts: 'concurrency',
      })
      .option('request-rate', {
        type: 'number',
        array: true,
        describe: 'fixed request rates (requests/s), open loop',
      })
      .option('clients', {
        type: 'number',
        describe:
          'HTTP open loop: send as this many clients with a connection each, in turn (cameras); default one shared pool',
      })
      .option('duration', { type: 'number', default: 5, describe: 'measured seconds per point' })
      .option('warmup', { type: 'number', default: 1, describe: 'warm-up seconds per point' })
      .option('batch', { type: 'number', default: 1, describe: 'batch size of each request' })
      .option('shape', {
        type: 'string',
        array: true,
        describe: 'shape of an input with dynamic dims: name:d0,d1,...',
      })
      .option('contexts', { type: 'number', describe: 'in process: execution contexts' })
      .option('threads-per-context', {
        type: 'number',
        describe: 'in process: onnxruntime threads per context',
      })
      .option('spin-wait', {
        type: 'boolean',
        describe: 'in process: onnxruntime threads spin between runs (default: when a core is left free)',
      })
      .option('dynamic-batching', {
        type: 'boolean',
        default: true,
        describe: 'in process: use config.json batching',
      })
      .option('max-queue-delay-us', {
        type: 'number',
        describe: 'in process: dynamic batching with this max queue delay (overrides config.json)',
      })
      .option('auth-token', { type: 'string', describe: 'bearer token (HTTP; default env YQP_AUTH_TOKEN)' })
      .option('shared-memory', {
        choices: ['none', 'system', 'cuda'] as const,
        default: 'none' as const,
        describe:
          "HTTP: inputs and outputs in a shared memory region this process registers (perf_analyzer's --shared-memory; cuda needs the server on another process of this GPU machine)",
      })
      .option('shared-memory-key-prefix', {
        type: 'string',
        default: '/yqp',
        describe: "with --shared-memory system: the server's --shared-memory-key-prefix",
      })
      .option('json', { describe: 'write the results as JSON to this file (no value: stdout)' })
      .option('plot', {
        type: 'string',
        describe: 'write a throughput-vs-latency plot (.svg or .html)',
      })
      .example('$0 bench models/face --concurrency 1:16:x2', 'in process: concurrency 1, 2, 4, 8, 16')
      .example(
        '$0 bench http://127.0.0.1:8000 --model face --concurrency-range 1:8:1 --plot report.html',
        'a running server over HTTP binary, plot and table in report.html',
      )
      .example(
        '$0 bench http://127.0.0.1:8000 --model face --protocol json --shared-memory cuda',
        'tensors in CUDA shared memory, not in the bodies (serve --shared-memory cuda --device cuda)',
      )
      .example(
        '$0 bench http://127.0.0.1:8000 --model face --request-rate 100 200 400 --json rate.json',
        'open loop at fixed request rates, results as JSON',
      ) as unknown as Argv<BenchArgs>,
  handler: runCommand('bench', async (argv: BenchArgs) => {
    expectPositiveInteger('--batch', argv.batch);
    if (!(argv.duration > 0))
      throw invalidParameter('--duration', 'a positive number of seconds', argv.duration);
    if (!(argv.warmup >= 0))
      throw invalidParameter('--warmup', 'a non-negative number of seconds', argv.warmup);
    if (argv.plot !== undefined && !/\.(svg|html?)$/i.test(argv.plot))
      throw invalidParameter('--plot', 'a file name ending in .svg or .html', argv.plot);
    const rates = argv['request-rate'] ?? [];
    if (argv.clients !== undefined) expectPositiveInteger('--clients', argv.clients);
    for (const r of rates)
      if (!(r > 0)) throw invalidParameter('--request-rate', 'positive requests per second', r);
    const concurrency = argv['concurrency-range']
      ? parseConcurrency([argv['concurrency-range']], '--concurrency-range')
      : argv.concurrency
        ? parseConcurrency(argv.concurrency)
        : rates.length > 0
          ? []
          : [1, 2, 4, 8, 16];
    const shapes = parseShapes(argv.shape);
    const grpc = argv.protocol === 'grpc';
    const http = grpc || /^https?:\/\//.test(argv.target);
    const token = argv['auth-token'] ?? (process.env.YQP_AUTH_TOKEN || undefined);
    let client: BenchClient;
    let model: Model | undefined;
    let region: BenchSharedMemory | undefined;
    const maxConcurrency = Math.max(1, ...concurrency);
    if (argv['shared-memory'] !== 'none' && !http)
      throw invalidParameter(
        '--shared-memory',
        'a server URL as the target (in process, tensors are passed in place already)',
        argv.target,
      );
    if (http) {
      if (!argv.model)
        throw new YqpError('E_ARGUMENT', 'Expected --model <name> with a server URL but received none', {
          argument: '--model',
        });
      if (argv['shared-memory'] !== 'none' && argv.protocol !== 'json')
        throw invalidParameter(
          '--protocol',
          "json with --shared-memory (the tensors are in the region, the body is Triton's JSON)",
          argv.protocol,
        );
      const metadata = grpc
        ? { inputs: await fetchModelInputsGrpc(argv.target, argv.model, token), outputs: [] }
        : await fetchModelMetadata(argv.target, argv.model, token).catch((e: unknown) => {
            throw unreachable(argv.target, e) ?? e;
          });
      const feeds = syntheticInputs(resolveShapes(metadata.inputs, argv.batch, shapes));
      if (argv['shared-memory'] !== 'none')
        region = await openBenchSharedMemory({
          url: argv.target,
          model: argv.model,
          kind: argv['shared-memory'],
          feeds,
          outputs: resolveShapes(metadata.outputs, argv.batch, shapes).map((o) => ({
            name: o.name,
            byteSize: elementCount(o.dims) * DTYPE_BYTES[o.dtype],
          })),
          slots: rates.length > 0 ? 256 : maxConcurrency,
          keyPrefix: argv['shared-memory-key-prefix'],
          authToken: token,
        });
      client = grpc
        ? new GrpcClient({
            address: argv.target,
            model: argv.model,
            version: argv['model-version'],
            feeds,
            // HTTP/2 multiplexes: a few connections carry any concurrency.
            connections: Math.min(4, rates.length > 0 ? 4 : maxConcurrency),
            authToken: token,
          })
        : new HttpClient({
            url: argv.target,
            model: argv.model,
            version: argv['model-version'],
            protocol: argv.protocol as 'json' | 'binary',
            feeds,
            // Open loop may hold many requests at once; closed loop holds `concurrency`.
            connections: rates.length > 0 ? 256 : maxConcurrency,
            clients: argv.clients,
            authToken: token,
            requestBodies: region?.bodies,
          });
    } else {
      model = await loadModel(argv.target, {
        ...deviceLoadOptions(argv),
        contexts: argv.contexts,
        threadsPerContext: argv['threads-per-context'],
        spinWait: argv['spin-wait'],
        ...(!argv['dynamic-batching']
          ? { dynamicBatching: false as const }
          : argv['max-queue-delay-us'] !== undefined
            ? { dynamicBatching: { maxQueueDelayMicroseconds: argv['max-queue-delay-us'] } }
            : {}),
      });
      const feeds = syntheticInputs(resolveShapes(model.config.inputs, argv.batch, shapes));
      client = new InProcessClient(model, feeds);
    }
    const toStdout = argv.json === true || argv.json === '';
    const say = (line: string) => (toStdout ? process.stderr : process.stdout).write(`${line}\n`);
    say(`${client.description}, batch ${argv.batch}, ${argv.duration} s per point`);
    let points: LoadPoint[];
    try {
      await client.infer(); // fails fast on a bad target before the sweep
      points = await sweep(client, {
        concurrency,
        requestRate: rates,
        durationMs: Math.round(argv.duration * 1000),
        warmupMs: Math.round(argv.warmup * 1000),
        onPoint: (p) => say(fmt(p, argv.batch)),
      });
    } finally {
      await client.close();
      await model?.close();
      await region?.close();
    }
    const report = {
      target: argv.target,
      model: argv.model ?? model?.name,
      mode: grpc
        ? 'grpc'
        : http
          ? `http-${argv['shared-memory'] !== 'none' ? `${argv['shared-memory']}-shm` : argv.protocol}`
          : 'in-process',
      batch: argv.batch,
      durationS: argv.duration,
      points: points.map((p) => ({ ...p, inferencesPerSecond: p.throughput * argv.batch })),
    };
    if (toStdout) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else if (typeof argv.json === 'string')
      await writeFile(argv.json, JSON.stringify(report, null, 2) + '\n');
    if (argv.plot) {
      const series = [{ label: report.mode, points }];
      const title = `${report.model}: throughput vs latency (${report.mode}, batch ${argv.batch})`;
      await writeFile(
        argv.plot,
        /\.svg$/i.test(argv.plot) ? plotSvg(series, title, argv.batch) : plotHtml(series, title, argv.batch),
      );
      say(`plot written to ${argv.plot}`);
    }
    // Failed requests fail the run (a sweep of socket hang-ups is no measurement), as does a point that
    // completed nothing.
    const failed = points.reduce((a, p) => a + p.errors, 0);
    const sent = points.reduce((a, p) => a + p.requests + p.errors, 0);
    if (failed > 0) {
      const first = points.find((p) => p.errors > 0)?.firstError;
      process.stderr.write(`yqp-trt bench: ${failed} of ${sent} requests failed (first: ${first})\n`);
    }
    return failed > 0 || points.some((p) => p.requests === 0) ? EXIT.failed : EXIT.ok;
  }),
};
