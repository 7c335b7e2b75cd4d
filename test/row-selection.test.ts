import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/model.js';
import { postprocess, postprocessorFor } from '../src/postprocess/index.js';
import { preprocessImages } from '../src/preprocess/cpu.js';
import { sliceBatch } from '../src/scheduler/scheduler.js';
import { MEDIA_DIR } from './helpers/data.js';
import { importFaceModels } from './helpers/face-models.js';
import { selectRowsLikeTheKernel } from './helpers/select-rows.js';
import { tempRepo, writeBlazeFace, writeTiny } from './serve-fixtures.js';

// Rows selected on the GPU (loadModel's selectRows) decode to the faces of the full outputs: checked here on the
// CPU provider's outputs, with the selection computed as the kernel computes it (test/gpu has the kernel itself).
describe('row selection: the decode of selected rows', () => {
  let repo: string;
  let model: Model;
  beforeAll(async () => {
    repo = tempRepo('yqp-row-selection-');
    await writeBlazeFace(repo);
    await writeTiny(repo);
    model = await loadModel(join(repo, 'face'), { contexts: 1 });
  });
  afterAll(async () => model?.close());

  it("gives the full outputs' faces on photos of several people and scenes, in any record order", async () => {
    const photos = readdirSync(MEDIA_DIR)
      .filter((f) => f.endsWith('.jpg'))
      .sort();
    expect(photos.length).toBeGreaterThan(16);
    const spec = model.config.postprocessing!;
    const selection = postprocessorFor(spec.type).rowSelection!(spec as never);
    let faces = 0;
    for (let i = 0; i < photos.length; i += 16) {
      const files = photos.slice(i, i + 16).map((f) => join(MEDIA_DIR, f));
      const { tensor, transforms } = await preprocessImages(files, model.config.preprocessing!);
      const full = await model.infer({ 'input:0': tensor });
      const selected = selectRowsLikeTheKernel(full, selection.pairs, selection.minScore, 896);
      expect(Object.keys(selected).sort()).toEqual(['selected:Identity:0', 'selected:Identity_1:0']);
      const want = postprocess(spec, full, transforms)!;
      expect(postprocess(spec, selected, transforms)).toEqual(want);
      faces += want.images.flat().length;
    }
    expect(faces).toBeGreaterThan(photos.length / 2);
  });

  it("survives the scheduler's split of a batched run: each request decodes its own images' faces", async () => {
    const files = ['audrey.jpg', 'franck_01829.jpg', 'SeanConnery.jpg'].map((f) => join(MEDIA_DIR, f));
    const { tensor, transforms } = await preprocessImages(files, model.config.preprocessing!);
    const full = await model.infer({ 'input:0': tensor });
    const spec = model.config.postprocessing!;
    const selection = postprocessorFor(spec.type).rowSelection!(spec as never);
    const selected = selectRowsLikeTheKernel(full, selection.pairs, selection.minScore, 32);
    const want = postprocess(spec, full, transforms)!.images;
    for (let i = 0; i < files.length; i++) {
      const own = postprocess(spec, sliceBatch(selected, i, 1), [transforms[i]])!.images;
      expect(own).toEqual([want[i]]);
      expect(own[0].length).toBe(1);
    }
  });

  it("the face pipeline's detector (MediaPipe's, imported from TFLite) declares pairs whose selection decodes to its faces", async () => {
    const { detector } = await importFaceModels();
    const m = await loadModel(detector, { contexts: 1, warmup: false });
    try {
      const spec = m.config.postprocessing!;
      const selection = postprocessorFor(spec.type).rowSelection!(spec as never);
      expect(selection.pairs.length).toBeGreaterThan(0);
      const files = ['audrey.jpg', 'SeanConnery.jpg', 'franck_02159.jpg'].map((f) => join(MEDIA_DIR, f));
      const { tensor, transforms } = await preprocessImages(files, m.config.preprocessing!);
      const full = await m.infer({ [m.config.inputs[0].name]: tensor });
      const selected = selectRowsLikeTheKernel(full, selection.pairs, selection.minScore, 32);
      const want = postprocess(spec, full, transforms)!;
      expect(want.images.flat()).toHaveLength(3);
      expect(postprocess(spec, selected, transforms)).toEqual(want);
    } finally {
      await m.close();
    }
  });

  it('refuses a truncated selection instead of losing faces', async () => {
    const { tensor, transforms } = await preprocessImages(
      [join(MEDIA_DIR, 'audrey.jpg')],
      model.config.preprocessing!,
    );
    const full = await model.infer({ 'input:0': tensor });
    const spec = model.config.postprocessing!;
    const selection = postprocessorFor(spec.type).rowSelection!(spec as never);
    const truncated = selectRowsLikeTheKernel(full, selection.pairs, selection.minScore, 1);
    expect(() => postprocess(spec, truncated, transforms)).toThrow(/passed \d+ rows, more than the 1 kept/);
  });

  it('loadModel refuses selectRows off the GPU, without a postprocessor that selects, or with a bad maxRows', async () => {
    await expect(loadModel(join(repo, 'face'), { selectRows: true })).rejects.toMatchObject({
      argument: 'selectRows',
      message: expect.stringMatching(/^Expected a model on device 'cuda'.* but received/),
    });
    await expect(loadModel(join(repo, 'tiny'), { device: 'cuda', selectRows: true })).rejects.toMatchObject({
      argument: 'selectRows',
      message: expect.stringMatching(/no postprocessing/),
    });
    await expect(
      loadModel(join(repo, 'face'), { device: 'cuda', selectRows: { maxRows: 0 } }),
    ).rejects.toMatchObject({
      message: expect.stringMatching(/positive integer for selectRows\.maxRows but received 0/),
    });
    await expect(
      loadModel(join(repo, 'face'), { device: 'cuda', selectRows: 'yes' as never }),
    ).rejects.toMatchObject({ argument: 'selectRows' });
  });
});
