import { stat } from 'node:fs/promises';
import { YqpError } from '../errors.js';
import { listCalibrationFiles } from '../calibration/loader.js';

/**
 * Image arguments as the commands take them: files as given, folders as their images (recursively, in name
 * order, as compare and calibration read them). A path that is missing stays in the list: loading it names it.
 */
export async function expandImageArgs(flag: string, paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const s = await stat(p).catch(() => undefined);
    if (!s?.isDirectory()) {
      out.push(p);
      continue;
    }
    const { images } = await listCalibrationFiles(p);
    if (images.length === 0)
      throw new YqpError(
        'E_ARGUMENT',
        `Expected images (jpg, png, webp) in the folder ${p} for ${flag} but found none`,
        {
          argument: flag,
          expected: 'a folder holding jpg, png or webp images',
          received: p,
        },
      );
    out.push(...images.map((f) => f.path));
  }
  return out;
}

/** A folder argument (compare --images): named by its own flag when it is missing or a file. */
export async function expectFolder(flag: string, path: string): Promise<void> {
  const s = await stat(path).catch(() => undefined);
  if (!s)
    throw new YqpError('E_ARGUMENT', `Expected a folder of images for ${flag} but ${path} does not exist`, {
      argument: flag,
      expected: 'a folder of jpg, png or webp images',
      received: path,
    });
  if (!s.isDirectory())
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a folder of images for ${flag} but received the file ${path} (put the images to compare in a folder)`,
      { argument: flag, expected: 'a folder', received: path },
    );
}
