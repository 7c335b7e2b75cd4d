import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { embeddedBackend } from '../backends/index.js';
import { invalidParameter, YqpError } from '../errors.js';
import { encodeOnnx, graphIo } from '../onnx/model.js';
import { mediapipeFaceDetectionPostprocessing } from '../postprocess/blazeface-preset.js';
import { mediapipeFaceLandmarkPostprocessing } from '../postprocess/face-landmarks.js';
import type { ModelConfig, PostprocessingSpec, PreprocessingSpec, TensorSpec } from '../repository/config.js';
import { writeEntry, type RepositoryEntry } from '../repository/repository.js';
import { convertTflite, type ConvertReport } from './convert.js';
import { parseTflite, type TfliteModel } from './schema.js';

export interface ImportOptions {
  name: string;
  repo: string;
  /** Largest batch the entry's profile allows (default 64). */
  maxBatchSize?: number;
  version?: number;
}

export interface ImportResult {
  entry: RepositoryEntry;
  report: ConvertReport;
  /** The model the importer recognized (its preprocessing and postprocessing filled in), if any. */
  recognized?: string;
}

/** Models the importer knows by their I/O, with MediaPipe's preprocessing and our postprocessor's spec (src/postprocess/). */
interface KnownModel {
  id: string;
  matches(inputs: TensorSpec[], outputs: TensorSpec[]): boolean;
  preprocessing(input: string): PreprocessingSpec;
  postprocessing(outputs: TensorSpec[]): PostprocessingSpec;
}

const sameDims = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

const KNOWN: KnownModel[] = [
  {
    // MediaPipe's face_detection_short_range.tflite: 128x128 RGB in [-1, 1], 896 anchors.
    id: 'mediapipe-face-detection-short-range',
    matches: (ins, outs) =>
      ins.length === 1 &&
      sameDims(ins[0].dims, [-1, 128, 128, 3]) &&
      outs.some((o) => sameDims(o.dims, [-1, 896, 16])) &&
      outs.some((o) => sameDims(o.dims, [-1, 896, 1])),
    preprocessing: (input) => ({
      input,
      layout: 'NHWC',
      width: 128,
      height: 128,
      resize: 'letterbox',
      colorOrder: 'RGB',
      scale: 1 / 127.5,
      mean: [1, 1, 1],
      std: [1, 1, 1],
      dtype: 'float32',
      padValue: 127.5,
    }),
    postprocessing: (outs) =>
      mediapipeFaceDetectionPostprocessing(
        outs.find((o) => o.dims[2] === 1)!.name,
        outs.find((o) => o.dims[2] === 16)!.name,
      ),
  },
  {
    // MediaPipe's face_landmark.tflite: 192x192 RGB in [0, 1] -> 1404 values and a presence logit.
    id: 'mediapipe-face-landmark',
    matches: (ins, outs) =>
      ins.length === 1 &&
      sameDims(ins[0].dims, [-1, 192, 192, 3]) &&
      outs.some((o) => o.dims.at(-1) === 1404) &&
      outs.some((o) => sameDims(o.dims, [-1, 1, 1, 1])),
    preprocessing: (input) => ({
      input,
      layout: 'NHWC',
      width: 192,
      height: 192,
      resize: 'stretch',
      colorOrder: 'RGB',
      scale: 1 / 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      dtype: 'float32',
    }),
    postprocessing: (outs) =>
      mediapipeFaceLandmarkPostprocessing(
        outs.find((o) => o.dims.at(-1) === 1404)!.name,
        outs.find((o) => sameDims(o.dims, [-1, 1, 1, 1]))!.name,
      ),
  },
];

/** Converts a TFLite file to an ONNX repository entry (NHWC I/O, dynamic batch, FP32 weights). */
export async function importTflite(path: string, options: ImportOptions): Promise<ImportResult> {
  if (typeof options.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(options.name))
    throw invalidParameter('name', 'an entry name of letters, digits, _ . -', options.name);
  if (typeof options.repo !== 'string' || options.repo.length === 0)
    throw invalidParameter('repo', 'a repository folder', options.repo);
  const maxBatch = options.maxBatchSize ?? 64;
  if (!Number.isInteger(maxBatch) || maxBatch < 1)
    throw invalidParameter('maxBatchSize', 'positive integer', options.maxBatchSize);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new YqpError(
      'E_MODEL_FILE',
      code === 'ENOENT' ? `Model file ${path} does not exist` : `Model file ${path} cannot be read (${code})`,
      { argument: 'model', expected: 'a readable .tflite file', received: path, cause: e },
    );
  }
  const tflite: TfliteModel = parseTflite(bytes, path);
  const { proto, report } = convertTflite(tflite, options.name);
  const onnxBytes = encodeOnnx(proto);
  const { inputs, outputs } = graphIo(proto);
  const known = KNOWN.find((k) => k.matches(inputs, outputs));
  // The converted ONNX model runs on the embedded backend, wherever the package installs.
  const runner = embeddedBackend();
  const config: ModelConfig = {
    name: options.name,
    backend: runner.name,
    modelFile: runner.modelFile,
    precision: 'fp32',
    maxBatchSize: maxBatch,
    inputs,
    outputs,
    profiles: [
      Object.fromEntries(
        inputs.map((i) => [
          i.name,
          {
            min: [1, ...i.dims.slice(1)],
            opt: [Math.min(8, maxBatch), ...i.dims.slice(1)],
            max: [maxBatch, ...i.dims.slice(1)],
          },
        ]),
      ),
    ],
    instances: 1,
    dynamicBatching: { maxQueueDelayMicroseconds: 0 },
    ...(known
      ? { preprocessing: known.preprocessing(inputs[0].name), postprocessing: known.postprocessing(outputs) }
      : {}),
    metadata: {
      sourceModel: basename(path),
      sourceSha256: createHash('sha256').update(bytes).digest('hex'),
      createdBy: 'yqp-trt import',
      createdAt: new Date().toISOString(),
      recognized: known?.id,
      tfliteOperators: report.operators,
    },
  };
  const entry = await writeEntry(options.repo, config, { [runner.modelFile]: onnxBytes }, options.version);
  return { entry, report, recognized: known?.id };
}
