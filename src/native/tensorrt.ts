/** What trt/tensorrt/tensorrt_binding.cc puts on the addon as `tensorrt`. */
export interface NativeTensorRT {
  compiledVersion: string;
  load(): { loaded: boolean; version?: string; error?: string; nvinfer: string; parser: string };
  deviceInfo(device: number): { name: string; sm: string; totalMemory: number };
  build(
    options: NativeBuildOptions,
    callbacks: NativeBuildCallbacks,
  ): { promise: Promise<NativeBuildResult>; cancel(): void };
  Engine: new (plan: Uint8Array, options: NativeEngineOptions) => NativeEngine;
}

export interface NativeShapeRange {
  min: number[];
  opt: number[];
  max: number[];
}

export interface NativeBuildOptions {
  onnxPath: string;
  profiles: Record<string, NativeShapeRange>[];
  precision: 'fp32' | 'fp16' | 'bf16' | 'int8';
  stronglyTyped?: boolean;
  int8Calibrator?: boolean;
  calibrationProfile?: number;
  calibrationCache?: Uint8Array;
  timingCache?: Uint8Array;
  ignoreTimingCacheMismatch?: boolean;
  optimizationLevel?: number;
  workspaceBytes?: number;
  tacticSharedMemoryBytes?: number;
  versionCompatible?: boolean;
  excludeLeanRuntime?: boolean;
  hardwareCompatibility?: 'none' | 'ampere-plus' | 'same-compute-capability';
  maxAuxStreams?: number;
  tf32?: boolean;
  sparseWeights?: boolean;
  maxThreads?: number;
  device?: number;
}

export interface NativeProgressEvent {
  kind: 'start' | 'step' | 'finish';
  phase: string;
  parent?: string;
  step: number;
  steps: number;
}

export interface NativeBuildCallbacks {
  onProgress?: (event: NativeProgressEvent) => void;
  /** One typed array per calibration input (calibration profile opt shape), or null at the end. */
  pullBatch?: () => Promise<ArrayBufferView[] | null>;
  prefetch?: number;
}

export interface NativeTensorInfo {
  name: string;
  dtype: string;
  dims: number[];
  input: boolean;
}

export interface NativeBuildResult {
  plan: Uint8Array;
  timingCache: Uint8Array;
  calibrationCache?: Uint8Array;
  calibrationBatches: number;
  io: NativeTensorInfo[];
  log: string[];
  version: string;
  gpu: string;
  sm: string;
}

export interface NativeEngineOptions {
  contexts: number;
  device?: number;
  memoryStrategy?: 'static' | 'on-profile-change' | 'user-managed';
  cudaGraphs?: boolean;
  /** Version-compatible plans embed host code (the lean runtime); TensorRT loads them only when allowed. */
  allowHostCode?: boolean;
}

export interface NativeEngine {
  /** I/O tensors and per-profile shape ranges as the deserialized engine reports them. */
  describe(): {
    io: NativeTensorInfo[];
    profiles: Record<string, NativeShapeRange>[];
    deviceMemoryBytes: number;
  };
  /** Host inputs in, host outputs out; resolves from the CUDA core's completion, never blocking the event loop. */
  run(
    context: number,
    inputs: Record<string, { data: ArrayBufferView; dims: number[] }>,
  ): Promise<Record<string, { data: Uint8Array; dims: number[]; dtype: string }>>;
  close(): void;
}
