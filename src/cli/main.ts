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

await yargs(hideBin(process.argv))
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
  .fail((message, error, y) => {
    // yargs' own usage errors (unknown option, missing argument): one line, usage exit code.
    if (error) throw error;
    process.stderr.write(`yqp-trt: ${message}\n(run \`yqp-trt --help\` for usage)\n`);
    void y;
    process.exit(EXIT.usage);
  })
  .help()
  .version()
  .wrap(Math.min(120, process.stdout.columns ?? 100))
  .parseAsync();
