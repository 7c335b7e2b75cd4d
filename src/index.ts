/** yqp-trt: build TensorRT engines (or onnxruntime entries), calibrate INT8, and run or serve them from Node. */
export { loadModel, Model, isBatchable, type LoadModelOptions, type ImageResults } from './model.js';
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
  BlazeFacePostprocessing,
  DynamicBatchingConfig,
} from './repository/config.js';
export {
  readEntry,
  writeEntry,
  listEntries,
  validateConfig,
  SCHEMA_PATH,
  type RepositoryEntry,
} from './repository/repository.js';
export {
  preprocessImages,
  preprocessInto,
  resizeToRgb,
  normalizeInto,
  type ImageInput,
  type RawImage,
  type ImageTransform,
} from './preprocess/cpu.js';
export { decodeBlazeFace, generateAnchors, weightedNms, iou, type Face } from './postprocess/blazeface.js';
export {
  Scheduler,
  type SchedulerOptions,
  type BatchEvent,
  type SchedulerStats,
} from './scheduler/scheduler.js';
export { loadOnnx, encodeOnnx, type OnnxModel } from './onnx/model.js';
export { makeBatchDynamic } from './onnx/dynamic-batch.js';
export { parseProfileFlags, checkProfiles } from './profiles.js';
export type { Backend, BackendSession, BackendAvailability, OpenOptions } from './backends/backend.js';
export { getBackend, backendAvailability, resolveBackend } from './backends/index.js';
export { doctorReport, type DoctorReport } from './doctor.js';
