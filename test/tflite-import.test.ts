import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../src/model.js';
import { importTflite } from '../src/tflite/import.js';
import { parseTflite } from '../src/tflite/schema.js';
import { tensor } from '../src/tensor.js';
import {
  FACE_DETECTION_TFLITE,
  FACE_LANDMARK_ATTENTION_TFLITE,
  FACE_LANDMARK_TFLITE,
  ROOT,
  requireData,
} from './helpers/data.js';

const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const repo = mkdtempSync(join(tmpdir(), 'yqp-import-'));

describe('yqp-trt import (TFLite -> ONNX)', () => {
  it('reads both MediaPipe models: every operator, FP16 weights folded, NHWC I/O with a dynamic batch', async () => {
    requireData(FACE_DETECTION_TFLITE, FACE_LANDMARK_TFLITE);
    const lm = await importTflite(FACE_LANDMARK_TFLITE, { name: 'face_landmark', repo });
    expect(lm.recognized).toBe('mediapipe-face-landmark');
    expect(lm.report.operators).toMatchObject({
      CONV_2D: 25,
      DEPTHWISE_CONV_2D: 20,
      PRELU: 23,
      PAD: 3,
      MAX_POOL_2D: 6,
    });
    expect(lm.report.dequantized).toBe(113);
    expect(lm.entry.config.inputs).toEqual([{ name: 'input_1', dtype: 'float32', dims: [-1, 192, 192, 3] }]);
    expect(lm.entry.config.outputs.map((o) => o.dims)).toEqual([
      [-1, 1, 1, 1404],
      [-1, 1, 1, 1],
    ]);
    expect(lm.entry.config.postprocessing?.type).toBe('face-landmarks');
    const det = await importTflite(FACE_DETECTION_TFLITE, { name: 'face_detection', repo });
    expect(det.recognized).toBe('mediapipe-face-detection-short-range');
    expect(det.report.operators).toMatchObject({ RESHAPE: 4, CONCATENATION: 2, RELU: 17 });
    expect(det.entry.config.outputs.map((o) => [o.name, o.dims])).toEqual([
      ['regressors', [-1, 896, 16]],
      ['classificators', [-1, 896, 1]],
    ]);
  });

  it('a batch of 3 gives what 3 single runs give', async () => {
    const model = await loadModel(join(repo, 'face_detection'), { warmup: false });
    try {
      const one = 128 * 128 * 3;
      const data = Float32Array.from({ length: 3 * one }, (_, i) => Math.sin(i * 0.37) * 0.9);
      const batch = await model.infer({ input: tensor('float32', data, [3, 128, 128, 3]) });
      for (let b = 0; b < 3; b++) {
        const single = await model.infer({
          input: tensor('float32', data.slice(b * one, (b + 1) * one), [1, 128, 128, 3]),
        });
        for (const name of ['regressors', 'classificators']) {
          const s = single[name].data as Float32Array;
          const all = batch[name].data as Float32Array;
          let max = 0;
          for (let i = 0; i < s.length; i++) max = Math.max(max, Math.abs(s[i] - all[b * s.length + i]));
          expect(max, `${name} of image ${b}`).toBeLessThan(1e-4);
        }
      }
    } finally {
      await model.close();
    }
  });

  it('a custom operator is refused with its name and index', async () => {
    requireData(FACE_LANDMARK_ATTENTION_TFLITE);
    await expect(importTflite(FACE_LANDMARK_ATTENTION_TFLITE, { name: 'attention', repo })).rejects.toThrow(
      /TFLite operator 192 is the custom operator Landmarks2TransformMatrix/,
    );
  });

  it('a file that is not TFLite, or a truncated one, is refused as such', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yqp-import-bad-'));
    const notTflite = join(dir, 'model.tflite');
    writeFileSync(notTflite, readFileSync(join(ROOT, 'package.json')));
    await expect(importTflite(notTflite, { name: 'x', repo })).rejects.toMatchObject({
      code: 'E_MODEL_FILE',
      message: expect.stringMatching(/is not a TFLite model \(file identifier/),
    });
    const bytes = readFileSync(FACE_DETECTION_TFLITE);
    expect(() => parseTflite(bytes.subarray(0, 4096), 'cut.tflite')).toThrow(
      /cut.tflite is not a TFLite model \(unreadable/,
    );
    await expect(importTflite(join(dir, 'missing.tflite'), { name: 'x', repo })).rejects.toThrow(
      /does not exist/,
    );
    await expect(importTflite(FACE_DETECTION_TFLITE, { name: '../x', repo })).rejects.toThrow(
      /Expected an entry name of letters, digits, _ . - for name but received "..\/x"/,
    );
  });

  it('the CLI prints one line and exits 2 on a custom operator', () => {
    const r = spawnSync(
      process.execPath,
      [CLI, 'import', FACE_LANDMARK_ATTENTION_TFLITE, '--name', 'attention', '--repo', repo],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(
      /^yqp-trt import: TFLite operator 192 is the custom operator Landmarks2TransformMatrix/,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const ok = spawnSync(
      process.execPath,
      [CLI, 'import', FACE_LANDMARK_TFLITE, '--name', 'lm', '--repo', repo, '--json'],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ recognized: 'mediapipe-face-landmark', dequantized: 113 });
  });
});
