import type { Argv, CommandModule } from 'yargs';
import { compareModels, type CompareReport } from '../../calibration/compare.js';
import { expectFolder } from '../image-args.js';
import { EXIT, runCommand } from '../run-command.js';

interface CompareArgs {
  a: string;
  b: string;
  images: string;
  json?: boolean;
  atol?: number;
  rtol?: number;
  'min-iou'?: number;
  'min-recall'?: number;
  verbose?: boolean;
}

const g = (v: number) =>
  v === 0 ? '0' : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(3) : v.toPrecision(4);

export function formatCompare(r: CompareReport): string {
  const lines = [`compare ${r.a} (reference) vs ${r.b} on ${r.images} images`];
  lines.push(
    `${'output'.padEnd(16)} ${'max abs'.padStart(10)} ${'mean abs'.padStart(10)} ${'max rel'.padStart(10)} ${'mean rel'.padStart(10)} ${'cosine'.padStart(9)}  check`,
  );
  for (const o of r.outputs)
    lines.push(
      `${o.name.padEnd(16)} ${g(o.maxAbs).padStart(10)} ${g(o.meanAbs).padStart(10)} ${g(o.maxRel).padStart(10)} ${g(o.meanRel).padStart(10)} ${o.cosine.toFixed(6).padStart(9)}  ${
        o.checked
          ? o.pass
            ? 'PASS'
            : `FAIL (${o.failing} of ${o.elements} beyond atol ${r.tolerances.atol} and rtol ${r.tolerances.rtol})`
          : 'not checked (faces decide)'
      }`,
    );
  const f = r.faces;
  if (f) {
    lines.push(
      `faces: ${f.facesA} in a, ${f.facesB} in b, ${f.matched} matched at IoU >= ${r.tolerances.minIou}: recall ${(f.recall * 100).toFixed(1)}%, precision ${(f.precision * 100).toFixed(1)}%, IoU mean ${f.meanIou.toFixed(3)} min ${f.minIou.toFixed(3)}, score diff mean ${f.meanScoreDiff.toFixed(4)} max ${f.maxScoreDiff.toFixed(4)}  ${f.pass ? 'PASS' : `FAIL (needs recall and precision >= ${r.tolerances.minRecall})`}`,
    );
    for (const m of f.mismatches.slice(0, 10))
      lines.push(`  ${m.image}: ${m.facesA} faces in a, ${m.facesB} in b, ${m.matched} matched`);
  }
  lines.push(r.pass ? 'PASS' : 'FAIL');
  return lines.join('\n') + '\n';
}

export const compareCommand: CommandModule<object, CompareArgs> = {
  command: 'compare <a> <b>',
  describe:
    'Run two repository entries on the same images and compare outputs (and faces); exit 1 when a tolerance fails',
  builder: (y: Argv) =>
    y
      .positional('a', { type: 'string', describe: 'reference entry, e.g. models/face', demandOption: true })
      .positional('b', {
        type: 'string',
        describe: 'entry to check, e.g. models/face-int8',
        demandOption: true,
      })
      .option('images', { type: 'string', demandOption: true, describe: 'folder of images (jpg, png, webp)' })
      .option('json', { type: 'boolean', describe: 'print the report as JSON' })
      .option('atol', { type: 'number', describe: 'absolute tolerance per element (default 1e-5)' })
      .option('rtol', { type: 'number', describe: 'relative tolerance per element (default 1e-5)' })
      .option('min-iou', { type: 'number', describe: 'IoU at which faces match (default 0.5)' })
      .option('min-recall', {
        type: 'number',
        describe: 'face recall and precision of b against a must reach this (default 0.95)',
      })
      .example(
        '$0 compare models/face models/face-int8 --images frames/held --min-iou 0.85',
        'an INT8 entry against its FP32 reference on held-out photos',
      )
      .example(
        '$0 compare models/a models/b --images frames --atol 1e-4 --rtol 1e-3 --json',
        'raw outputs within tolerances, the report as JSON',
      ) as unknown as Argv<CompareArgs>,
  handler: runCommand('compare', async (argv: CompareArgs) => {
    await expectFolder('--images', argv.images);
    const report = await compareModels(argv.a, argv.b, argv.images, {
      atol: argv.atol,
      rtol: argv.rtol,
      minIou: argv['min-iou'],
      minRecall: argv['min-recall'],
    });
    process.stdout.write(argv.json ? JSON.stringify(report, null, 2) + '\n' : formatCompare(report));
    return report.pass ? EXIT.ok : EXIT.failed;
  }),
};
