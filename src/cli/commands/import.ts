import type { Argv, CommandModule } from 'yargs';
import { importTflite } from '../../tflite/import.js';
import { runCommand } from '../run-command.js';

interface ImportArgs {
  model: string;
  name: string;
  repo: string;
  'max-batch'?: number;
  'model-version'?: number;
  json?: boolean;
  verbose?: boolean;
}

export const importCommand: CommandModule<object, ImportArgs> = {
  command: 'import <model>',
  describe:
    'Convert a TFLite model to an ONNX repository entry (NHWC I/O, dynamic batch, FP16 weights to FP32)',
  builder: (y: Argv) =>
    y
      .positional('model', { type: 'string', describe: 'the .tflite file', demandOption: true })
      .option('name', { type: 'string', demandOption: true, describe: 'entry name' })
      .option('repo', { type: 'string', demandOption: true, describe: 'repository folder' })
      .option('max-batch', { type: 'number', describe: 'largest batch of the profile (default 64)' })
      .option('model-version', { type: 'number', describe: 'version folder to write (default 1)' })
      .option('json', { type: 'boolean', describe: 'print JSON' }) as unknown as Argv<ImportArgs>,
  handler: runCommand('import', async (argv: ImportArgs) => {
    const r = await importTflite(argv.model, {
      name: argv.name,
      repo: argv.repo,
      maxBatchSize: argv['max-batch'],
      version: argv['model-version'],
    });
    if (argv.json) {
      process.stdout.write(
        JSON.stringify(
          { entry: r.entry.dir, version: r.entry.version, recognized: r.recognized ?? null, ...r.report },
          null,
          2,
        ) + '\n',
      );
      return;
    }
    const ops = Object.entries(r.report.operators)
      .map(([k, v]) => `${k} x${v}`)
      .join(', ');
    process.stdout.write(
      `wrote ${r.entry.dir}/${r.entry.version} (${r.entry.config.backend}, ${r.entry.config.precision}${r.recognized ? `, recognized ${r.recognized}` : ''})\n` +
        `operators: ${ops}; ${r.report.dequantized} FP16 constants folded to FP32\n`,
    );
  }),
};
