import {
  expectNonNegativeNumber,
  expectOneOf,
  expectPositiveInteger,
  invalidParameter,
  YqpError,
} from './errors.js';
import { backendNames, getBackend, type BackendName } from './backends/index.js';
import type { RowSelection } from './backends/backend.js';
import type { Face } from './postprocess/blazeface.js';
import { postprocess, postprocessorFor, type Postprocessed } from './postprocess/index.js';
import { preprocessImages, type ImageInput, type ImageTransform } from './preprocess/cpu.js';
import { parseDevice } from './device.js';
import { readEntry, type RepositoryEntry } from './repository/repository.js';
import type { ModelConfig } from './repository/config.js';
import { Scheduler, concatFeeds, type SubmitOptions } from './scheduler/scheduler.js';
import type { Tensor, TensorMap } from './tensor.js';
import { validateDeviceOutputs, validateFeeds } from './validate.js';
import { warmUp, type WarmupReport } from './warmup.js';

export interface LoadModelOptions {
  /** Execution contexts served round-robin (default: config.instances). */
  contexts?: number;
  /** Version folder to load (default: the highest). */
  version?: number;
  /** Override the entry's backend (default: config.backend). */
  backend?: BackendName;
  /** Override config.dynamicBatching; `false` turns batching off. */
  dynamicBatching?: { maxQueueDelayMicroseconds: number; preferredBatchSizes?: number[] } | false;
  /** Requests allowed to wait (default: config.scheduler.maxQueueSize or 1024). */
  maxQueueSize?: number;
  queueTimeoutMs?: number;
  /** onnxruntime intra-op threads per context (default: cores / contexts). */
  threadsPerContext?: number;
  /**
   * Where the model runs: 'cpu' (onnxruntime's CPU provider), 'cuda' or 'cuda:N' (onnxruntime's CUDA provider on
   * GPU N, or TensorRT), or a GPU ordinal. Default: config.json's `device`, else 'cpu' for onnxruntime entries.
   */
  device?: number | string;
  /**
   * CUDA graphs per context (device cuda): true for the default batch sizes (powers of two up to the largest
   * batch, and that batch; a batch runs on the smallest graph that holds it), a list of sizes, or false.
   * Default: config.json's `cudaGraph`, else false.
   */
  cudaGraph?: boolean | number[];
  /** A folder holding a GPU build of onnxruntime (default: YQP_ORT_GPU_DIR, onnxruntime-node's, .cache/ort-gpu). */
  onnxruntimeDir?: string;
  /**
   * onnxruntime's CUDA provider options by their own names, as Python's `providers=[('CUDAExecutionProvider',
   * {...})]` takes them (cudnn_conv_algo_search, prefer_nhwc, use_tf32 ...); device cuda. They override yqp-trt's
   * choices except the device and the context's stream.
   */
  cudaProviderOptions?: Record<string, string | number | boolean>;
  /** onnxruntime's TensorRT provider before its CUDA provider (device cuda; needs libnvinfer 10). */
  tensorrtProvider?: boolean;
  /**
   * Let onnxruntime's idle pool threads (and the native runner thread) spin between runs instead of sleeping:
   * lower latency, at the price of busy cores. Default: on when the contexts' threads leave a core free for the
   * event loop (contexts x threadsPerContext < cores), or with a single context. On device cuda, default off: the
   * runner thread then sleeps between runs (true saves its wake-up on a request that follows closely).
   */
  spinWait?: boolean;
  /**
   * Device cuda, a postprocessor that selects rows (blazeface): after each run a kernel keeps only the anchors whose
   * score may pass the postprocessor's threshold, and only those come back (at most `maxRows` an image and output
   * pair, default 64; an image with more gets the full outputs, counted in copyStats' selectionOverflows). infer()
   * then returns `selected:<scores output>` tensors in place of the score and box outputs (selected-rows.ts);
   * postprocess(), infer on images and DeviceFrameInference decode either form to the same faces. Default false.
   */
  selectRows?: boolean | { maxRows?: number };
  /**
   * How onnxruntime runs off the event loop: `native` (the addon's runner threads; inputs read in place, outputs
   * copied once) or `worker` (worker threads; inputs copied once, outputs transferred). Default: native where the
   * addon is built, else worker.
   */
  runner?: 'native' | 'worker';
  /**
   * Warm every context up before the model is ready (see WarmupConfig; overrides config.warmup): `false` turns
   * it off, a list of batch sizes replaces the default (every size up to 64, then powers of two).
   */
  warmup?: boolean | number[];
}

export interface ImageResults {
  /**
   * The postprocessor's results (config.postprocessing), one per image in pixels of each original image; its
   * `type` tells which postprocessor made them and so their shape (blazeface: Face[] per image).
   */
  postprocessed?: Postprocessed;
  /** @deprecated the same as postprocessed.images when postprocessed.type is 'blazeface'; read postprocessed. */
  faces?: Face[][];
  /** Raw outputs, batch concatenated in image order. */
  outputs: TensorMap;
  transforms: ImageTransform[];
}

export class Model {
  private closed = false;

  constructor(
    readonly entry: RepositoryEntry,
    readonly scheduler: Scheduler,
    /** What the load's warm-up ran, or why it ran none. */
    readonly warmup: WarmupReport = { skipped: 'not run' },
  ) {}

  get name(): string {
    return this.entry.name;
  }
  get version(): number {
    return this.entry.version;
  }
  get config(): ModelConfig {
    return this.entry.config;
  }
  /** Where the contexts run: 'cpu' or 'cuda:N'. */
  get device(): string {
    return this.scheduler.session.device ?? 'cpu';
  }

  /** Whether infer() can write outputs into device memory (`options.outputs`): a CUDA session. */
  get deviceOutputs(): boolean {
    return this.scheduler.session.deviceOutputs === true;
  }

  /**
   * Runs named input tensors; shapes and dtypes are checked against the profiles first. The input arrays are
   * read in place while the request runs: change them only once the Promise has settled. On device cuda,
   * `options.outputs` names outputs to write into device memory on the GPU instead (a CUDA shared-memory region, the
   * next stage's input): their tensors come back with `device` set and no data, the request runs alone (not batched
   * with others) and, with selectRows, its other outputs come back in full.
   */
  infer(feeds: TensorMap, options: SubmitOptions = {}): Promise<TensorMap> {
    if (this.closed) return Promise.reject(new YqpError('E_CLOSED', `Model ${this.name} is closed`));
    let checked: TensorMap;
    let submit = options;
    try {
      checked = validateFeeds(this.config, feeds);
      if (options.outputs !== undefined) {
        const where = { device: this.device, supported: this.deviceOutputs };
        submit = { ...options, outputs: validateDeviceOutputs(this.config, options.outputs, where, checked) };
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return this.scheduler.submit(checked, submit);
  }

  /**
   * Encoded images to the tensor of the entry's image input (config.preprocessing.input), with each image's
   * transform back to its own pixels: the one path images take to the model (inferImages, the server's BYTES
   * inputs).
   */
  async preprocess(
    images: readonly ImageInput[],
  ): Promise<{ input: string; tensor: Tensor; transforms: ImageTransform[] }> {
    const spec = this.imageSpec();
    return { input: spec.input, ...(await preprocessImages(images, spec)) };
  }

  /** Preprocesses images with the entry's spec (sharp), runs them, and applies its postprocessor. */
  async inferImages(images: readonly ImageInput[], options: SubmitOptions = {}): Promise<ImageResults> {
    this.imageSpec();
    if (!Array.isArray(images) || images.length === 0)
      throw invalidParameter('images', 'a non-empty array of images', images);
    const chunk = Math.max(1, this.config.maxBatchSize);
    const parts: Promise<{ outputs: TensorMap; transforms: ImageTransform[] }>[] = [];
    for (let i = 0; i < images.length; i += chunk) {
      const slice = images.slice(i, i + chunk);
      parts.push(
        this.preprocess(slice).then(async ({ input, tensor, transforms }) => ({
          outputs: await this.infer({ [input]: tensor }, options),
          transforms,
        })),
      );
    }
    const done = await Promise.all(parts);
    const outputs = done.length === 1 ? done[0].outputs : concatFeeds(done.map((d) => d.outputs));
    const transforms = done.flatMap((d) => d.transforms);
    const post = this.config.postprocessing;
    const postprocessed = postprocess(post, outputs, transforms);
    const results: ImageResults = { postprocessed, faces: undefined, outputs, transforms };
    // Callers from before the registry read the results under the postprocessor's old field (blazeface: faces).
    const legacy = post && postprocessorFor(post.type).legacyField;
    if (legacy && postprocessed)
      (results as unknown as Record<string, unknown>)[legacy] = postprocessed.images;
    return results;
  }

  private imageSpec(): NonNullable<ModelConfig['preprocessing']> {
    const spec = this.config.preprocessing;
    if (!spec)
      throw new YqpError('E_CONFIG', `Model ${this.name} has no preprocessing spec in config.json`, {
        argument: 'preprocessing',
      });
    return spec;
  }

  /** Stops accepting requests, finishes those queued and running, then frees the contexts. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.scheduler.close();
  }
}

/** Whether every input's first dimension is dynamic, so requests can be concatenated into batches. */
export function isBatchable(config: ModelConfig): boolean {
  return config.maxBatchSize > 1 && config.inputs.every((i) => i.dims[0] === -1);
}

export async function loadModel(entryDir: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof entryDir !== 'string' || entryDir.length === 0)
    throw invalidParameter('entryDir', 'a path to a repository entry (<repo>/<name>)', entryDir);
  if (options.contexts !== undefined) expectPositiveInteger('contexts', options.contexts);
  if (options.version !== undefined) expectPositiveInteger('version', options.version);
  if (options.maxQueueSize !== undefined) expectPositiveInteger('maxQueueSize', options.maxQueueSize);
  if (options.threadsPerContext !== undefined)
    expectPositiveInteger('threadsPerContext', options.threadsPerContext);
  if (options.queueTimeoutMs !== undefined) expectNonNegativeNumber('queueTimeoutMs', options.queueTimeoutMs);
  if (options.backend !== undefined) expectOneOf('backend', options.backend, backendNames());
  if (options.runner !== undefined) expectOneOf('runner', options.runner, ['native', 'worker'] as const);
  if (options.warmup !== undefined && typeof options.warmup !== 'boolean') {
    if (!Array.isArray(options.warmup) || options.warmup.length === 0)
      throw invalidParameter('warmup', 'a boolean or a non-empty array of batch sizes', options.warmup);
    for (const [i, b] of options.warmup.entries()) expectPositiveInteger(`warmup[${i}]`, b);
  }
  const device = options.device !== undefined ? parseDevice(options.device) : undefined;
  if (
    options.cudaGraph !== undefined &&
    typeof options.cudaGraph !== 'boolean' &&
    !Array.isArray(options.cudaGraph)
  )
    throw invalidParameter('cudaGraph', 'a boolean or an array of batch sizes', options.cudaGraph);
  const cudaProviderOptions = providerOptionsOf(options.cudaProviderOptions);
  const entry = await readEntry(entryDir, options.version);
  const config = entry.config;
  const placement =
    device ?? (config.device !== undefined ? parseDevice(config.device, 'config.device') : undefined);
  const rowSelection = rowSelectionOf(options.selectRows, config, placement?.kind);
  const backend = await getBackend(options.backend ?? config.backend);
  const contexts = options.contexts ?? config.instances;
  const session = await backend.open(entry.modelPath, config, {
    contexts,
    threadsPerContext: options.threadsPerContext,
    // A Triton entry's GPU instance group names its device.
    device: placement?.id ?? entry.device,
    deviceKind: placement?.kind,
    cudaGraph: options.cudaGraph ?? config.cudaGraph,
    onnxruntimeDir: options.onnxruntimeDir,
    cudaProviderOptions,
    tensorrtProvider: options.tensorrtProvider,
    runner: options.runner,
    spinWait: options.spinWait,
    rowSelection,
  });
  let warmup: WarmupReport;
  try {
    warmup = await warmUp(
      session,
      config,
      Array.isArray(options.warmup) ? { batchSizes: options.warmup } : options.warmup,
    );
  } catch (e) {
    await session.close();
    throw e;
  }
  const batching =
    options.dynamicBatching === false ? undefined : (options.dynamicBatching ?? config.dynamicBatching);
  const scheduler = new Scheduler(session, {
    maxBatchSize: config.maxBatchSize,
    batchable: batching !== undefined && isBatchable(config),
    preferredBatchSizes: batching?.preferredBatchSizes,
    maxQueueDelayMicroseconds: batching?.maxQueueDelayMicroseconds ?? 0,
    maxQueueSize: options.maxQueueSize ?? config.scheduler?.maxQueueSize ?? 1024,
    queueTimeoutMs: options.queueTimeoutMs ?? config.scheduler?.queueTimeoutMs,
  });
  return new Model(entry, scheduler, warmup);
}

/** cudaProviderOptions as onnxruntime's string pairs; a key yqp-trt owns or a value of another type is refused. */
function providerOptionsOf(
  options: LoadModelOptions['cudaProviderOptions'],
): Record<string, string> | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw invalidParameter('cudaProviderOptions', 'an object of option names to values', options);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(options)) {
    if (['device_id', 'user_compute_stream', 'has_user_compute_stream'].includes(key))
      throw invalidParameter(
        `cudaProviderOptions.${key}`,
        'an option yqp-trt does not set itself (the device comes from `device`, the stream from the context)',
        value,
      );
    if (!['string', 'number', 'boolean'].includes(typeof value))
      throw invalidParameter(`cudaProviderOptions.${key}`, 'a string, number or boolean', value);
    out[key] = typeof value === 'boolean' ? (value ? '1' : '0') : String(value);
  }
  return out;
}

// MediaPipe's short-range detector passes up to 46 anchors on close-up crops of the test photos (BlazeFace 128: 24 a pair).
const DEFAULT_SELECTED_ROWS = 64;

/** loadModel's selectRows, checked, as the backend's row selection from the config's postprocessor. */
function rowSelectionOf(
  asked: LoadModelOptions['selectRows'],
  config: ModelConfig,
  kind: string | undefined,
): RowSelection | undefined {
  if (asked === undefined || asked === false) return undefined;
  if (asked !== true && (typeof asked !== 'object' || asked === null || Array.isArray(asked)))
    throw invalidParameter('selectRows', 'a boolean or { maxRows }', asked);
  const maxRows = asked === true ? DEFAULT_SELECTED_ROWS : (asked.maxRows ?? DEFAULT_SELECTED_ROWS);
  expectPositiveInteger('selectRows.maxRows', maxRows);
  if (kind !== 'cuda')
    throw invalidParameter(
      'selectRows',
      "a model on device 'cuda' (the rows are selected on the GPU)",
      kind ?? 'cpu',
    );
  const spec = config.postprocessing;
  const select = spec ? postprocessorFor(spec.type).rowSelection : undefined;
  if (!spec || !select)
    throw invalidParameter(
      'selectRows',
      'a model whose postprocessor selects rows on the GPU',
      spec ? `postprocessing ${spec.type}` : 'no postprocessing',
    );
  return { ...select(spec as never), maxRows };
}
