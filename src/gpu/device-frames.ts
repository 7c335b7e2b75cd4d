import { YqpError, expectPositiveInteger, invalidParameter } from '../errors.js';
import type { Model } from '../model.js';
import { postprocess, postprocessorFor, type Face, type Postprocessed } from '../postprocess/index.js';
import type { ImageTransform } from '../preprocess/cpu.js';
import { deviceTensor, DTYPE_BYTES, type TensorMap } from '../tensor.js';
import {
  GpuPreprocessor,
  outputDims,
  outputElements,
  type DeviceFrame,
  type ResizeFilter,
} from './preprocess.js';
import { allocDevice, createStreamPool, type NativeStreamPool } from './runtime.js';

export interface DeviceFrameResults {
  /** The postprocessor's results (config.postprocessing), one per frame in pixels of each frame. */
  postprocessed?: Postprocessed;
  /** @deprecated the same as postprocessed.images when the postprocessor's legacy field is faces (blazeface). */
  faces?: Face[][];
  outputs: TensorMap;
  transforms: ImageTransform[];
}

/**
 * Frames already in GPU memory (ring slots, CUDA IPC regions, DeviceBuffers) to results, with no host round trip:
 * the preprocessing kernel writes the model input into pooled device memory on its own stream, the model (device
 * cuda) reads it on the context's stream once that stream has waited for the kernel on the device, and only the
 * model's outputs come back to decode. Bytes over PCIe per frame: the outputs alone (BlazeFace 128: 60,928; 9,248
 * with the model loaded with `selectRows` at its default 64 rows a pair, which leaves the anchors that do not pass
 * on the GPU), against the frame itself plus the input tensor and outputs on the host path.
 */
export class DeviceFrameInference {
  private readonly preprocessor: GpuPreprocessor;
  private readonly streams: NativeStreamPool;
  private closed = false;

  constructor(
    private readonly model: Model,
    options: { filter?: ResizeFilter } = {},
  ) {
    const spec = model.config.preprocessing;
    if (!spec)
      throw new YqpError('E_CONFIG', `Model ${model.name} has no preprocessing spec in config.json`, {
        argument: 'preprocessing',
      });
    const device = model.device;
    if (!device.startsWith('cuda:'))
      throw invalidParameter('model', "a model loaded with device 'cuda' (frames stay on the GPU)", device);
    const id = Number(device.slice(5));
    this.preprocessor = new GpuPreprocessor(spec, { filter: options.filter, device: id });
    this.streams = createStreamPool(1, id);
  }

  async infer(frames: readonly DeviceFrame[]): Promise<DeviceFrameResults> {
    if (this.closed) throw new YqpError('E_CLOSED', 'DeviceFrameInference is closed');
    if (!Array.isArray(frames) || frames.length === 0)
      throw invalidParameter('frames', 'a non-empty array of device frames', frames);
    const max = Math.max(1, this.model.config.maxBatchSize);
    expectPositiveInteger('frames.length', frames.length);
    if (frames.length > max) throw invalidParameter('frames.length', `at most ${max} frames`, frames.length);
    const spec = this.preprocessor.spec;
    const bytes = outputElements(spec, frames.length) * DTYPE_BYTES[spec.dtype];
    const input = allocDevice(bytes, this.streams.device);
    const stream = this.streams.handle(0);
    let settled = false;
    try {
      const transforms = this.preprocessor.enqueue(frames, input, stream);
      // No host wait here: the run waits for the kernel on the device (`after`), one hop instead of two.
      const memory = { ptr: input.ptr, size: input.size, after: stream };
      const feed = deviceTensor(spec.dtype, memory, outputDims(spec, frames.length));
      const outputs = await this.model.infer({ [spec.input]: feed });
      settled = true; // the run's stream synchronized after the kernel: input is no longer written
      const post = this.model.config.postprocessing;
      const postprocessed = postprocess(post, outputs, transforms);
      const legacy = post && postprocessorFor(post.type).legacyField;
      return {
        postprocessed,
        faces: legacy === 'faces' ? (postprocessed!.images as Face[][]) : undefined,
        outputs,
        transforms,
      };
    } finally {
      // A run refused before it started leaves the kernel writing: wait for it before the memory goes back.
      if (!settled) await this.preprocessor.done(stream).catch(() => undefined);
      input.dispose();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.preprocessor.close();
    this.streams.dispose();
  }
}
