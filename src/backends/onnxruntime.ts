import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { loadBinding } from '../native/binding.js';
import { YqpError } from '../errors.js';
import { cpuInt8Form } from '../onnx/int8-weights.js';
import type { ModelConfig } from '../repository/config.js';
import { DTYPE_ARRAY, deviceTensor, type DType, type TensorMap, type TypedArray } from '../tensor.js';
import {
  RUN_TIMING,
  type Backend,
  type BackendAvailability,
  type BackendSession,
  type DeviceOutputs,
  type OpenOptions,
  type OutputMemory,
  type RowSelection,
  type RunTiming,
} from './backend.js';

const require = createRequire(import.meta.url);

/**
 * onnxruntime-node's session.run() runs on the calling thread and blocks the event loop
 * (microsoft/onnxruntime#19611). Two runners keep it off the event loop:
 * - `native` (default where the addon is built): the addon drives onnxruntime-node's own libonnxruntime through
 *   its C API, one runner thread per context, reading inputs in place and copying each output once
 *   (trt/onnxruntime/ort_session.cc).
 * - `worker` (the fallback without the addon): each context is an InferenceSession inside its own worker thread.
 *   Inputs are copied once into a transferred buffer, outputs come back transferred (no second copy). The worker
 *   source is inline so it runs the same from src/ (vitest) and dist/.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const ARRAYS = { float32: Float32Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array, int32: Int32Array,
  int64: BigInt64Array, bool: Uint8Array, float64: Float64Array, int16: Int16Array };
let session;
(async () => {
  try {
    session = await ort.InferenceSession.create(workerData.modelPath, workerData.sessionOptions);
    parentPort.postMessage({ ready: true, inputNames: session.inputNames, outputNames: session.outputNames });
  } catch (e) {
    parentPort.postMessage({ ready: false, error: String(e && e.message || e) });
  }
})();
parentPort.on('message', async (msg) => {
  try {
    const feeds = {};
    for (const f of msg.feeds) {
      let data = new ARRAYS[f.dtype](f.buffer, f.byteOffset, f.length);
      // onnxruntime-node refuses shared memory: copy here, off the main thread.
      if (f.buffer instanceof SharedArrayBuffer) data = data.slice();
      feeds[f.name] = new ort.Tensor(f.dtype, data, f.dims);
    }
    const out = await session.run(feeds);
    const outputs = [];
    const transfer = [];
    for (const name of session.outputNames) {
      const t = out[name];
      let data = t.data;
      // Transfer only buffers the tensor owns whole; otherwise copy into one it does.
      if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = data.slice();
      outputs.push({ name, dtype: t.type, dims: Array.from(t.dims), buffer: data.buffer });
      transfer.push(data.buffer);
    }
    parentPort.postMessage({ id: msg.id, outputs }, transfer);
  } catch (e) {
    parentPort.postMessage({ id: msg.id, error: String(e && e.message || e) });
  }
});
`;

/** One onnxruntime session that runs requests in order. */
export interface Context {
  run(feeds: TensorMap, outputs?: DeviceOutputs): Promise<TensorMap>;
  close(): Promise<void>;
}

export type OnnxruntimeRunner = 'native' | 'worker';

/** Batches for the worker runner are assembled in shared memory: the worker, not the event loop, copies. */
function allocateShared(dtype: DType, length: number): TypedArray {
  const Ctor = DTYPE_ARRAY[dtype] as unknown as new (buffer: SharedArrayBuffer) => TypedArray;
  const bytes = (DTYPE_ARRAY[dtype] as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  return new Ctor(new SharedArrayBuffer(length * bytes));
}

// ONNX TensorProto element types of our dtypes, and back.
const ONNX_TYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int16: 5,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
};
const DTYPE_OF_ONNX = new Map<number, DType>(
  Object.entries(ONNX_TYPE).map(([dtype, type]) => [type, dtype as DType]),
);

/**
 * onnxruntime's memory pattern is off in every session. With it, each run takes its whole plan's memory in one block
 * straight from malloc, outside the arena, and frees it after; BlazeFace's block at batch 14-16 is above glibc's
 * 32 MiB mmap ceiling, so every such run maps fresh memory: 10,000 page faults per batch-16 run (test/warmup.test.ts).
 * Without it the intermediate tensors come from the arena, which keeps its pages; batch 1 and 16 ran as fast either
 * way (BENCHMARKS.md, serving, fourth session).
 */
const MEMORY_PATTERN = false;

/** What the addon's exports.onnxruntime offers (trt/onnxruntime/ort_session.cc). */
export interface NativeOnnxruntime {
  open(
    library: string,
    model: string,
    options: {
      intraOpThreads: number;
      interOpThreads: number;
      spinning: boolean;
      graphOptimization: number;
      memoryPattern?: boolean;
      device?: NativeDeviceOptions;
    },
  ): Promise<unknown>;
  Session: new (opened: unknown) => NativeSession;
  /** '' when dlopen loads the library and all it links, else dlerror's reason. */
  probe(path: string): string;
  providers(library: string): Promise<{ version: string; providers: string[] }>;
}

/** A CUDA session's options (trt/onnxruntime/ort_open.cc ParseDevice). */
export interface NativeDeviceOptions {
  kind: 'cuda';
  id: number;
  /** The context's cudaStream_t (from the core's stream pool). */
  stream: bigint;
  cudaGraph: boolean;
  graphBatchSizes?: number[];
  /** With graphs: also a dynamic (eager) session for batches above the largest graph size. */
  dynamicFallback?: boolean;
  batchDimension?: string;
  convAlgoSearch?: 'EXHAUSTIVE' | 'HEURISTIC' | 'DEFAULT';
  /** CUDA provider options yqp-trt chooses for the model (before the user's; dropped on the first-struct route). */
  providerDefaults?: Record<string, string>;
  /** More CUDA provider options by onnxruntime's names (its string values), after yqp-trt's. */
  providerOptions?: Record<string, string>;
  /** Row selection after each run (ort_selection.h): (scores, rows) output pairs by name. */
  selection?: RowSelection;
  tensorrt?: {
    fp16?: boolean;
    int8?: boolean;
    calibrationTable?: string;
    engineCachePath?: string;
    timingCachePath?: string;
    minShapes?: string;
    optShapes?: string;
    maxShapes?: string;
  };
}

/** Device memory a CUDA session reads an input from (a DeviceBuffer, a ring slot, a CUDA IPC region). */
export interface DeviceMemory {
  ptr: bigint;
  size?: number;
}

export interface CopyStats {
  runs: number;
  paddedRuns: number;
  hostToDeviceBytes: number;
  deviceToHostBytes: number;
  deviceToDeviceBytes: number;
}

export interface NativeSession {
  readonly inputNames: string[];
  readonly outputNames: string[];
  readonly version: string;
  /** 'cpu' or 'cuda:N'. */
  readonly device: string;
  /** A CUDA-graph session's batch sizes (a batch runs on the smallest that holds it). */
  readonly graphBatchSizes: number[];
  copyStats(): CopyStats | Record<string, never>;
  /**
   * Feeds as [input index, ONNX element type, dims, data]; outputs in outputNames order as [type, dims, buffer];
   * `timing`: [ms queued, ms in Run, ms back to JS, the runner thread's CPU ms, involuntary context switches and
   * minor page faults in Run].
   */
  run(
    feeds: [number, number, readonly number[], TypedArray | DeviceMemory][],
    /** CUDA sessions: outputs copied into device memory on the GPU, as [output index, memory]. */
    outputs?: [number, OutputMemory][],
  ): Promise<
    // buffer undefined: the output was written to its device memory
    [number, number[], ArrayBuffer | undefined, string?][] & {
      timing?: [number, number, number, number, number, number];
    }
  >;
  close(): Promise<void>;
}

import { onnxruntimeLibraryPath } from './onnxruntime-library.js';

export { onnxruntimeLibraryPath };

/** The native runner, or why it cannot be used here. */
export function nativeRunner(): { native?: NativeOnnxruntime; library?: string; reason?: string } {
  const { binding } = loadBinding();
  const native = binding?.onnxruntime as NativeOnnxruntime | undefined;
  if (!native) return { reason: 'the native addon is not built (see `yqp-trt doctor`)' };
  const library = onnxruntimeLibraryPath();
  if (!library)
    return { reason: `onnxruntime-node ships no libonnxruntime for ${process.platform}-${process.arch}` };
  return { native, library };
}

export class NativeContext implements Context {
  private readonly inputIndex: Map<string, number>;
  private readonly outputIndex: Map<string, number>;
  constructor(readonly session: NativeSession) {
    this.inputIndex = new Map(session.inputNames.map((n, i) => [n, i]));
    this.outputIndex = new Map(session.outputNames.map((n, i) => [n, i]));
  }

  async run(feeds: TensorMap, deviceOutputs?: DeviceOutputs): Promise<TensorMap> {
    const list: [number, number, readonly number[], TypedArray | DeviceMemory][] = [];
    for (const name in feeds) {
      const t = feeds[name];
      const index = this.inputIndex.get(name);
      if (index === undefined) throw new YqpError('E_BACKEND', `onnxruntime: the model has no input ${name}`);
      list.push([index, ONNX_TYPE[t.dtype], t.dims, t.device ?? t.data]);
    }
    let targets: [number, OutputMemory][] | undefined;
    for (const name in deviceOutputs) {
      const index = this.outputIndex.get(name);
      if (index === undefined)
        throw new YqpError('E_BACKEND', `onnxruntime: the model has no output ${name}`);
      (targets ??= []).push([index, deviceOutputs[name]]);
    }
    const out = await this.session.run(list, targets);
    const names = this.session.outputNames;
    const outputs: TensorMap = {};
    for (let i = 0; i < out.length; i++) {
      const [type, dims, buffer, name] = out[i];
      const dtype = DTYPE_OF_ONNX.get(type);
      if (dtype === undefined)
        throw new YqpError(
          'E_BACKEND',
          `onnxruntime: output ${names[i]} has ONNX element type ${type}, not supported`,
        );
      // A CUDA session names each output (a row selection replaces a pair by its own); CPU sessions keep the order.
      const key = name ?? names[i];
      const target = buffer === undefined ? deviceOutputs?.[key] : undefined;
      outputs[key] = target
        ? deviceTensor(dtype, target, dims)
        : { dtype, dims, data: new DTYPE_ARRAY[dtype](buffer ?? new ArrayBuffer(0)) };
    }
    if (out.timing) {
      const [queuedMs, runMs, deliverMs, runCpuMs, runInvoluntarySwitches, runMinorFaults] = out.timing;
      Object.defineProperty(outputs, RUN_TIMING, {
        value: {
          queuedMs,
          runMs,
          deliverMs,
          runCpuMs,
          runInvoluntarySwitches,
          runMinorFaults,
        } satisfies RunTiming,
      });
    }
    return outputs;
  }

  close(): Promise<void> {
    return this.session.close();
  }
}

export async function startNative(
  native: NativeOnnxruntime,
  library: string,
  modelPath: string,
  threads: number,
  spin: boolean,
  device?: NativeDeviceOptions,
): Promise<NativeContext> {
  try {
    const opened = await native.open(library, modelPath, {
      intraOpThreads: threads,
      interOpThreads: 1,
      spinning: spin,
      graphOptimization: 99,
      memoryPattern: MEMORY_PATTERN,
      device,
    });
    return new NativeContext(new native.Session(opened));
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === 'E_MODEL_FILE')
      throw new YqpError('E_MODEL_FILE', err.message, { argument: 'model', cause: e });
    if (err.code === 'E_DEVICE_UNAVAILABLE')
      throw new YqpError('E_BACKEND_UNAVAILABLE', err.message, { argument: 'device', cause: e });
    if (err.code === 'E_CUDA_GRAPH')
      throw new YqpError('E_BACKEND', err.message, { argument: 'cudaGraph', cause: e });
    throw new YqpError('E_BACKEND', err.message, { cause: e });
  }
}

interface FeedMessage {
  name: string;
  dtype: DType;
  dims: readonly number[];
  buffer: ArrayBufferLike;
  byteOffset: number;
  length: number;
}

interface Pending {
  resolve: (outputs: TensorMap) => void;
  reject: (e: Error) => void;
}

interface WorkerMessage {
  id?: number;
  ready?: boolean;
  error?: string;
  outputs?: { name: string; dtype: DType; dims: number[]; buffer: ArrayBuffer }[];
}

class WorkerContext implements Context {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private dead?: Error;

  constructor(private readonly worker: Worker) {
    worker.on('message', (msg: WorkerMessage) => {
      if (msg.id === undefined) return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error !== undefined) {
        p.reject(new YqpError('E_BACKEND', `onnxruntime: ${msg.error}`));
        return;
      }
      const outputs: TensorMap = {};
      for (const o of msg.outputs!)
        outputs[o.name] = { dtype: o.dtype, dims: o.dims, data: new DTYPE_ARRAY[o.dtype](o.buffer) };
      p.resolve(outputs);
    });
    const fail = (e: Error) => {
      this.dead = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', (e) =>
      fail(new YqpError('E_BACKEND', `onnxruntime worker failed: ${e.message}`, { cause: e })),
    );
    worker.on('exit', (code) => fail(new YqpError('E_CLOSED', `onnxruntime worker exited (${code})`)));
  }

  run(feeds: TensorMap): Promise<TensorMap> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    const list: FeedMessage[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const [name, t] of Object.entries(feeds)) {
      const { length } = t.data;
      if (t.data.buffer instanceof SharedArrayBuffer) {
        // Shared memory reaches the worker as is; the worker makes the copy, not the event loop.
        list.push({
          name,
          dtype: t.dtype,
          dims: t.dims,
          buffer: t.data.buffer,
          byteOffset: t.data.byteOffset,
          length,
        });
        continue;
      }
      // One copy, so the caller keeps its array and the worker gets a buffer it owns.
      const copy = (t.data as Uint8Array).slice();
      list.push({ name, dtype: t.dtype, dims: t.dims, buffer: copy.buffer, byteOffset: 0, length });
      transfer.push(copy.buffer as ArrayBuffer);
    }
    return new Promise<TensorMap>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, feeds: list }, transfer);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

export class OnnxruntimeSession implements BackendSession {
  readonly backend = 'onnxruntime' as const;
  // A context runs one request at a time; a second one waits there, already handed over.
  readonly pipelineDepth = 2;
  readonly allocate?: (dtype: DType, length: number) => TypedArray;
  constructor(
    private readonly contextList: Context[],
    readonly runner: OnnxruntimeRunner,
    /** 'cpu' or 'cuda:N'. */
    readonly device = 'cpu',
    private readonly onClose?: () => void,
  ) {
    if (runner === 'worker') this.allocate = allocateShared;
  }
  /** The native sessions of the contexts (their copy counters, graph sizes). */
  get nativeSessions(): NativeSession[] {
    return this.contextList.flatMap((c) => (c instanceof NativeContext ? [c.session] : []));
  }
  get contexts(): number {
    return this.contextList.length;
  }
  /** The CUDA-graph batch sizes of the contexts ([] without graphs). */
  get graphBatchSizes(): readonly number[] {
    return this.nativeSessions[0]?.graphBatchSizes ?? [];
  }
  /** A CUDA session's contexts write outputs to device memory (run's `outputs`). */
  get deviceOutputs(): boolean {
    return this.device !== 'cpu';
  }
  run(context: number, feeds: TensorMap, outputs?: DeviceOutputs): Promise<TensorMap> {
    const c = this.contextList[context];
    if (!c) return Promise.reject(new YqpError('E_INTERNAL', `no context ${context}`));
    return c.run(feeds, outputs);
  }
  async close(): Promise<void> {
    await Promise.all(this.contextList.map((c) => c.close()));
    this.onClose?.();
  }
}

function startWorker(modelPath: string, threads: number, spin: boolean): Promise<WorkerContext> {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      ortPath: require.resolve('onnxruntime-node'),
      modelPath,
      sessionOptions: {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        logSeverityLevel: 3,
        graphOptimizationLevel: 'all',
        enableMemPattern: MEMORY_PATTERN,
        // Spinning pool threads of one context steal the cores of the others; spin only when alone.
        ...(spin ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } }),
      },
    },
  });
  return new Promise((resolve, reject) => {
    const onMessage = (msg: WorkerMessage) => {
      if (msg.ready === undefined) return;
      worker.off('message', onMessage);
      if (msg.ready) resolve(new WorkerContext(worker));
      else {
        void worker.terminate();
        reject(
          new YqpError('E_MODEL_FILE', `onnxruntime cannot load ${modelPath}: ${msg.error}`, {
            argument: 'model',
          }),
        );
      }
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
  });
}

export const onnxruntimeBackend: Backend = {
  name: 'onnxruntime',
  availability(): BackendAvailability {
    try {
      const ort = require('onnxruntime-node') as { env: { versions: { node: string } } };
      return { available: true, version: ort.env.versions.node };
    } catch (e) {
      return { available: false, reason: `onnxruntime-node cannot be loaded: ${(e as Error).message}` };
    }
  },
  async open(modelPath: string, config: ModelConfig, options: OpenOptions): Promise<BackendSession> {
    // Loaded on demand: the CUDA path builds on this module's runner (and a CPU session never needs it).
    if (options.deviceKind === 'cuda')
      return (await import('./onnxruntime-cuda.js')).openCudaContexts(modelPath, config, options);
    const threads =
      options.threadsPerContext ?? Math.max(1, Math.floor(availableParallelism() / options.contexts));
    // Spinning threads that fill every core starve the event loop (and each other): spin only with a core to spare.
    const spin =
      options.spinWait ?? (options.contexts === 1 || options.contexts * threads < availableParallelism());
    const found = nativeRunner();
    if (options.runner === 'native' && !found.native)
      throw new YqpError('E_BACKEND', `the native onnxruntime runner cannot be used: ${found.reason}`, {
        argument: 'runner',
      });
    const runner: OnnxruntimeRunner = options.runner ?? (found.native ? 'native' : 'worker');
    // An INT8 onnxruntime form: the file for this CPU (int8 weights where VNNI is, uint8 elsewhere).
    const file = cpuInt8Form(modelPath);
    const contexts = await Promise.allSettled(
      Array.from({ length: options.contexts }, () =>
        runner === 'native'
          ? startNative(found.native!, found.library!, file, threads, spin)
          : startWorker(file, threads, spin),
      ),
    );
    const failed = contexts.find((c): c is PromiseRejectedResult => c.status === 'rejected');
    if (failed) {
      // Free the contexts that did open before reporting the one that did not.
      await Promise.all(contexts.map((c) => (c.status === 'fulfilled' ? c.value.close() : undefined)));
      throw failed.reason;
    }
    return new OnnxruntimeSession(
      contexts.map((c) => (c as PromiseFulfilledResult<Context>).value),
      runner,
    );
  },
};
