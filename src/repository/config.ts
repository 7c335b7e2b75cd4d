import type { PostprocessingSpec } from '../postprocess/registry.js';
import type { DType } from '../tensor.js';

/** One input or output of a model. dims include the batch dimension; -1 marks a dynamic dimension. */
export interface TensorSpec {
  name: string;
  dtype: DType;
  dims: number[];
}

/** min/opt/max shapes of one input within one optimization profile. */
export interface ShapeRange {
  min: number[];
  opt: number[];
  max: number[];
}

/** One optimization profile: a shape range per input. Several profiles cover several batch ranges. */
export type OptimizationProfile = Record<string, ShapeRange>;

/**
 * One preprocessing spec, three consumers (sharp CPU path, GPU kernels, calibration loader).
 * value = ((pixel * scale) - mean[c]) / std[c], pixel in 0..255 after color reordering, c the output channel.
 */
export interface PreprocessingSpec {
  /** The model input the images feed. */
  input: string;
  layout: 'NHWC' | 'NCHW';
  width: number;
  height: number;
  /** stretch: resize to width x height ignoring aspect; letterbox: keep aspect, pad with padValue. */
  resize: 'stretch' | 'letterbox';
  colorOrder: 'RGB' | 'BGR';
  scale: number;
  mean: [number, number, number];
  std: [number, number, number];
  dtype: 'float32' | 'float16';
  /** Pixel value (0..255, before scale/mean/std) of letterbox padding. */
  padValue?: number;
}

/** config.postprocessing: one registered postprocessor's spec, told apart by `type` (src/postprocess/). */
export type { PostprocessingSpec } from '../postprocess/registry.js';

export interface DynamicBatchingConfig {
  preferredBatchSizes?: number[];
  maxQueueDelayMicroseconds: number;
}

/**
 * Warm-up at load (Triton's model_warmup): every context runs these batch sizes once, with zero inputs, before
 * the model is ready. `true` (the default): every size up to 64, then powers of two, up to maxBatchSize.
 */
export type WarmupConfig = boolean | { batchSizes?: number[] };

export interface SchedulerConfig {
  /** Requests waiting beyond this are refused with E_QUEUE_FULL (HTTP 503). */
  maxQueueSize: number;
  /** Per-request timeout in the queue, in milliseconds; 0 means none. */
  queueTimeoutMs?: number;
}

export interface TensorRTMetadata {
  version: string;
  gpu: string;
  sm: string;
  buildOptions: Record<string, unknown>;
}

export interface ModelConfig {
  name: string;
  /** A registered backend's name (src/backends/index.ts). */
  backend: string;
  /** The file inside each version folder: the backend's model file (BackendEntry.modelFile). */
  modelFile: string;
  precision: 'fp32' | 'fp16' | 'bf16' | 'int8';
  /** Largest batch any profile allows; 0 when the model has no batch dimension. */
  maxBatchSize: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  profiles: OptimizationProfile[];
  /** Execution contexts (onnxruntime sessions, TensorRT contexts) served round-robin. */
  instances: number;
  /** Where the contexts run: 'cpu', 'cuda' or 'cuda:N' (as Triton's instance_group kind and gpus). */
  device?: string;
  /** CUDA graphs per context on device cuda: true (default sizes) or the batch sizes. */
  cudaGraph?: boolean | number[];
  dynamicBatching?: DynamicBatchingConfig;
  scheduler?: SchedulerConfig;
  warmup?: WarmupConfig;
  preprocessing?: PreprocessingSpec;
  postprocessing?: PostprocessingSpec;
  /** Free-form build facts: source model hash, dates, tool versions. */
  metadata?: {
    sourceModel?: string;
    sourceSha256?: string;
    createdBy?: string;
    createdAt?: string;
    tensorrt?: TensorRTMetadata;
    calibration?: Record<string, unknown>;
    [key: string]: unknown;
  };
}
