#!/usr/bin/env -S node --initial-old-space-size=128
// The flag: V8 starts with a small old generation, and a server that keeps a few hundred requests' objects alive
// reaches its limit many times a second (a full GC each time); 128 MiB to start with removes those pauses (see
// BENCHMARKS.md, serve). It sizes the first GC, it allocates nothing.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { buildCommand } from './commands/build.js';
import { inferCommand } from './commands/infer.js';
import { doctorCommand } from './commands/doctor.js';
import { compareCommand } from './commands/compare.js';
import { serveCommand } from './commands/serve.js';
import { benchCommand } from './commands/bench.js';
import { importCommand } from './commands/import.js';
import { trackCommand } from './commands/track.js';
import { EXIT } from './run-command.js';
import { usageMessage } from './suggest.js';

/** The part of yargs' usage instance the failure handler reads (not in @types/yargs). */
interface UsageInstance {
  getDescriptions?(): Record<string, unknown>;
}

const commands = [buildCommand, inferCommand, compareCommand, serveCommand, benchCommand, doctorCommand];
const args = hideBin(process.argv);

await yargs(args)
  .scriptName('yqp-trt')
  .usage('$0 <command> [options]')
  .option('verbose', { type: 'boolean', describe: 'print stack traces on errors' })
  .command(buildCommand)
  .command(inferCommand)
  .command(compareCommand)
  .command(serveCommand)
  .command(benchCommand)
  .command(importCommand)
  .command(trackCommand)
  .command(doctorCommand)
  .demandCommand(1, 'Name a command: build, infer, compare, serve, bench, import, track, doctor')
  .strict()
  .fail((message, error, usage) => {
    // yargs' own usage errors (unknown option, missing argument): one line, usage exit code.
    if (error) throw error;
    // The options of the command being parsed (yargs' usage instance holds them at this point).
    const known = new Set(Object.keys((usage as unknown as UsageInstance).getDescriptions?.() ?? {}));
    const first = args.find((a) => !a.startsWith('-'));
    const command = commands.some((c) => c.command?.toString().split(' ')[0] === first) ? first : '';
    process.stderr.write(
      `yqp-trt: ${usageMessage(message, args, known)}\n(run \`yqp-trt ${command ? `${command} ` : ''}--help\` for usage and examples)\n`,
    );
    process.exit(EXIT.usage);
  })
  .example('$0 build model.onnx --name face', 'a repository entry models/face from an ONNX model')
  .example('$0 infer models/face --image photo.jpg', 'run it on a photo')
  .example('$0 serve --model-repository models', 'serve every entry over KServe v2 / Triton HTTP')
  .example('$0 bench models/face --concurrency 1:16:x2', 'throughput and latency')
  .recommendCommands()
  .help()
  .version()
  .wrap(Math.min(120, process.stdout.columns ?? 100))
  .parseAsync();
