import { invalidParameter, YqpError } from '../errors.js';
import type { DeviceFrame } from '../gpu/frames.js';
import type { Model } from '../model.js';
import {
  faceDetectorFor,
  faceLandmarkerFor,
  facesOf,
  postprocessorNames,
  type Face,
  type FaceDetector,
  type FaceLandmarker,
  type FaceLandmarks,
} from '../postprocess/index.js';
import type { RawImage } from '../preprocess/cpu.js';
import { cropRois, type FaceRoi } from '../preprocess/rotated-crop.js';
import type { PreprocessingSpec } from '../repository/config.js';
import { tensor } from '../tensor.js';

/**
 * The two model stages of the face pipeline behind one interface, so the tracking logic (which frames detect,
 * which ROIs come from the previous landmarks) is the same on the CPU provider and on the GPU: the pipeline hands
 * a tick's frames to `open`, asks the result for detections and for landmarks in ROIs it computed itself
 * (src/preprocess/rotated-crop.ts, the one ROI spec), and disposes it.
 */

/**
 * A frame already in GPU memory (a ring slot, a DeviceBuffer, a CUDA IPC region), for a pipeline on device cuda:
 * its kernels read it in place.
 */
export interface GpuFrame extends DeviceFrame {
  /** Orders the pipeline's stream after the frame's writer before any kernel reads it (ring: waitReady). */
  waitReady?(stream: bigint): void;
  /** Called once, when the pipeline no longer reads the frame: after its tick, or when a newer frame replaced it. */
  release?(): void;
}

/** What a pipeline takes per camera and frame: raw RGB(A) in host memory, or (device cuda) a frame on the GPU. */
export type PipelineFrame = RawImage | GpuFrame;

export function isGpuFrame(frame: PipelineFrame): frame is GpuFrame {
  return typeof (frame as GpuFrame).ptr === 'bigint';
}

/** A tick's frames, opened by the stages. */
export interface StageFrames {
  /** Faces of the frames at `indices` (into the tick's frames), in pixels of each frame. */
  detect(indices: readonly number[]): Promise<Face[][]>;
  /** Landmarks of each ROI (roi.frame indexes the tick's frames), in pixels of its frame. */
  landmarks(rois: readonly FaceRoi[]): Promise<FaceLandmarks[]>;
  /** Frees what open() took (device uploads) once nothing of the tick runs any more. */
  dispose(): Promise<void>;
}

export interface FaceStages {
  /** 'cpu' or 'cuda:N'. */
  readonly device: string;
  open(frames: readonly PipelineFrame[]): Promise<StageFrames>;
  close(): Promise<void>;
}

/** Runs `run` over consecutive slices of at most `max` items (the model's largest batch), results in order. */
export async function inBatches<I, R>(
  items: readonly I[],
  max: number,
  run: (slice: readonly I[]) => Promise<R[]>,
): Promise<R[]> {
  const out: R[] = [];
  const step = Math.max(1, max);
  for (let i = 0; i < items.length; i += step) out.push(...(await run(items.slice(i, i + step))));
  return out;
}

/** The detector's postprocessor as a face detector (its role, src/postprocess/roles.ts); E_CONFIG when it has none. */
export function faceDetectorOf(detector: Model): FaceDetector {
  const found = faceDetectorFor(detector.config.postprocessing);
  if (!found)
    throw new YqpError(
      'E_CONFIG',
      `Detector ${detector.name} has no ${postprocessorNames('faceDetector').join(' or ')} postprocessing`,
      { argument: 'detector' },
    );
  return found;
}

/** The landmark model's input spec, checked for what both samplers write (NHWC, three channels). */
export function landmarkInputSpec(model: Model): PreprocessingSpec {
  const spec = model.config.preprocessing!;
  if (spec.layout !== 'NHWC')
    throw invalidParameter('landmarks.preprocessing.layout', 'NHWC (rotated face crops)', spec.layout);
  return spec;
}

/** onnxruntime's CPU provider: sharp letterboxes the detector input, the CPU sampler cuts the rotated crops. */
export class CpuFaceStages implements FaceStages {
  readonly device = 'cpu';
  private readonly landmarker: FaceLandmarker;

  constructor(
    private readonly detector: Model,
    private readonly landmarkModel: Model,
  ) {
    faceDetectorOf(detector);
    this.landmarker = faceLandmarkerFor(landmarkModel.config);
  }

  async open(frames: readonly PipelineFrame[]): Promise<StageFrames> {
    const images = frames.map((f, i) => {
      if (isGpuFrame(f))
        throw invalidParameter(`frames[${i}]`, "a host frame (device frames need device 'cuda')", f);
      return f;
    });
    return {
      detect: async (indices) => {
        const r = await this.detector.inferImages(indices.map((i) => images[i]));
        return facesOf(r.postprocessed)!;
      },
      landmarks: (rois) => {
        const spec = landmarkInputSpec(this.landmarkModel);
        return inBatches(rois, this.landmarkModel.config.maxBatchSize, async (slice) => {
          const data = cropRois(spec, images, slice);
          const outputs = await this.landmarkModel.infer({
            [spec.input]: tensor('float32', data, [slice.length, spec.height, spec.width, 3]),
          });
          return this.landmarker.decode(outputs, slice);
        });
      },
      dispose: async () => {},
    };
  }

  async close(): Promise<void> {}
}
