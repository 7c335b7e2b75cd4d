import type { Argv, CommandModule } from 'yargs';
import { loadModel } from '../../model.js';
import { postprocessorFor } from '../../postprocess/index.js';
import { deviceLoadOptions, withDeviceOptions, type DeviceArgs } from '../device-options.js';
import { expandImageArgs } from '../image-args.js';
import { runCommand } from '../run-command.js';

interface InferArgs extends DeviceArgs {
  entry: string;
  image: string[];
  contexts?: number;
  'model-version'?: number;
  json?: boolean;
  verbose?: boolean;
}

export const inferCommand: CommandModule<object, InferArgs> = {
  command: 'infer <entry>',
  describe: 'Run images through a repository entry (<repo>/<name>) and print what it finds',
  builder: (y: Argv) =>
    withDeviceOptions(y)
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
    const model = await loadModel(argv.entry, {
      contexts: argv.contexts,
      version: argv['model-version'],
      ...deviceLoadOptions(argv),
    });
    try {
      const started = performance.now();
      const result = await model.inferImages(files);
      const ms = performance.now() - started;
      // The postprocessor says how its results print (src/postprocess/); without one, the raw output shapes.
      const post = result.postprocessed;
      const entry = post ? postprocessorFor(post.type) : undefined;
      const presented = files.map((_, i) =>
        post && entry?.present ? entry.present(post.images[i] as never) : undefined,
      );
      const images = files.map((file, i) => ({
        image: file,
        width: result.transforms[i].width,
        height: result.transforms[i].height,
        ...(presented[i]
          ? presented[i].json
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
              ms: Math.round(ms * 10) / 10,
              images,
            },
            null,
            2,
          ) + '\n',
        );
        return;
      }
      for (const [i, img] of images.entries()) {
        const shown = presented[i];
        if (shown) {
          process.stdout.write(`${img.image} (${img.width}x${img.height}): ${shown.summary}\n`);
          for (const line of shown.lines) process.stdout.write(`  ${line}\n`);
        } else if ('outputs' in img) {
          process.stdout.write(`${img.image}: ${JSON.stringify(img.outputs)}\n`);
        }
      }
    } finally {
      await model.close();
    }
  }),
};
