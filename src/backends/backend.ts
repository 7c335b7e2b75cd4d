import type { ModelConfig } from '../repository/config.js';
import type { DType, TensorMap, TypedArray } from '../tensor.js';

/** Whether a backend can run on this machine, and if not, why. */
export interface BackendAvailability {
  available: boolean;
  reason?: string;
  version?: string;
}

/**
 * Where one backend run's time went, when the backend can tell (the native onnxruntime runner): ms queued until
 * its thread took it, ms in the runtime's own run, ms from the run's end until JS had the result; and the running
 * thread's own account of the run (CPU ms, involuntary context switches, minor page faults), which tells a run
 * that computed longer from one that was off its core. Read from the outputs of `BackendSession.run` under this
 * symbol (not enumerable).
 */
export const RUN_TIMING = Symbol('yqp.runTiming');

export interface RunTiming {
  queuedMs: number;
  runMs: number;
  deliverMs: number;
  /** CPU time of the thread that called the runtime's run (its intra-op helpers not counted). */
  runCpuMs: number;
  /** Times that thread was taken off its core during the run while it could have gone on. */
  runInvoluntarySwitches: number;
  /** Minor page faults that thread took during the run. */
  runMinorFaults: number;
}

/**
 * Outputs written into device memory on the GPU instead of coming back to the host (a CUDA shared-memory region a
 * client reads, the next stage's input), by output name; each must hold its output's bytes.
 */
export type DeviceOutputs = Readonly<Record<string, OutputMemory>>;

/** Device memory an output is written into: its pointer and the bytes it holds from there. */
export interface OutputMemory {
  readonly ptr: bigint;
  readonly size: number;
}

/** A row selection on the GPU (OpenOptions.rowSelection). */
export interface RowSelection {
  pairs: [string, string][];
  minScore: number;
  maxRows: number;
}

export interface OpenOptions {
  /** Execution contexts to create (onnxruntime sessions, TensorRT execution contexts). */
  contexts: number;
  /** GPU ordinal for backends that use one. */
  device?: number;
  /** Where the contexts run: onnxruntime's CPU provider (default) or a CUDA GPU (`device` names which). */
  deviceKind?: 'cpu' | 'cuda';
  /**
   * CUDA graphs per context (onnxruntime's CUDA provider): `true` for the default batch sizes (powers of two up to
   * the model's largest batch, and that batch), a list for those sizes, `false` (default) for eager runs.
   */
  cudaGraph?: boolean | number[];
  /** A folder holding a GPU build of onnxruntime (see src/backends/onnxruntime-gpu.ts). */
  onnxruntimeDir?: string;
  /** onnxruntime's CUDA provider options by name (string values), over yqp-trt's defaults. */
  cudaProviderOptions?: Record<string, string>;
  /** Run through onnxruntime's TensorRT provider (CUDA provider for what it leaves), where libnvinfer 10 is. */
  tensorrtProvider?: boolean;
  /** Intra-op threads per context (onnxruntime). */
  threadsPerContext?: number;
  /** Let idle pool threads spin (onnxruntime; default: with a single context, or a core left for the event loop). */
  spinWait?: boolean;
  /**
   * Device cuda: after each run, only the rows of these (scores, rows) output pairs whose raw score reaches
   * minScore come back, at most maxRows an image (src/postprocess/selected-rows.ts says the form).
   */
  rowSelection?: RowSelection;
  /** How onnxruntime runs off the event loop: `native` (the addon's runner threads) or `worker` (worker threads);
   * default native where the addon is built. */
  runner?: 'native' | 'worker';
}

/**
 * The backend seam. A backend says how many contexts it has and runs one (possibly batched) request on one
 * context; queueing, batching and round-robin live above it, in the scheduler, shared by every backend.
 */
export interface BackendSession {
  /** The backend's registry name. */
  readonly backend: string;
  readonly contexts: number;
  /** How an onnxruntime session runs off the event loop (see OpenOptions.runner). */
  readonly runner?: 'native' | 'worker';
  /** 'cpu' or 'cuda:N'. */
  readonly device?: string;
  /**
   * Runs one context may hold at once (default 1). 2 lets the next request reach a context while the current
   * one computes, hiding the hand-over (a thread hop for onnxruntime, a host-to-device copy for TensorRT).
   */
  readonly pipelineDepth?: number;
  /**
   * Memory for a batch the scheduler assembles from several requests, when the backend takes some kind without
   * a copy on the event loop (shared memory for worker threads; pinned host memory for a GPU backend).
   */
  allocate?(dtype: DType, length: number): TypedArray;
  /**
   * Batch sizes of the contexts' CUDA graphs: every batch runs on the smallest that holds it, and a graph is
   * captured on its second run, so the warm-up runs each of them twice.
   */
  readonly graphBatchSizes?: readonly number[];
  /** Whether run() takes DeviceOutputs (onnxruntime's CUDA provider): written there on the GPU, on its stream. */
  readonly deviceOutputs?: boolean;
  /**
   * Runs feeds on one context. Never blocks the event loop; resolves once the outputs are complete (those in
   * `outputs` written to their device memory: tensors with `device` set and no data).
   */
  run(context: number, feeds: TensorMap, outputs?: DeviceOutputs): Promise<TensorMap>;
  close(): Promise<void>;
}

export interface Backend {
  /** Its registry name (BackendEntry.name). */
  readonly name: string;
  availability(): BackendAvailability;
  open(modelPath: string, config: ModelConfig, options: OpenOptions): Promise<BackendSession>;
}
