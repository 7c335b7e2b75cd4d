import type { Argv, CommandModule } from 'yargs';
import { YqpError, expectPositiveInteger, invalidParameter } from '../../errors.js';
import { serve } from '../../serve/server.js';
import { serveCluster } from '../../serve/cluster.js';
import type { ModelLoadOptions } from '../../serve/model-manager.js';
import { runCommand } from '../run-command.js';
import { checkPortFree, stopWithNpm, writePidFile } from '../serve-process.js';
import { formatBytes, parseBytes } from '../sizes.js';

interface ServeArgs {
  'model-repository': string;
  host: string;
  port: number;
  'auth-token'?: string;
  'max-body-bytes': number | string;
  'pid-file'?: string;
  'load-model'?: string[];
  contexts?: number;
  'threads-per-context'?: number;
  'spin-wait'?: boolean;
  'max-queue-size'?: number;
  'queue-timeout-ms'?: number;
  'dynamic-batching': boolean;
  warmup: boolean;
  'max-queue-delay-us'?: number;
  'preferred-batch-size'?: number[];
  'allow-shared-memory': boolean;
  'retry-after': number;
  'http-workers': number;
  verbose?: boolean;
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Serve a model repository over the KServe v2 / Triton HTTP protocol',
  builder: (y: Argv) =>
    y
      .option('model-repository', { type: 'string', demandOption: true, describe: 'repository folder' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'interface to bind (0.0.0.0: all)' })
      .option('port', { type: 'number', default: 8000, describe: 'HTTP port (0: any free one)' })
      .option('auth-token', {
        type: 'string',
        describe: 'require "Authorization: Bearer <token>" (default: env YQP_AUTH_TOKEN)',
      })
      .option('max-body-bytes', {
        type: 'string',
        default: 64 * 1024 * 1024,
        defaultDescription: formatBytes(64 * 1024 * 1024),
        describe: 'request body limit: bytes, or with a unit (512KiB, 64MiB, 1GiB)',
      })
      .option('pid-file', {
        type: 'string',
        describe: "write the server's pid here (removed at exit): `kill $(cat <file>)` drains and stops it",
      })
      .option('load-model', {
        type: 'string',
        array: true,
        describe: 'load only these models at start (others can be loaded through the API)',
      })
      .option('contexts', {
        type: 'number',
        describe: 'execution contexts per model (default: config instances)',
      })
      .option('threads-per-context', { type: 'number', describe: 'onnxruntime intra-op threads per context' })
      .option('spin-wait', {
        type: 'boolean',
        describe:
          'onnxruntime threads spin between runs (lower latency, busy cores); default: when a core is left free',
      })
      .option('max-queue-size', { type: 'number', describe: 'queued requests per model before 503' })
      .option('queue-timeout-ms', { type: 'number', describe: 'default queue timeout per request' })
      .option('dynamic-batching', {
        type: 'boolean',
        default: true,
        describe: 'batch requests as config.json says (--no-dynamic-batching: one request per run)',
      })
      .option('warmup', {
        type: 'boolean',
        default: true,
        describe:
          'run every batch size on every context before a model is ready, as config.json warmup says (--no-warmup: skip)',
      })
      .option('max-queue-delay-us', {
        type: 'number',
        describe:
          'turn dynamic batching on with this max queue delay (overrides config.json dynamicBatching)',
      })
      .option('preferred-batch-size', {
        type: 'number',
        array: true,
        describe: 'preferred batch sizes (with --max-queue-delay-us)',
      })
      .option('allow-shared-memory', {
        type: 'boolean',
        default: true,
        describe: 'allow clients to register system/CUDA shared memory regions',
      })
      .option('retry-after', {
        type: 'number',
        default: 1,
        describe: 'Retry-After seconds on 503',
      })
      .option('http-workers', {
        type: 'number',
        default: 1,
        describe:
          "server processes behind the one port, each with its share of every model's contexts (more event loops for HTTP)",
      })
      .example(
        '$0 serve --model-repository models',
        'every entry on 127.0.0.1:8000; Ctrl-C or SIGTERM drains and exits',
      )
      .example(
        '$0 serve --model-repository models --port 8001 --contexts 4 --max-queue-delay-us 500 --preferred-batch-size 4',
        'four contexts per model, dynamic batching',
      )
      .example(
        '$0 serve --model-repository models --host 0.0.0.0 --auth-token "$TOKEN" --pid-file serve.pid',
        'all interfaces, bearer token required, pid in serve.pid',
      ) as unknown as Argv<ServeArgs>,
  handler: runCommand('serve', async (argv: ServeArgs) => {
    const bodyLimit = parseBytes('--max-body-bytes', argv['max-body-bytes']);
    expectPositiveInteger('--http-workers', argv['http-workers']);
    if (!Number.isInteger(argv.port) || argv.port < 0 || argv.port > 65535)
      throw new YqpError('E_ARGUMENT', `Expected a port 0..65535 for --port but received ${argv.port}`, {
        argument: '--port',
      });
    if (argv.contexts !== undefined) expectPositiveInteger('--contexts', argv.contexts);
    if (argv['threads-per-context'] !== undefined)
      expectPositiveInteger('--threads-per-context', argv['threads-per-context']);
    if (argv['max-queue-size'] !== undefined)
      expectPositiveInteger('--max-queue-size', argv['max-queue-size']);
    const loadOptions: ModelLoadOptions = {
      contexts: argv.contexts,
      threadsPerContext: argv['threads-per-context'],
      spinWait: argv['spin-wait'],
      maxQueueSize: argv['max-queue-size'],
      queueTimeoutMs: argv['queue-timeout-ms'],
      ...(argv.warmup === false ? { warmup: false } : {}),
      ...(!argv['dynamic-batching']
        ? { dynamicBatching: false as const }
        : argv['max-queue-delay-us'] !== undefined
          ? {
              dynamicBatching: {
                maxQueueDelayMicroseconds: argv['max-queue-delay-us'],
                preferredBatchSizes: argv['preferred-batch-size'],
              },
            }
          : {}),
    };
    if (argv['max-queue-delay-us'] !== undefined && !(argv['max-queue-delay-us'] >= 0))
      throw invalidParameter(
        '--max-queue-delay-us',
        'a non-negative number of microseconds',
        argv['max-queue-delay-us'],
      );
    const log = (line: string) => process.stderr.write(`yqp-trt serve: ${line}\n`);
    const options = {
      modelRepository: argv['model-repository'],
      host: argv.host,
      port: argv.port,
      authToken: argv['auth-token'] ?? (process.env.YQP_AUTH_TOKEN || undefined),
      bodyLimit,
      models: argv['load-model'],
      loadOptions,
      allowSharedMemory: argv['allow-shared-memory'],
      retryAfterSeconds: argv['retry-after'],
    };
    // Before any model loads (that takes seconds to minutes): a port in use is one line and exit 2.
    await checkPortFree(argv.host, argv.port);
    if (argv['pid-file']) writePidFile(argv['pid-file']);
    stopWithNpm(() => process.kill(process.pid, 'SIGTERM'), log);
    if (argv['http-workers'] > 1) await serveCluster(options, argv['http-workers'], log);
    else await serve(options, log);
    // The server keeps the process alive; SIGTERM drains it and exits 0.
  }),
};
