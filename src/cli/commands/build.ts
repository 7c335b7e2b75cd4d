import type { TensorMethod } from '../../calibration/calibrators.js';
import type { Argv, CommandModule } from 'yargs';
import { backendNames } from '../../backends/index.js';
import { build, expectDevice, type BuildOptions } from '../../build.js';
import { YqpError, expectPositiveInteger } from '../../errors.js';
import { presetNames } from '../../presets.js';
import { parseProfileFlags } from '../../profiles.js';
import { deprecatedAlias, runCommand } from '../run-command.js';

interface BuildArgs {
  model: string;
  name: string;
  repo: string;
  profile?: string[];
  'dynamic-batch'?: boolean;
  backend: string;
  contexts?: number;
  instances?: number;
  'model-version'?: number;
  force?: boolean;
  preset: string;
  'max-queue-delay-us'?: number;
  'preferred-batch-size'?: number[];
  'preferred-batch'?: number[];
  fp16?: boolean;
  device?: string;
  bf16?: boolean;
  int8?: boolean;
  calib?: string;
  'calib-count'?: number;
  'calib-seed'?: number;
  'calib-method': 'auto' | 'entropy' | 'percentile' | 'max';
  'calib-tensor-method'?: string[];
  'calib-validate'?: string;
  'calib-sensitivity'?: boolean;
  'calib-max-fallback'?: number;
  'allow-accuracy-loss'?: boolean;
  'calib-percentile'?: number;
  'calib-batch'?: number;
  recalibrate?: boolean;
  'timing-cache'?: string;
  'builder-optimization-level'?: number;
  'workspace-mib'?: number;
  'version-compatible'?: boolean;
  'hardware-compatibility'?: 'none' | 'ampere-plus' | 'same-compute-capability';
  json?: boolean;
  verbose?: boolean;
}

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build <model>',
  describe: 'Build an ONNX model into a model repository entry (TensorRT engine or onnxruntime)',
  builder: (y: Argv) =>
    y
      .positional('model', { type: 'string', describe: 'ONNX model file', demandOption: true })
      .option('name', { type: 'string', demandOption: true, describe: 'entry name in the repository' })
      .option('repo', { type: 'string', default: 'models', describe: 'model repository folder' })
      .option('profile', {
        type: 'string',
        array: true,
        describe:
          "optimization profile '<input>=<min>,<opt>,<max>' (shapes like 1x128x128x3); repeat an input for another profile",
      })
      .option('dynamic-batch', {
        type: 'boolean',
        describe:
          'make a fixed batch dimension dynamic (rewrites constant Reshape/ConstantOfShape batch 1), then prove batch 16 == 16 single runs',
      })
      .option('backend', {
        choices: ['auto', ...backendNames()],
        default: 'auto',
        describe:
          'what runs the entry: tensorrt (a TensorRT plan, needs TensorRT), onnxruntime (model.onnx, runs anywhere), auto (tensorrt where available, else onnxruntime, saying why)',
      })
      .option('contexts', {
        type: 'number',
        describe: 'execution contexts served round-robin, config.json instances (default 2)',
      })
      .option('instances', { type: 'number', deprecated: 'use --contexts', hidden: true })
      .option('model-version', {
        type: 'number',
        describe: 'version folder to write (default: a new one, one above the highest)',
      })
      .option('force', {
        type: 'boolean',
        describe: 'overwrite the version folder named by --model-version when it exists',
      })
      .option('preset', {
        choices: ['auto', ...presetNames(), 'none'],
        default: 'auto',
        describe: 'pre/postprocessing preset',
      })
      .option('max-queue-delay-us', {
        type: 'number',
        describe: 'enable dynamic batching with this max queue delay',
      })
      .option('preferred-batch-size', {
        type: 'number',
        array: true,
        describe: 'preferred batch sizes of the dynamic batcher (with --max-queue-delay-us)',
      })
      .option('preferred-batch', {
        type: 'number',
        array: true,
        deprecated: 'use --preferred-batch-size',
        hidden: true,
      })
      .option('fp16', {
        type: 'boolean',
        describe:
          'FP16: converts the model (weights and compute; inputs and outputs stay float32) for the CUDA provider, needs --device cuda; a TensorRT engine builds in FP16',
      })
      .option('device', {
        type: 'string',
        describe:
          "where the entry runs, written to config.json: 'cpu', 'cuda' or 'cuda:N' (default: not set, cpu); with cuda an FP32 onnxruntime model gets its residual Conv+Add+Relu blocks fused (checked on the CPU)",
      })
      .option('bf16', { type: 'boolean', describe: 'BF16 engine (TensorRT)' })
      .option('int8', { type: 'boolean', describe: 'INT8: calibrate and write a Q/DQ model (needs --calib)' })
      .option('calib', { type: 'string', describe: 'folder of calibration images (jpg, png, webp)' })
      .option('calib-count', { type: 'number', describe: 'frames sampled for calibration' })
      .option('calib-seed', { type: 'number', describe: 'sampling seed' })
      .option('calib-method', {
        choices: ['auto', 'entropy', 'percentile', 'max'] as const,
        default: 'auto' as const,
        describe:
          "how each activation's range is picked from its histogram: entropy (TensorRT's EntropyCalibration2), percentile (--calib-percentile), max; auto: max for the model input, the output heads' inputs and heavy-tailed tensors, entropy elsewhere",
      })
      .option('calib-tensor-method', {
        type: 'string',
        array: true,
        describe: "<tensor>=<entropy|percentile|max>, repeatable: one tensor's method",
      })
      .option('calib-validate', {
        type: 'string',
        describe:
          'folder of held-out frames to validate INT8 on (default: every third calibration frame or folder)',
      })
      .option('calib-sensitivity', {
        type: 'boolean',
        describe: "measure every tensor's sensitivity for the report even when the target holds",
      })
      .option('calib-max-fallback', {
        type: 'number',
        describe: 'at most this many tensors left unquantized by the fallback (default: a quarter; 0: none)',
      })
      .option('allow-accuracy-loss', {
        type: 'boolean',
        describe: 'write the INT8 model even when it misses the accuracy target on the validation frames',
      })
      .option('calib-percentile', {
        type: 'number',
        describe: 'percentile for --calib-method percentile (default 99.99)',
      })
      .option('calib-batch', { type: 'number', describe: 'calibration batch size' })
      .option('recalibrate', { type: 'boolean', describe: 'ignore a reusable calibration result' })
      .option('timing-cache', { type: 'string', describe: 'TensorRT timing cache file (read and updated)' })
      .option('builder-optimization-level', {
        type: 'number',
        describe: 'TensorRT builder optimization level 0-5',
      })
      .option('workspace-mib', { type: 'number', describe: 'TensorRT workspace memory pool limit in MiB' })
      .option('version-compatible', { type: 'boolean', describe: 'TensorRT version-compatible engine' })
      .option('hardware-compatibility', {
        choices: ['none', 'ampere-plus', 'same-compute-capability'] as const,
        describe:
          'TensorRT: which GPUs the plan may run on: none (the building GPU model), ampere-plus (any Ampere or newer), same-compute-capability',
      })
      .option('json', {
        type: 'boolean',
        describe: 'print the result as JSON',
      })
      .example(
        "$0 build model.onnx --name face --dynamic-batch --profile 'input:0=1x128x128x3,4x128x128x3,16x128x128x3'",
        'a repository entry models/face with batch 1-16 (a new version when models/face exists)',
      )
      .example(
        '$0 build model.onnx --name face-int8 --int8 --calib frames/calib',
        'INT8: calibrate on a folder of images, write the Q/DQ model and calibration report',
      )
      .example(
        '$0 build model.onnx --name face --model-version 1 --force',
        'rebuild version 1 of an existing entry in place',
      ) as unknown as Argv<BuildArgs>,
  handler: runCommand('build', async (argv: BuildArgs) => {
    if (argv.int8 && !argv.calib)
      throw new YqpError(
        'E_ARGUMENT',
        'Expected --calib <folder of images> with --int8 but received nothing',
        { argument: '--calib' },
      );
    if ([argv.fp16, argv.bf16, argv.int8].filter(Boolean).length > 1)
      throw new YqpError('E_ARGUMENT', 'Expected at most one of --fp16, --bf16, --int8', {
        argument: '--fp16/--bf16/--int8',
      });
    if (argv['max-queue-delay-us'] !== undefined && !(argv['max-queue-delay-us'] >= 0))
      throw new YqpError(
        'E_ARGUMENT',
        `Expected non-negative number for --max-queue-delay-us but received ${argv['max-queue-delay-us']}`,
        {
          argument: '--max-queue-delay-us',
        },
      );
    const contexts = deprecatedAlias(argv, 'instances', 'contexts');
    const preferred = deprecatedAlias(argv, 'preferred-batch', 'preferred-batch-size');
    for (const b of preferred ?? []) expectPositiveInteger('--preferred-batch-size', b);
    if (contexts !== undefined) expectPositiveInteger('--contexts', contexts);
    if (argv.device !== undefined) expectDevice('--device', argv.device);
    // Stage lines only for a person at a terminal: scripts get one result (or one error line) and no noise.
    const showProgress = !argv.json && Boolean(process.stderr.isTTY);
    // Ctrl-C cancels an engine build cleanly (TensorRT's progress monitor returns false) instead of killing it.
    const abort = new AbortController();
    const onInterrupt = () => {
      process.stderr.write('\ncancelling...\n');
      abort.abort();
    };
    process.once('SIGINT', onInterrupt);
    let barOpen = false;
    const options: BuildOptions = {
      name: argv.name,
      repo: argv.repo,
      profiles: argv.profile ? parseProfileFlags(argv.profile) : undefined,
      dynamicBatch: argv['dynamic-batch'],
      backend: argv.backend,
      instances: contexts,
      version: argv['model-version'],
      force: argv.force,
      preset: argv.preset,
      precision: argv.int8 ? 'int8' : argv.fp16 ? 'fp16' : argv.bf16 ? 'bf16' : 'fp32',
      device: argv.device,
      dynamicBatching:
        argv['max-queue-delay-us'] !== undefined
          ? {
              maxQueueDelayMicroseconds: Math.round(argv['max-queue-delay-us']),
              preferredBatchSizes: preferred,
            }
          : undefined,
      calibration: argv.calib
        ? {
            dir: argv.calib,
            count: argv['calib-count'],
            seed: argv['calib-seed'],
            method: argv['calib-method'],
            percentile: argv['calib-percentile'],
            batch: argv['calib-batch'],
            recalibrate: argv.recalibrate,
            tensorMethods: parseTensorMethods(argv['calib-tensor-method']),
            validate: argv['calib-validate'],
            sensitivity: argv['calib-sensitivity'],
            maxFallback: argv['calib-max-fallback'],
            allowAccuracyLoss: argv['allow-accuracy-loss'],
          }
        : undefined,
      tensorrt: {
        signal: abort.signal,
        timingCache: argv['timing-cache'],
        builderOptimizationLevel: argv['builder-optimization-level'],
        workspaceMiB: argv['workspace-mib'],
        versionCompatible: argv['version-compatible'],
        hardwareCompatibility: argv['hardware-compatibility'],
      },
      onProgress: (e) => {
        if (!showProgress) return;
        // Events with a fraction (calibration frames, engine build) redraw one bar line in place.
        if (e.fraction === undefined)
          process.stderr.write(`${barOpen ? '\n' : ''}${e.stage}: ${e.message}\n`);
        else process.stderr.write(`\r${e.stage}: ${e.message}\x1b[K`);
        barOpen = e.fraction !== undefined;
      },
    };
    let result;
    try {
      result = await build(argv.model, options);
    } finally {
      process.off('SIGINT', onInterrupt);
    }
    if (argv.json) {
      process.stdout.write(
        JSON.stringify(
          {
            entry: result.entry.dir,
            version: result.entry.version,
            config: result.entry.config,
            notes: result.notes,
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      for (const n of result.notes) process.stdout.write(`${n}\n`);
      process.stdout.write(
        `wrote ${result.entry.dir}/${result.entry.version} (${result.entry.config.backend}, ${result.entry.config.precision})\n`,
      );
    }
  }),
};

/** --calib-tensor-method name=method (repeatable) as a record; the method is checked by the calibration options. */
function parseTensorMethods(list: string[] | undefined): Record<string, TensorMethod> | undefined {
  if (!list || list.length === 0) return undefined;
  const out: Record<string, TensorMethod> = {};
  for (const item of list) {
    const eq = String(item).lastIndexOf('=');
    if (eq <= 0)
      throw new YqpError(
        'E_ARGUMENT',
        `Expected <tensor>=<method> for --calib-tensor-method but received "${item}"`,
        {
          argument: '--calib-tensor-method',
          expected: '<tensor>=<entropy|percentile|max>',
          received: String(item),
        },
      );
    out[item.slice(0, eq)] = item.slice(eq + 1) as TensorMethod;
  }
  return out;
}
