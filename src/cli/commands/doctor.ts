import type { Argv, CommandModule } from 'yargs';
import { doctorReport, type DoctorReport } from '../../doctor.js';
import { runCommand, EXIT } from '../run-command.js';

interface DoctorArgs {
  json?: boolean;
  verbose?: boolean;
}

function printReport(r: DoctorReport): void {
  const mark = (ok: boolean) => (ok ? 'ok  ' : 'MISS');
  for (const c of r.checks) {
    process.stdout.write(`[${mark(c.ok)}] ${c.name}: ${c.detail}\n`);
    for (const s of c.solutions ?? []) process.stdout.write(`       Possible solutions: ${s}\n`);
  }
  process.stdout.write(`\n${r.summary.join('; ')}\n`);
}

export const doctorCommand: CommandModule<object, DoctorArgs> = {
  command: 'doctor',
  describe: 'Inspect this machine: Node, native addon, CUDA, GPUs, TensorRT, onnxruntime',
  builder: (y: Argv) =>
    y
      .option('json', { type: 'boolean', describe: 'print JSON' })
      .example('$0 doctor', 'what this machine has (addon, onnxruntime, CUDA, GPUs, TensorRT) and why not')
      .example('$0 doctor --json', 'the same as JSON') as unknown as Argv<DoctorArgs>,
  handler: runCommand('doctor', async (argv: DoctorArgs) => {
    const report = await doctorReport();
    if (argv.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else printReport(report);
    return report.embeddedBackendWorks ? EXIT.ok : EXIT.unavailable;
  }),
};
