import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { YqpError, expectPositiveInteger, invalidParameter } from '../../errors.js';
import { serve } from '../../serve/server.js';
import { serveCluster } from '../../serve/cluster.js';
import type { ModelLoadOptions } from '../../serve/model-manager.js';
import { deviceLoadOptions, withDeviceOptions, type DeviceArgs } from '../device-options.js';
import { runCommand } from '../run-command.js';
import { checkPortFree, stopWithNpm, writePidFile } from '../serve-process.js';
import { formatBytes, parseBytes } from '../sizes.js';

interface ServeArgs extends DeviceArgs {
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
  'auth-token-file'?: string;
  'shared-memory'?: string[];
  'shared-memory-key-prefix': string;
  'shared-memory-max-regions': number;
  'max-inflight-body-bytes'?: number;
  'headers-timeout-ms': number;
  'request-timeout-ms': number;
  'idle-timeout-ms': number;
  'max-connections': number;
  'max-image-decodes'?: number;
  'max-timeout-us': number;
  'retry-after': number;
  'http-workers': number;
  grpc?: boolean;
  'grpc-port'?: number;
  verbose?: boolean;
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Serve a model repository over the KServe v2 / Triton HTTP protocol (and gRPC with --grpc)',
  builder: (y: Argv) =>
    withDeviceOptions(y)
      .option('model-repository', { type: 'string', demandOption: true, describe: 'repository folder' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'interface to bind (0.0.0.0: all)' })
      .option('port', { type: 'number', default: 8000, describe: 'HTTP port (0: any free one)' })
      .option('auth-token', {
        type: 'string',
        describe:
          'require "Authorization: Bearer <token>" (visible in ps: prefer --auth-token-file or env YQP_AUTH_TOKEN)',
      })
      .option('auth-token-file', {
        type: 'string',
        describe: 'read the bearer token from this file (first line)',
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
      .option('shared-memory', {
        type: 'string',
        array: true,
        describe:
          'let clients register shared memory regions of these kinds: system, cuda (comma- or space-separated; default none; off loopback only with a token)',
      })
      .option('shared-memory-key-prefix', {
        type: 'string',
        default: '/yqp',
        describe: 'system shared memory keys must start with this',
      })
      .option('shared-memory-max-regions', {
        type: 'number',
        default: 64,
        describe: 'shared memory regions registered at once (each holds a file descriptor)',
      })
      .option('max-inflight-body-bytes', {
        type: 'number',
        describe:
          'bytes of request bodies held at once before 503 + Retry-After (default 4 x --max-body-bytes)',
      })
      .option('headers-timeout-ms', {
        type: 'number',
        default: 10_000,
        describe: "a request's headers must be in within this",
      })
      .option('request-timeout-ms', {
        type: 'number',
        default: 120_000,
        describe: 'a whole request (headers and body) must be in within this',
      })
      .option('idle-timeout-ms', {
        type: 'number',
        default: 30_000,
        describe: 'close a connection silent this long',
      })
      .option('max-connections', { type: 'number', default: 1024, describe: 'open connections at once' })
      .option('max-image-decodes', {
        type: 'number',
        describe: 'requests decoding images at once (default: the cores)',
      })
      .option('max-timeout-us', {
        type: 'number',
        default: 600e6,
        describe: 'parameters.timeout above this (microseconds) is taken as this',
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
      .option('grpc', {
        type: 'boolean',
        describe:
          "also serve KServe v2 gRPC with Triton's extensions on port 8001 (Triton's), same host and token",
      })
      .option('grpc-port', {
        type: 'number',
        describe: 'serve gRPC on this port (implies --grpc; 0: any free one)',
      })
      .example(
        '$0 serve --model-repository models',
        'every entry on 127.0.0.1:8000; Ctrl-C or SIGTERM drains and exits',
      )
      .example(
        '$0 serve --model-repository models --port 8080 --contexts 4 --max-queue-delay-us 500 --preferred-batch-size 4',
        'four contexts per model, dynamic batching',
      )
      .example(
        '$0 serve --model-repository models --host 0.0.0.0 --auth-token "$TOKEN" --pid-file serve.pid',
        'all interfaces, bearer token required, pid in serve.pid',
      ) as unknown as Argv<ServeArgs>,
  handler: runCommand('serve', async (argv: ServeArgs) => {
    const bodyLimit = parseBytes('--max-body-bytes', argv['max-body-bytes']);
    expectPositiveInteger('--http-workers', argv['http-workers']);
    for (const flag of [
      'shared-memory-max-regions',
      'headers-timeout-ms',
      'request-timeout-ms',
      'idle-timeout-ms',
      'max-connections',
      'max-timeout-us',
    ] as const)
      expectPositiveInteger(`--${flag}`, argv[flag]);
    // Node refuses a headers deadline past the whole request's.
    if (argv['headers-timeout-ms'] > argv['request-timeout-ms'])
      throw new YqpError(
        'E_ARGUMENT',
        `Expected --headers-timeout-ms (${argv['headers-timeout-ms']}) at most --request-timeout-ms (${argv['request-timeout-ms']})`,
        { argument: '--headers-timeout-ms' },
      );
    if (argv['max-inflight-body-bytes'] !== undefined)
      expectPositiveInteger('--max-inflight-body-bytes', argv['max-inflight-body-bytes']);
    if (argv['max-image-decodes'] !== undefined)
      expectPositiveInteger('--max-image-decodes', argv['max-image-decodes']);
    const sharedMemory = (argv['shared-memory'] ?? []).flatMap((k) => k.split(',')).filter(Boolean);
    for (const k of sharedMemory)
      if (k !== 'system' && k !== 'cuda')
        throw invalidParameter('--shared-memory', 'system, cuda or both', k);
    if (!Number.isInteger(argv.port) || argv.port < 0 || argv.port > 65535)
      throw new YqpError('E_ARGUMENT', `Expected a port 0..65535 for --port but received ${argv.port}`, {
        argument: '--port',
      });
    const grpcPort = argv['grpc-port'] ?? (argv.grpc ? 8001 : undefined);
    if (grpcPort !== undefined && (!Number.isInteger(grpcPort) || grpcPort < 0 || grpcPort > 65535))
      throw new YqpError('E_ARGUMENT', `Expected a port 0..65535 for --grpc-port but received ${grpcPort}`, {
        argument: '--grpc-port',
      });
    if (grpcPort !== undefined && argv['http-workers'] > 1)
      throw new YqpError(
        'E_ARGUMENT',
        `--grpc-port cannot be combined with --http-workers ${argv['http-workers']}: gRPC is served by one process (one grpc-js server holds its port); use --http-workers 1 with gRPC`,
        {
          argument: '--http-workers',
          expected: '1 with --grpc-port',
          received: String(argv['http-workers']),
        },
      );
    if (argv.contexts !== undefined) expectPositiveInteger('--contexts', argv.contexts);
    if (argv['threads-per-context'] !== undefined)
      expectPositiveInteger('--threads-per-context', argv['threads-per-context']);
    if (argv['max-queue-size'] !== undefined)
      expectPositiveInteger('--max-queue-size', argv['max-queue-size']);
    const loadOptions: ModelLoadOptions = {
      ...deviceLoadOptions(argv),
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
      authToken: authTokenOf(argv),
      bodyLimit,
      models: argv['load-model'],
      loadOptions,
      sharedMemory: sharedMemory as ('system' | 'cuda')[],
      sharedMemoryKeyPrefix: argv['shared-memory-key-prefix'],
      sharedMemoryMaxRegions: argv['shared-memory-max-regions'],
      maxInflightBodyBytes: argv['max-inflight-body-bytes'],
      headersTimeoutMs: argv['headers-timeout-ms'],
      requestTimeoutMs: argv['request-timeout-ms'],
      idleTimeoutMs: argv['idle-timeout-ms'],
      maxConnections: argv['max-connections'],
      maxImageDecodes: argv['max-image-decodes'],
      maxTimeoutUs: argv['max-timeout-us'],
      retryAfterSeconds: argv['retry-after'],
      grpcPort,
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

/** The bearer token: --auth-token, else the first line of --auth-token-file, else env YQP_AUTH_TOKEN. */
function authTokenOf(argv: ServeArgs): string | undefined {
  if (argv['auth-token'] !== undefined && argv['auth-token-file'] !== undefined)
    throw new YqpError('E_ARGUMENT', 'Give --auth-token or --auth-token-file, not both', {
      argument: '--auth-token-file',
    });
  if (argv['auth-token'] !== undefined) {
    if (argv['auth-token'] === '') throw invalidParameter('--auth-token', 'a non-empty token', '');
    return argv['auth-token'];
  }
  const file = argv['auth-token-file'];
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new YqpError(
        'E_NOT_FOUND',
        `Cannot read --auth-token-file ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        { argument: '--auth-token-file' },
      );
    }
    const token = text.split(/\r?\n/)[0].trim();
    if (!token)
      throw invalidParameter('--auth-token-file', 'a file whose first line is the token', 'an empty line');
    return token;
  }
  return process.env.YQP_AUTH_TOKEN || undefined;
}
