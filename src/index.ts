/** yqp-trt: build TensorRT engines (or onnxruntime entries), calibrate INT8, and run or serve them from Node. */
export { loadModel, Model, isBatchable, type LoadModelOptions, type ImageResults } from './model.js';
export { planWarmup, type WarmupReport } from './warmup.js';
export {
  build,
  verifyDynamicBatch,
  type BuildOptions,
  type BuildResult,
  type BuildProgress,
} from './build.js';
export { YqpError, invalidParameter, isYqpError, type ErrorCode } from './errors.js';
export {
  tensor,
  allocate,
  elementCount,
  type Tensor,
  type TensorMap,
  type DType,
  type TypedArray,
} from './tensor.js';
export type {
  ModelConfig,
  TensorSpec,
  ShapeRange,
  OptimizationProfile,
  PreprocessingSpec,
  PostprocessingSpec,
  DynamicBatchingConfig,
  WarmupConfig,
} from './repository/config.js';
export {
  readEntry,
  writeEntry,
  listEntries,
  validateConfig,
  SCHEMA_PATH,
  type RepositoryEntry,
} from './repository/repository.js';
export { parseTritonConfig, tritonConfigJson, type TritonModelConfig } from './repository/triton-config.js';
export { toTriton, tritonConfigOf } from './repository/triton-export.js';
export {
  preprocessImages,
  preprocessInto,
  resizeToRgb,
  normalizeInto,
  type ImageInput,
  type RawImage,
  type ImageTransform,
} from './preprocess/cpu.js';
export {
  decodeBlazeFace,
  generateAnchors,
  weightedNms,
  iou,
  type Face,
  type BlazeFacePostprocessing,
} from './postprocess/blazeface.js';
export {
  postprocess,
  postprocessorFor,
  postprocessorNames,
  registerPostprocessor,
  faceDetectorFor,
  faceLandmarkerFor,
  facesOf,
  yieldsFaces,
  type Postprocessed,
  type Postprocessor,
  type PostprocessorName,
  type PostprocessorPresentation,
  type PostprocessorRole,
  type PostprocessorTypes,
  type FaceDetector,
  type FaceDetectorRole,
  type FaceLandmarker,
  type FaceLandmarkerRole,
} from './postprocess/index.js';
export {
  placeImage,
  toOriginal,
  inputDims,
  elementsPerImage,
  normalization,
  validatePreprocessing,
  PLACEMENT_MODES,
  type ImagePlacement,
  type PlacementMode,
} from './preprocess/spec.js';
export {
  Scheduler,
  type SchedulerOptions,
  type BatchEvent,
  type SchedulerStats,
  type SubmitOptions,
} from './scheduler/scheduler.js';
export { loadOnnx, encodeOnnx, type OnnxModel } from './onnx/model.js';
export { makeBatchDynamic } from './onnx/dynamic-batch.js';
export { parseProfileFlags, checkProfiles } from './profiles.js';
export type {
  Backend,
  BackendSession,
  BackendAvailability,
  DeviceOutputs,
  OpenOptions,
} from './backends/backend.js';
export {
  getBackend,
  backendAvailability,
  resolveBackend,
  registerBackend,
  backendEntry,
  backendEntries,
  backendNames,
  embeddedBackend,
  type BackendEntry,
  type BackendName,
  type BackendBuildContext,
  type BackendBuildResult,
  type BackendDoctor,
  type BackendTriton,
} from './backends/index.js';
export { doctorReport, type DoctorReport } from './doctor.js';

// INT8 calibration (Q/DQ model, TensorRT calibration cache, report) and cross-backend comparison.
export { calibrate, type CalibrateOptions, type CalibrationResult } from './calibration/calibrate.js';
export { buildInt8, type BuildInt8Context, type BuildInt8Result } from './calibration/build-int8.js';
export { compareModels, type CompareOptions, type CompareReport } from './calibration/compare.js';
export { parseCalibrationCache, formatCalibrationCache } from './calibration/cache.js';
export { planQdq, insertQdq } from './onnx/qdq.js';

// GPU side (native addon): runtime core, preprocessing and ROI kernels, frame ring over CUDA IPC, NVML, placement.
export { loadBinding, type NativeBinding, type CudaInfo, type CudaDevice } from './native/binding.js';
export {
  GpuPreprocessor,
  gpuKernelsAvailability,
  referenceSample,
  type HostFrame,
  type DeviceFrame,
  type ResizeFilter,
} from './gpu/preprocess.js';
export { GpuRoiCropper, faceRoi, roiToFrame, type FaceRoi } from './gpu/roi.js';
export { landmarksRoi, roiMatrix, cropRois } from './preprocess/rotated-crop.js';
export {
  faceLandmarksPostprocessor,
  type FaceLandmarkPostprocessing,
  type FaceLandmarks,
} from './postprocess/face-landmarks.js';
export {
  createFacePipeline,
  cudaPipelineSupport,
  FacePipeline,
  type FacePipelineOptions,
  type FrameResult,
  type GpuFrame,
  type PipelineFrame,
  type TrackedFace,
} from './pipeline/face-pipeline.js';
export { GpuFaceStages, type GpuStageCopies } from './pipeline/gpu-face-stages.js';
export { readRawImage, videoFrames, probeVideo } from './pipeline/sources.js';
export { pumpRing } from './pipeline/ring-source.js';
export { importTflite, type ImportOptions, type ImportResult } from './tflite/import.js';
export { parseTflite } from './tflite/schema.js';
export { FrameRing, type FrameInfo, type HeldFrame } from './gpu/frame-ring.js';
export { sample as nvmlSample, type NvmlSample, type GpuSample } from './gpu/nvml.js';
export { place, planPlacement, type Placement, type PlacementOptions } from './gpu/placement.js';
export { createStreamPool, allocDevice, allocPinned, copy as gpuCopy, poolStats } from './gpu/runtime.js';

// TensorRT builder (the tensorrt backend is chosen through loadModel/build; these are for direct use).
export {
  buildEngine,
  tensorrtAvailability,
  calibrationBatchesFrom,
  castOnnx,
  engineCacheKey,
  type TensorRTBuildResult,
} from './tensorrt/index.js';

// Serving (KServe v2 / Triton HTTP) and the perf_analyzer-style load generator.
export * from './serve/index.js';
export * from './bench/index.js';
export { parseDevice, formatDevice, type DeviceSpec } from './device.js';
export { deviceTensor, type DeviceMemory } from './tensor.js';
export { DeviceFrameInference, type DeviceFrameResults } from './gpu/device-frames.js';
export {
  findGpuOnnxruntime,
  gpuOnnxruntimeStatus,
  type GpuOnnxruntime,
  type GpuOnnxruntimeStatus,
} from './backends/onnxruntime-gpu.js';
