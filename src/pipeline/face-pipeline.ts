import { EventEmitter } from 'node:events';
import { parseDevice, type DeviceSpec } from '../device.js';
import { expectPositiveInteger, invalidParameter, YqpError } from '../errors.js';
import { frameLayout } from '../gpu/frames.js';
import { gpuKernelsAvailability } from '../gpu/preprocess.js';
import { loadRuntime } from '../gpu/runtime.js';
import { loadModel, type Model } from '../model.js';
import { iou } from '../postprocess/blazeface.js';
import { faceLandmarkerFor, type Face, type FaceLandmarks } from '../postprocess/index.js';
import { faceRoi, landmarksRoi, type FaceRoi } from '../preprocess/rotated-crop.js';
import {
  CpuFaceStages,
  faceDetectorOf,
  isGpuFrame,
  type FaceStages,
  type PipelineFrame,
  type StageFrames,
} from './face-stages.js';
import { GpuFaceStages } from './gpu-face-stages.js';

export type { GpuFrame, PipelineFrame } from './face-stages.js';

/** One face of a frame: the detector's fields plus MediaPipe's 468 landmarks, all in frame pixels. */
export interface TrackedFace {
  box: [number, number, number, number];
  /** Detection score on frames where the detector ran, else the landmark model's face presence. */
  score: number;
  /** Six keypoints (right eye, left eye, nose, mouth, right ear, left ear). */
  keypoints: [number, number][];
  landmarks: [number, number, number][];
  presence: number;
  /** Whether this frame's ROI came from the detector (true) or from the previous frame's landmarks. */
  detected: boolean;
}

export interface FrameResult {
  camera: number;
  /** The frame's number in its camera, counted from 0 over pushed frames (dropped ones included). */
  frame: number;
  timestamp?: number;
  width: number;
  height: number;
  faces: TrackedFace[];
  /** Whether the detector ran on this frame (no face tracked, or its turn every detectEvery frames). */
  detection: boolean;
  /** Frames of this camera dropped (newest frame wins) since the previous result. */
  droppedBefore: number;
  /** Milliseconds from push to this result. */
  latencyMs: number;
}

export interface FacePipelineOptions {
  /**
   * Detector entry folder (MediaPipe face_detection_short_range imported) or a loaded Model. An entry folder loads
   * on CUDA graphs of fixed batch sizes on the GPU; a Model loaded for cuda should be too (`cudaGraph: true`):
   * with dynamic shapes each change of batch re-plans the model's convolutions.
   */
  detector: string | Model;
  /** Landmark entry folder (MediaPipe face_landmark imported) or a loaded Model. */
  landmarks: string | Model;
  /**
   * 'cpu' (onnxruntime's CPU provider) or 'cuda' / 'cuda:N' (its CUDA provider, the frames and crops staying in GPU
   * memory: only the detector outputs and the landmarks cross to the host).
   */
  device?: string;
  /** Number of cameras (default 1). */
  cameras?: number;
  /** Run the detector at least every this many frames of a camera while it tracks (default 10). */
  detectEvery?: number;
  /** Faces per camera (default 1, as MediaPipe's maxNumFaces). */
  maxFaces?: number;
  /** Track from the previous frame's landmarks (default true); false detects on every frame. */
  tracking?: boolean;
}

export interface PipelineStats {
  frames: number[];
  dropped: number[];
  detections: number;
  landmarkRuns: number;
  ticks: number;
  /** Wall time spent in each stage of the ticks so far, ms (where a slow tick goes). */
  stageMs: { open: number; detect: number; landmarks: number; close: number };
}

interface Pending {
  image: PipelineFrame;
  frame: number;
  timestamp?: number;
  pushedAt: number;
}

interface CameraState {
  next: number;
  pending?: Pending;
  droppedSinceResult: number;
  tracked: FaceLandmarks[];
  sinceDetection: number;
}

// Landmark indices standing in for the detector's six keypoints when a face is tracked.
const KEYPOINT_LANDMARKS = [[33, 133], [263, 362], [1], [13], [234], [454]];

function keypointsFrom(lm: readonly (readonly number[])[]): [number, number][] {
  return KEYPOINT_LANDMARKS.map((ids) => {
    let x = 0;
    let y = 0;
    for (const i of ids) {
      x += lm[i][0];
      y += lm[i][1];
    }
    return [x / ids.length, y / ids.length];
  });
}

function boxOf(lm: readonly (readonly number[])[]): [number, number, number, number] {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of lm) {
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x);
    y1 = Math.max(y1, y);
  }
  return [x0, y0, x1, y1];
}

function releaseFrame(frame: PipelineFrame): void {
  if (isGpuFrame(frame)) frame.release?.();
}

/**
 * Frames from several cameras -> face detection (batched across the cameras that need it) -> rotated ROI crops ->
 * landmarks (batched across every face of every camera) -> one 'result' event per camera and frame, in frame order.
 * A camera that pushes faster than the pipeline runs keeps only its newest frame; the rest are counted as dropped.
 * The stages run on onnxruntime's CPU provider or on the GPU (src/pipeline/gpu-face-stages.ts); the tracking and
 * the ROIs (src/preprocess/rotated-crop.ts) are the same code for both.
 */
export class FacePipeline extends EventEmitter {
  readonly cameras: number;
  readonly stats: PipelineStats;
  private readonly state: CameraState[];
  private running?: Promise<void>;
  private closed = false;

  constructor(
    readonly detector: Model,
    readonly landmarkModel: Model,
    private readonly options: Required<Omit<FacePipelineOptions, 'detector' | 'landmarks' | 'device'>>,
    private readonly owned: Model[],
    /** The model stages: CpuFaceStages or GpuFaceStages. */
    readonly stages: FaceStages,
  ) {
    super();
    this.cameras = options.cameras;
    this.state = Array.from({ length: this.cameras }, () => ({
      next: 0,
      droppedSinceResult: 0,
      tracked: [],
      sinceDetection: 0,
    }));
    this.stats = {
      frames: new Array(this.cameras).fill(0),
      dropped: new Array(this.cameras).fill(0),
      detections: 0,
      landmarkRuns: 0,
      ticks: 0,
      stageMs: { open: 0, detect: 0, landmarks: 0, close: 0 },
    };
  }

  /** Where the stages run: 'cpu' or 'cuda:N'. */
  get device(): string {
    return this.stages.device;
  }

  /**
   * Hands a frame of a camera to the pipeline; returns the frame's number. Never waits. On device cuda the frame
   * may be in GPU memory (a GpuFrame: read in place, released through its release() once no longer read).
   */
  push(camera: number, image: PipelineFrame, timestamp?: number): number {
    if (this.closed) throw new YqpError('E_CLOSED', 'Face pipeline is closed');
    if (!Number.isInteger(camera) || camera < 0 || camera >= this.cameras)
      throw invalidParameter('camera', `an integer in 0..${this.cameras - 1}`, camera);
    this.checkFrame(image);
    const s = this.state[camera];
    if (s.pending) {
      // Newest frame wins: the one still waiting is dropped, and counted.
      s.droppedSinceResult++;
      this.stats.dropped[camera]++;
      releaseFrame(s.pending.image);
    }
    const frame = s.next++;
    s.pending = { image, frame, timestamp, pushedAt: performance.now() };
    this.kick();
    return frame;
  }

  private checkFrame(image: PipelineFrame): void {
    if (image && isGpuFrame(image)) {
      if (this.device === 'cpu')
        throw invalidParameter(
          'image',
          "a raw RGB or RGBA frame { data, width, height, channels } (frames in GPU memory need device 'cuda')",
          'a frame in GPU memory',
        );
      frameLayout(image, 'image');
      return;
    }
    if (!image || !(image.data instanceof Uint8Array) || (image.channels !== 3 && image.channels !== 4))
      throw invalidParameter('image', 'a raw RGB or RGBA frame { data, width, height, channels }', image);
    expectPositiveInteger('image.width', image.width);
    expectPositiveInteger('image.height', image.height);
    const bytes = image.width * image.height * image.channels;
    if (image.data.length !== bytes)
      throw invalidParameter('image.data', `${bytes} bytes (width x height x channels)`, image.data.length);
  }

  /** Resolves when every pushed frame has been processed or dropped. */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Forgets the tracked faces (MediaPipe's reset()): the next frame of each camera is detected afresh. */
  reset(camera?: number): void {
    for (const [i, s] of this.state.entries())
      if (camera === undefined || camera === i) {
        s.tracked = [];
        s.sinceDetection = 0;
      }
  }

  /** Runs one frame per camera to its results, waiting for them (still images, tests). */
  async process(
    frames: readonly { camera: number; image: PipelineFrame; timestamp?: number }[],
  ): Promise<FrameResult[]> {
    const results: FrameResult[] = [];
    const onResult = (r: FrameResult) => results.push(r);
    this.on('result', onResult);
    try {
      for (const f of frames) this.push(f.camera, f.image, f.timestamp);
      await this.drain();
    } finally {
      this.off('result', onResult);
    }
    return results;
  }

  private kick(): void {
    if (this.running) return;
    this.running = (async () => {
      try {
        while (this.state.some((s) => s.pending)) await this.tick();
      } catch (e) {
        this.emit('error', e);
      } finally {
        this.running = undefined;
      }
    })();
  }

  /** Runs `work`, adding its wall time to stats.stageMs[stage]. */
  private async timed<T>(stage: keyof PipelineStats['stageMs'], work: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await work();
    } finally {
      this.stats.stageMs[stage] += performance.now() - t;
    }
  }

  private async tick(): Promise<void> {
    this.stats.ticks++;
    const work: { camera: number; p: Pending }[] = [];
    for (const [camera, s] of this.state.entries()) {
      if (!s.pending) continue;
      work.push({ camera, p: s.pending });
      s.pending = undefined;
    }
    let results: FrameResult[];
    try {
      const opened = await this.timed('open', () => this.stages.open(work.map((w) => w.p.image)));
      try {
        results = await this.run(work, opened);
      } finally {
        await this.timed('close', () => opened.dispose());
      }
    } finally {
      for (const w of work) releaseFrame(w.p.image);
    }
    for (const r of results) this.emit('result', r);
  }

  private async run(work: { camera: number; p: Pending }[], frames: StageFrames): Promise<FrameResult[]> {
    const { detectEvery, maxFaces, tracking } = this.options;
    // Detection, batched across the cameras that need it: no face tracked, or detectEvery frames since the last.
    const needDetect: number[] = [];
    const lost = new Set<number>();
    for (const [i, { camera }] of work.entries()) {
      const s = this.state[camera];
      if (tracking && s.tracked.length === 0) lost.add(camera);
      if (!tracking || s.tracked.length === 0 || s.sinceDetection + 1 >= detectEvery) needDetect.push(i);
    }
    const detections = new Map<number, Face[]>();
    if (needDetect.length > 0) {
      const faces = await this.timed('detect', () => frames.detect(needDetect));
      this.stats.detections += needDetect.length;
      needDetect.forEach((i, k) => detections.set(work[i].camera, faces[k]));
    }
    // ROIs per camera: tracked faces first, then detections that do not overlap them.
    const rois: FaceRoi[] = [];
    const owners: { camera: number; detection?: Face }[] = [];
    for (const [frameIndex, w] of work.entries()) {
      const s = this.state[w.camera];
      const dets = detections.get(w.camera);
      const chosen: { roi: FaceRoi; detection?: Face; box: number[] }[] = [];
      if (tracking)
        for (const t of s.tracked)
          chosen.push({ roi: landmarksRoi(t.landmarks, frameIndex), box: boxOf(t.landmarks) });
      if (dets) {
        // Cameras that found a face again start their detection schedule at different phases (camera c comes
        // c mod detectEvery frames early once), so many cameras do not all re-detect on the same tick.
        s.sinceDetection = lost.has(w.camera) ? w.camera % detectEvery : 0;
        for (const d of dets.sort((a, b) => b.score - a.score)) {
          if (chosen.length >= maxFaces) break;
          if (chosen.some((c) => iou(c.box, d.box) > 0.5)) continue;
          chosen.push({ roi: faceRoi(d, frameIndex), detection: d, box: d.box });
        }
      } else s.sinceDetection++;
      for (const c of chosen.slice(0, maxFaces)) {
        rois.push(c.roi);
        owners.push({ camera: w.camera, detection: c.detection });
      }
    }
    // Landmarks, batched across every face of every camera.
    let decoded: FaceLandmarks[] = [];
    if (rois.length > 0) {
      decoded = await this.timed('landmarks', () => frames.landmarks(rois));
      this.stats.landmarkRuns++;
    }
    const now = performance.now();
    return work.map((w) => {
      const s = this.state[w.camera];
      const faces: TrackedFace[] = [];
      s.tracked = [];
      decoded.forEach((d, i) => {
        if (owners[i].camera !== w.camera || !d.present) return;
        s.tracked.push(d);
        const det = owners[i].detection;
        faces.push({
          box: det ? det.box : boxOf(d.landmarks),
          score: det ? det.score : d.presence,
          keypoints: det ? det.keypoints : keypointsFrom(d.landmarks),
          landmarks: d.landmarks,
          presence: d.presence,
          detected: Boolean(det),
        });
      });
      this.stats.frames[w.camera]++;
      const result: FrameResult = {
        camera: w.camera,
        frame: w.p.frame,
        timestamp: w.p.timestamp,
        width: w.p.image.width,
        height: w.p.image.height,
        faces,
        detection: detections.has(w.camera),
        droppedBefore: s.droppedSinceResult,
        latencyMs: now - w.p.pushedAt,
      };
      s.droppedSinceResult = 0;
      return result;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.drain();
    await this.stages.close();
    for (const m of this.owned) await m.close();
  }
}

/**
 * Whether the face pipeline can run on GPU `gpu` here: the addon's CUDA core and kernels, a driver and the device.
 * (onnxruntime's CUDA provider is checked when the models load.) The reason when not.
 */
export function cudaPipelineSupport(gpu = 0): { ok: boolean; reason?: string } {
  const { runtime, reason } = loadRuntime();
  if (!runtime) return { ok: false, reason };
  const kernels = gpuKernelsAvailability(gpu);
  if (!kernels.available) return { ok: false, reason: kernels.reason };
  return { ok: true };
}

export async function createFacePipeline(options: FacePipelineOptions): Promise<FacePipeline> {
  if (!options || typeof options !== 'object')
    throw invalidParameter('options', 'an options object', options);
  const device: DeviceSpec = parseDevice(options.device ?? 'cpu');
  const cameras = expectPositiveInteger('cameras', options.cameras ?? 1);
  const detectEvery = expectPositiveInteger('detectEvery', options.detectEvery ?? 10);
  const maxFaces = expectPositiveInteger('maxFaces', options.maxFaces ?? 1);
  const deviceName = device.kind === 'cpu' ? 'cpu' : `cuda:${device.id}`;
  if (device.kind === 'cuda') {
    const support = cudaPipelineSupport(device.id);
    if (!support.ok)
      throw new YqpError('E_BACKEND_UNAVAILABLE', `device ${deviceName} is unavailable: ${support.reason}`, {
        argument: 'device',
        solutions: [
          'run on a machine with an NVIDIA driver and GPU (and npm run build:native)',
          'or use device cpu',
        ],
      });
  }
  const owned: Model[] = [];
  const open = async (m: string | Model, name: string): Promise<Model> => {
    if (typeof m !== 'string') {
      if (!m || typeof m.infer !== 'function')
        throw invalidParameter(name, 'an entry folder or a loaded Model', m);
      return m;
    }
    // On the CPU the two models' pools sleep between runs: both spinning, each on every core, took 4x the CPU a frame
    // on 2 cores (42.6 against 10.9 ms, the p99 twice as long) and 515 ms a frame on 16.
    // On the GPU each model runs on CUDA-graph sessions of fixed batch sizes (a batch runs padded on the smallest
    // that holds it), every size warmed at load. The tick's batches follow its cameras and faces: on a session of
    // dynamic shape every change of batch re-plans every convolution (about 1 s a run for these models on the
    // H200, against 1-2 ms at a batch already seen), so fixed shapes are what let many cameras run.
    const model = await loadModel(
      m,
      device.kind === 'cpu' ? { warmup: false, spinWait: false } : { device: deviceName, cudaGraph: true },
    );
    owned.push(model);
    return model;
  };
  let stages: FaceStages | undefined;
  try {
    const detector = await open(options.detector, 'detector');
    const landmarks = await open(options.landmarks, 'landmarks');
    faceDetectorOf(detector);
    if (!detector.config.preprocessing)
      throw new YqpError('E_CONFIG', `Detector ${detector.name} has no preprocessing spec`, {
        argument: 'detector',
      });
    if (!landmarks.config.preprocessing)
      throw new YqpError('E_CONFIG', `Landmark model ${landmarks.name} has no preprocessing spec`, {
        argument: 'landmarks',
      });
    faceLandmarkerFor(landmarks.config);
    stages =
      device.kind === 'cpu'
        ? new CpuFaceStages(detector, landmarks)
        : new GpuFaceStages(detector, landmarks, device.id);
    return new FacePipeline(
      detector,
      landmarks,
      { cameras, detectEvery, maxFaces, tracking: options.tracking ?? true },
      owned,
      stages,
    );
  } catch (e) {
    await stages?.close();
    for (const m of owned) await m.close();
    throw e;
  }
}
