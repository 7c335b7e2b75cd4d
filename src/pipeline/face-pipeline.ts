import { EventEmitter } from 'node:events';
import { expectPositiveInteger, invalidParameter, YqpError } from '../errors.js';
import { loadModel, type Model } from '../model.js';
import { iou, type Face } from '../postprocess/blazeface.js';
import { faceLandmarksPostprocessor, type FaceLandmarks } from '../postprocess/face-landmarks.js';
import type { RawImage } from '../preprocess/cpu.js';
import { cropRois, faceRoi, landmarksRoi, type FaceRoi } from '../preprocess/rotated-crop.js';
import type { FaceLandmarkPostprocessing } from '../repository/config.js';
import { tensor } from '../tensor.js';

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
  /** Frames of this camera dropped (newest frame wins) since the previous result. */
  droppedBefore: number;
  /** Milliseconds from push to this result. */
  latencyMs: number;
}

export interface FacePipelineOptions {
  /** Detector entry folder (MediaPipe face_detection_short_range imported) or a loaded Model. */
  detector: string | Model;
  /** Landmark entry folder (MediaPipe face_landmark imported) or a loaded Model. */
  landmarks: string | Model;
  /** 'cpu' (onnxruntime CPU provider) or 'cuda'. */
  device?: 'cpu' | 'cuda';
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
}

interface Pending {
  image: RawImage;
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

/**
 * Frames from several cameras -> face detection (batched across the cameras that need it) -> rotated ROI crops ->
 * landmarks (batched across every face of every camera) -> one 'result' event per camera and frame, in frame order.
 * A camera that pushes faster than the pipeline runs keeps only its newest frame; the rest are counted as dropped.
 */
export class FacePipeline extends EventEmitter {
  readonly cameras: number;
  readonly stats: PipelineStats;
  private readonly state: CameraState[];
  private readonly landmarkSpec: FaceLandmarkPostprocessing;
  private running?: Promise<void>;
  private closed = false;

  constructor(
    readonly detector: Model,
    readonly landmarkModel: Model,
    private readonly options: Required<Omit<FacePipelineOptions, 'detector' | 'landmarks'>>,
    private readonly owned: Model[],
  ) {
    super();
    this.cameras = options.cameras;
    this.landmarkSpec = faceLandmarksPostprocessor.validate(landmarkModel.config);
    if (detector.config.postprocessing?.type !== 'blazeface')
      throw new YqpError('E_CONFIG', `Detector ${detector.name} has no blazeface postprocessing`, {
        argument: 'detector',
      });
    if (!landmarkModel.config.preprocessing)
      throw new YqpError('E_CONFIG', `Landmark model ${landmarkModel.name} has no preprocessing spec`, {
        argument: 'landmarks',
      });
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
    };
  }

  /** Hands a frame of a camera to the pipeline; returns the frame's number. Never waits. */
  push(camera: number, image: RawImage, timestamp?: number): number {
    if (this.closed) throw new YqpError('E_CLOSED', 'Face pipeline is closed');
    if (!Number.isInteger(camera) || camera < 0 || camera >= this.cameras)
      throw invalidParameter('camera', `an integer in 0..${this.cameras - 1}`, camera);
    if (!image || !(image.data instanceof Uint8Array) || (image.channels !== 3 && image.channels !== 4))
      throw invalidParameter('image', 'a raw RGB or RGBA frame { data, width, height, channels }', image);
    const s = this.state[camera];
    if (s.pending) {
      // Newest frame wins: the one still waiting is dropped, and counted.
      s.droppedSinceResult++;
      this.stats.dropped[camera]++;
    }
    const frame = s.next++;
    s.pending = { image, frame, timestamp, pushedAt: performance.now() };
    this.kick();
    return frame;
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
    frames: readonly { camera: number; image: RawImage; timestamp?: number }[],
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

  private async tick(): Promise<void> {
    this.stats.ticks++;
    const work: { camera: number; p: Pending }[] = [];
    for (const [camera, s] of this.state.entries()) {
      if (!s.pending) continue;
      work.push({ camera, p: s.pending });
      s.pending = undefined;
    }
    const { detectEvery, maxFaces, tracking } = this.options;
    // Detection, batched across the cameras that need it: no face tracked, or detectEvery frames since the last.
    const needDetect = work.filter(({ camera }) => {
      const s = this.state[camera];
      return !tracking || s.tracked.length === 0 || s.sinceDetection + 1 >= detectEvery;
    });
    const detections = new Map<number, Face[]>();
    if (needDetect.length > 0) {
      const r = await this.detector.inferImages(needDetect.map((w) => w.p.image));
      this.stats.detections += needDetect.length;
      needDetect.forEach((w, i) => detections.set(w.camera, r.faces![i]));
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
        s.sinceDetection = 0;
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
      const spec = this.landmarkModel.config.preprocessing!;
      const data = cropRois(
        spec,
        work.map((w) => w.p.image),
        rois,
      );
      const outputs = await this.landmarkModel.infer({
        [spec.input]: tensor('float32', data, [rois.length, spec.height, spec.width, 3]),
      });
      this.stats.landmarkRuns++;
      decoded = faceLandmarksPostprocessor.decode(outputs, rois, this.landmarkSpec);
    }
    const now = performance.now();
    for (const w of work) {
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
        droppedBefore: s.droppedSinceResult,
        latencyMs: now - w.p.pushedAt,
      };
      s.droppedSinceResult = 0;
      this.emit('result', result);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.drain();
    for (const m of this.owned) await m.close();
  }
}

/** Whether loadModel takes { device: 'cuda' } in this build (the GPU branch adds it); the reason when not. */
export function cudaPipelineSupport(): { ok: boolean; reason?: string } {
  return {
    ok: false,
    reason:
      "loadModel(dir, { device: 'cuda' }) is not in this build (the GPU branch adds it): the face pipeline runs on the CPU provider only",
  };
}

export async function createFacePipeline(options: FacePipelineOptions): Promise<FacePipeline> {
  if (!options || typeof options !== 'object')
    throw invalidParameter('options', 'an options object', options);
  const device = options.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw invalidParameter('device', "'cpu' or 'cuda'", device);
  if (device === 'cuda') {
    const support = cudaPipelineSupport();
    if (!support.ok) throw new YqpError('E_BACKEND_UNAVAILABLE', support.reason!, { argument: 'device' });
  }
  const cameras = expectPositiveInteger('cameras', options.cameras ?? 1);
  const detectEvery = expectPositiveInteger('detectEvery', options.detectEvery ?? 10);
  const maxFaces = expectPositiveInteger('maxFaces', options.maxFaces ?? 1);
  const owned: Model[] = [];
  const open = async (m: string | Model, name: string): Promise<Model> => {
    if (typeof m !== 'string') {
      if (!m || typeof m.infer !== 'function')
        throw invalidParameter(name, 'an entry folder or a loaded Model', m);
      return m;
    }
    const model = await loadModel(m, { warmup: false });
    owned.push(model);
    return model;
  };
  try {
    const detector = await open(options.detector, 'detector');
    const landmarks = await open(options.landmarks, 'landmarks');
    return new FacePipeline(
      detector,
      landmarks,
      { device, cameras, detectEvery, maxFaces, tracking: options.tracking ?? true },
      owned,
    );
  } catch (e) {
    for (const m of owned) await m.close();
    throw e;
  }
}
