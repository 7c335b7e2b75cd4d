import { YqpError, invalidParameter } from '../errors.js';
import { loadRuntime } from '../gpu/runtime.js';
import type { ModelConfig } from '../repository/config.js';
import type { BackendSession, OpenOptions } from './backend.js';
import { requireCudaOnnxruntime } from './onnxruntime-gpu.js';
import {
  NativeContext,
  OnnxruntimeSession,
  nativeRunner,
  startNative,
  type NativeDeviceOptions,
} from './onnxruntime.js';

/**
 * onnxruntime on a CUDA GPU: the CUDA execution provider (and the TensorRT provider before it, where asked and
 * where libnvinfer 10 is), on the same scheduler as the CPU provider. These are options of the onnxruntime
 * backend, not backends of their own: the model file, the profiles, the batching and the runner thread are the
 * same; only where the kernels run changes.
 *
 * Each context owns one CUDA stream of the core's stream pool, handed to onnxruntime as its compute stream, so
 * N contexts are N streams that overlap on the GPU. Inputs and outputs are bound to device memory of the core's
 * pool (IOBinding): a host input is uploaded once, a device input (ring slot, CUDA IPC region, the preprocessing
 * kernel's output) is copied on the device, and only outputs come back.
 */
export const DEFAULT_BATCH_DIMENSION = 'batch';

/** CUDA graph batch sizes: powers of two up to the largest batch, and that batch (a batch runs on the next one). */
export function graphBatchSizes(
  config: ModelConfig,
  asked: boolean | number[] | undefined,
): number[] | undefined {
  if (!asked) return undefined;
  const max = config.maxBatchSize;
  if (max <= 0) return []; // no batch dimension: one graph of the model's fixed shape
  if (Array.isArray(asked)) {
    for (const [i, b] of asked.entries())
      if (!Number.isInteger(b) || b < 1 || b > max)
        throw invalidParameter(`cudaGraph[${i}]`, `an integer from 1 to ${max}`, b);
    return [...new Set(asked)].sort((a, b) => a - b);
  }
  const sizes: number[] = [];
  for (let b = 1; b < max; b *= 2) sizes.push(b);
  sizes.push(max);
  return sizes;
}

/** trt_profile_{min,opt,max}_shapes from the entry's profiles ("input:1x128x128x3,..."), first profile. */
export function tensorrtProfileShapes(config: ModelConfig): {
  minShapes: string;
  optShapes: string;
  maxShapes: string;
} {
  const profile = config.profiles[0] ?? {};
  const join = (key: 'min' | 'opt' | 'max') =>
    Object.entries(profile)
      .map(([name, r]) => `${name}:${r[key].join('x')}`)
      .join(',');
  return { minShapes: join('min'), optShapes: join('opt'), maxShapes: join('max') };
}

/**
 * The CUDA provider's options yqp-trt picks for a model, under the user's cudaProviderOptions: FP16 convolutions
 * in NHWC (prefer_nhwc), where cuDNN's tensor-core kernels are (BlazeFace batch 64 on the H200, two runs: 68,928
 * and 76,224 images/s against 61,632 and 54,592 in NCHW; FP32 showed no steady difference, 58,304 and 66,496
 * against 60,032 and 56,064: BENCHMARKS.md, eighth session).
 */
export function cudaProviderDefaults(config: ModelConfig): Record<string, string> | undefined {
  return config.precision === 'fp16' ? { prefer_nhwc: '1' } : undefined;
}

export async function openCudaContexts(
  modelPath: string,
  config: ModelConfig,
  options: OpenOptions,
): Promise<BackendSession> {
  if (options.runner === 'worker')
    throw invalidParameter(
      'runner',
      "'native' (CUDA sessions run on the addon's runner threads)",
      options.runner,
    );
  const found = nativeRunner();
  if (!found.native)
    throw new YqpError('E_BACKEND_UNAVAILABLE', `device cuda needs the native addon: ${found.reason}`, {
      argument: 'device',
      solutions: ['npm run build:native (needs the CUDA toolkit and CMake)'],
    });
  const { runtime, reason } = loadRuntime();
  if (!runtime)
    throw new YqpError('E_BACKEND_UNAVAILABLE', `device cuda is unavailable: ${reason}`, {
      argument: 'device',
      solutions: ['run on a machine with an NVIDIA driver and GPU', 'or use --device cpu'],
    });
  const ort = await requireCudaOnnxruntime(options.onnxruntimeDir, Boolean(options.tensorrtProvider));
  const id = options.device ?? 0;
  const streams = (() => {
    try {
      return new runtime.StreamPool(id, options.contexts);
    } catch (e) {
      throw new YqpError(
        'E_BACKEND_UNAVAILABLE',
        `device cuda:${id} is unavailable: ${(e as Error).message}`,
        {
          argument: 'device',
          cause: e,
        },
      );
    }
  })();
  const sizes = graphBatchSizes(config, options.cudaGraph);
  const tensorrt = options.tensorrtProvider
    ? {
        ...tensorrtProfileShapes(config),
        fp16: config.precision === 'fp16',
        int8: config.precision === 'int8',
      }
    : undefined;
  const open = (graph: boolean) =>
    Promise.allSettled(
      Array.from({ length: options.contexts }, (_, i) => {
        const device: NativeDeviceOptions = {
          kind: 'cuda',
          id,
          stream: streams.handle(i),
          cudaGraph: graph,
          graphBatchSizes: graph ? sizes : undefined,
          // Batches above the largest graph run eagerly on a dynamic session of their own.
          dynamicFallback:
            graph && sizes !== undefined && sizes.length > 0 && Math.max(...sizes) < config.maxBatchSize,
          batchDimension: DEFAULT_BATCH_DIMENSION,
          providerDefaults: cudaProviderDefaults(config),
          providerOptions: options.cudaProviderOptions,
          tensorrt,
          selection: options.rowSelection,
        };
        // One intra-op thread: the GPU computes; the thread only launches (and runs what stays on the CPU). The
        // runner sleeps between runs unless asked to spin: a pipeline's CPU time a frame is a target of its own.
        return startNative(
          found.native!,
          ort.core,
          modelPath,
          options.threadsPerContext ?? 1,
          options.spinWait ?? false,
          device,
        );
      }),
    );
  const settle = async (results: PromiseSettledResult<NativeContext>[]) => {
    const failed = results.find((c): c is PromiseRejectedResult => c.status === 'rejected');
    if (!failed) return results.map((c) => (c as PromiseFulfilledResult<NativeContext>).value);
    await Promise.all(results.map((c) => (c.status === 'fulfilled' ? c.value.close() : undefined)));
    throw failed.reason;
  };
  let contexts: NativeContext[];
  let graphRefused: string | undefined;
  try {
    contexts = await settle(await open(sizes !== undefined));
  } catch (e) {
    if (sizes === undefined || (e as YqpError).argument !== 'cudaGraph') {
      streams.dispose();
      throw e;
    }
    // onnxruntime refuses capture when a node stays off the CUDA provider: run eagerly and say why.
    graphRefused = (e as Error).message;
    process.stderr.write(
      `yqp-trt: CUDA graphs refused for ${config.name}, running eagerly: ${graphRefused}\n`,
    );
    try {
      contexts = await settle(await open(false));
    } catch (e2) {
      streams.dispose();
      throw e2;
    }
  }
  const session = new OnnxruntimeSession(contexts, 'native', `cuda:${id}`, () => streams.dispose());
  Object.assign(session, { onnxruntime: { core: ort.core, source: ort.source }, graphRefused });
  return session;
}
