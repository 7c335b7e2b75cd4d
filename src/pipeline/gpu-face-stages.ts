import { invalidParameter } from '../errors.js';
import { GpuPreprocessor, outputDims, outputElements, type DeviceFrame } from '../gpu/preprocess.js';
import { GpuRoiCropper } from '../gpu/roi.js';
import {
  allocDevice,
  copy,
  createStreamPool,
  type NativeDeviceBuffer,
  type NativeStreamPool,
} from '../gpu/runtime.js';
import type { Model } from '../model.js';
import {
  faceLandmarkerFor,
  type Face,
  type FaceDetector,
  type FaceLandmarker,
  type FaceLandmarks,
} from '../postprocess/index.js';
import type { FaceRoi } from '../preprocess/rotated-crop.js';
import { DTYPE_BYTES, deviceTensor } from '../tensor.js';
import {
  faceDetectorOf,
  inBatches,
  isGpuFrame,
  landmarkInputSpec,
  type FaceStages,
  type PipelineFrame,
  type StageFrames,
} from './face-stages.js';

/** Bytes this code copies between host and GPU (host frames, uploaded once each); the model sessions count theirs. */
export interface GpuStageCopies {
  hostFrames: number;
  hostToDeviceBytes: number;
}

/**
 * Wall time inside the detect and landmark stages, ms: model runs (each waits for its kernel on the device, not on
 * the host) and what the stream still held after a refused run.
 */
export interface GpuStageTiming {
  inferMs: number;
  settleMs: number;
}

/**
 * The face pipeline on one GPU: frames in GPU memory (ring slots, device buffers; host frames uploaded once) ->
 * the preprocessing kernel -> the detector on the CUDA provider, fed from device memory -> decode in JS (only the
 * detector outputs cross) -> the ROI kernel, cropping every face of every camera straight from the frames ->
 * the landmark model, fed from device memory -> only the landmarks cross. Everything of this class runs on one
 * stream; each model's context waits on the device for the kernel that writes its input (`after`: no host round
 * trip between kernel and model), and each buffer is freed only once the model's run has finished with it.
 */
export class GpuFaceStages implements FaceStages {
  readonly device: string;
  readonly copies: GpuStageCopies = { hostFrames: 0, hostToDeviceBytes: 0 };
  readonly timing: GpuStageTiming = { inferMs: 0, settleMs: 0 };
  readonly faceDetector: FaceDetector;
  readonly landmarker: FaceLandmarker;
  readonly preprocessor: GpuPreprocessor;
  readonly cropper: GpuRoiCropper;
  readonly stream: bigint;
  private readonly streams: NativeStreamPool;

  constructor(
    readonly detector: Model,
    readonly landmarkModel: Model,
    readonly gpu: number,
  ) {
    this.device = `cuda:${gpu}`;
    for (const [name, model] of [
      ['detector', detector],
      ['landmarks', landmarkModel],
    ] as const)
      if (model.device !== this.device)
        throw invalidParameter(name, `a model loaded with device '${this.device}'`, model.device);
    // A model handed in loaded with dynamic shapes runs, but re-plans its convolutions at every change of batch
    // (about 1 s a run for these models on an H200): say so once, with the mend. (A session without CUDA-graph
    // sizes to tell, TensorRT's, has its own fixed profiles.)
    for (const [name, model] of [
      ['detector', detector],
      ['landmarks', landmarkModel],
    ] as const)
      if (model.config.maxBatchSize > 0 && model.scheduler.session.graphBatchSizes?.length === 0)
        process.stderr.write(
          `yqp-trt: face pipeline: ${name} ${model.name} runs on a CUDA session of dynamic shape; every change of batch (cameras, faces) re-plans its convolutions, about 1 s a run: load it with cudaGraph: true (fixed batch sizes), or pass its entry folder\n`,
        );
    this.faceDetector = faceDetectorOf(detector);
    this.landmarker = faceLandmarkerFor(landmarkModel.config);
    // Antialias: a 1080p -> 128 downscale, as sharp's reduce on the CPU path (not 4 taps of a 15x larger grid).
    this.preprocessor = new GpuPreprocessor(detector.config.preprocessing!, {
      filter: 'antialias',
      device: gpu,
    });
    this.cropper = new GpuRoiCropper(landmarkInputSpec(landmarkModel), { device: gpu });
    this.streams = createStreamPool(1, gpu);
    this.stream = this.streams.handle(0);
  }

  /** Runs `work`, adding its wall time to timing[key]. */
  async timed<T>(key: keyof GpuStageTiming, work: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await work();
    } finally {
      this.timing[key] += performance.now() - t;
    }
  }

  async open(frames: readonly PipelineFrame[]): Promise<StageFrames> {
    const uploads: NativeDeviceBuffer[] = [];
    const copies: Promise<void>[] = [];
    const device: DeviceFrame[] = [];
    try {
      for (const f of frames) {
        if (isGpuFrame(f)) {
          f.waitReady?.(this.stream);
          device.push({
            ptr: f.ptr,
            uvPtr: f.uvPtr,
            width: f.width,
            height: f.height,
            format: f.format,
            pitch: f.pitch,
          });
          continue;
        }
        const buffer = allocDevice(f.data.byteLength, this.gpu);
        uploads.push(buffer);
        copies.push(copy(buffer, f.data, this.stream));
        this.copies.hostFrames++;
        this.copies.hostToDeviceBytes += f.data.byteLength;
        device.push({
          ptr: buffer.ptr,
          width: f.width,
          height: f.height,
          format: f.channels === 4 ? 'RGBA' : 'RGB',
        });
      }
      await Promise.all(copies);
    } catch (e) {
      await Promise.allSettled(copies);
      for (const b of uploads) b.dispose();
      throw e;
    }
    return new GpuTickFrames(this, device, uploads);
  }

  /** Resolves once everything enqueued on the stream so far has run (errors left to the calls that enqueued). */
  settle(): Promise<void> {
    return this.preprocessor.done(this.stream).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.settle();
    await this.preprocessor.close();
    await this.cropper.close();
    this.streams.dispose();
  }
}

class GpuTickFrames implements StageFrames {
  constructor(
    private readonly stages: GpuFaceStages,
    private readonly frames: readonly DeviceFrame[],
    private readonly uploads: NativeDeviceBuffer[],
  ) {}

  detect(indices: readonly number[]): Promise<Face[][]> {
    const { detector, preprocessor, stream, gpu } = this.stages;
    const spec = preprocessor.spec;
    return inBatches(indices, detector.config.maxBatchSize, async (slice) => {
      const input = allocDevice(outputElements(spec, slice.length) * DTYPE_BYTES[spec.dtype], gpu);
      let settled = false;
      try {
        const transforms = preprocessor.enqueue(
          slice.map((i) => this.frames[i]),
          input,
          stream,
        );
        // No host wait for the kernel: the run waits for it on the device (`after`), one hop instead of two.
        const memory = { ptr: input.ptr, size: input.size, after: stream };
        const outputs = await this.stages.timed('inferMs', () =>
          detector.infer({ [spec.input]: deviceTensor(spec.dtype, memory, outputDims(spec, slice.length)) }),
        );
        settled = true; // the run's stream synchronized after the kernel: the input is no longer written
        return this.stages.faceDetector.decode(outputs, transforms);
      } finally {
        // A run refused before it started leaves the kernel writing: wait for it before the memory goes back.
        if (!settled) await this.stages.timed('settleMs', () => this.stages.settle());
        input.dispose();
      }
    });
  }

  landmarks(rois: readonly FaceRoi[]): Promise<FaceLandmarks[]> {
    const { landmarkModel, cropper, stream, gpu } = this.stages;
    const spec = cropper.spec;
    return inBatches(rois, landmarkModel.config.maxBatchSize, async (slice) => {
      const input = allocDevice(outputElements(spec, slice.length) * DTYPE_BYTES[spec.dtype], gpu);
      let settled = false;
      try {
        // roi.frame indexes the tick's frames: every face of every camera in one launch, read in place.
        cropper.enqueue(this.frames, slice, input, stream);
        const memory = { ptr: input.ptr, size: input.size, after: stream };
        const outputs = await this.stages.timed('inferMs', () =>
          landmarkModel.infer({
            [spec.input]: deviceTensor(spec.dtype, memory, outputDims(spec, slice.length)),
          }),
        );
        settled = true;
        return this.stages.landmarker.decode(outputs, slice);
      } finally {
        if (!settled) await this.stages.timed('settleMs', () => this.stages.settle());
        input.dispose();
      }
    });
  }

  async dispose(): Promise<void> {
    await this.stages.settle();
    for (const b of this.uploads) b.dispose();
  }
}
