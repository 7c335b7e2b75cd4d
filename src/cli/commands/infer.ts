import type { Argv, CommandModule } from 'yargs';
import { loadModel } from '../../model.js';
import { expandImageArgs } from '../image-args.js';
import { runCommand } from '../run-command.js';

interface InferArgs {
  entry: string;
  image: string[];
  contexts?: number;
  'model-version'?: number;
  json?: boolean;
  verbose?: boolean;
}

const round = (v: number) => Math.round(v * 10) / 10;

export const inferCommand: CommandModule<object, InferArgs> = {
  command: 'infer <entry>',
  describe: 'Run images through a repository entry (<repo>/<name>) and print what it finds',
  builder: (y: Argv) =>
    y
      .positional('entry', {
        type: 'string',
        describe: 'repository entry, e.g. models/face',
        demandOption: true,
      })
      .option('image', {
        type: 'string',
        array: true,
        demandOption: true,
        describe: 'image files (jpg, png, webp) or folders of them (read recursively, in name order)',
      })
      .option('contexts', { type: 'number', describe: 'execution contexts (default: config.json instances)' })
      .option('model-version', { type: 'number', describe: 'version to load (default: highest)' })
      .option('json', { type: 'boolean', describe: 'print JSON' })
      .example('$0 infer models/face --image photo.jpg', 'faces in one photo: box, keypoints, score')
      .example(
        '$0 infer models/face --image frames/ --json',
        'every image of a folder, as JSON',
      ) as unknown as Argv<InferArgs>,
  handler: runCommand('infer', async (argv: InferArgs) => {
    const files = await expandImageArgs('--image', argv.image);
    const model = await loadModel(argv.entry, { contexts: argv.contexts, version: argv['model-version'] });
    try {
      const started = performance.now();
      const result = await model.inferImages(files);
      const ms = performance.now() - started;
      const images = files.map((file, i) => ({
        image: file,
        width: result.transforms[i].width,
        height: result.transforms[i].height,
        ...(result.faces
          ? {
              faces: result.faces[i].map((f) => ({
                box: f.box.map(round),
                keypoints: f.keypoints.map(([x, y]) => [round(x), round(y)]),
                score: Math.round(f.score * 1e4) / 1e4,
              })),
            }
          : {
              outputs: Object.fromEntries(
                Object.entries(result.outputs).map(([k, t]) => [
                  k,
                  { dtype: t.dtype, dims: [1, ...t.dims.slice(1)] },
                ]),
              ),
            }),
      }));
      if (argv.json) {
        process.stdout.write(
          JSON.stringify(
            {
              model: model.name,
              version: model.version,
              backend: model.config.backend,
              ms: round(ms),
              images,
            },
            null,
            2,
          ) + '\n',
        );
        return;
      }
      for (const img of images) {
        if ('faces' in img && img.faces) {
          process.stdout.write(
            `${img.image} (${img.width}x${img.height}): ${img.faces.length} face${img.faces.length === 1 ? '' : 's'}\n`,
          );
          for (const f of img.faces)
            process.stdout.write(
              `  score ${f.score.toFixed(3)} box [${f.box.join(', ')}] keypoints ${f.keypoints.map((k) => `(${k.join(',')})`).join(' ')}\n`,
            );
        } else if ('outputs' in img) {
          process.stdout.write(`${img.image}: ${JSON.stringify(img.outputs)}\n`);
        }
      }
    } finally {
      await model.close();
    }
  }),
};
