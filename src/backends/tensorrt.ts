import { readFile } from 'node:fs/promises';
import { YqpError, invalidParameter, isYqpError } from '../errors.js';
import type { ModelConfig } from '../repository/config.js';
import { DTYPE_ARRAY, type DType, type TensorMap } from '../tensor.js';
import { planLoadError, type TensorRTPlanMetadata } from '../tensorrt/metadata.js';
import { loadTensorRT, requireTensorRT, tensorrtAvailability } from '../tensorrt/index.js';
import type { NativeEngine } from '../tensorrt/native.js';
import { validateMemoryStrategy } from '../tensorrt/options.js';
import type { Backend, BackendSession, OpenOptions } from './backend.js';

/** Output dtypes the engine reports, as our tensors hold them (bfloat16 has no TypedArray: raw 16-bit words). */
function toDType(dtype: string): DType {
  if (dtype === 'bfloat16') return 'float16';
  if (dtype in DTYPE_ARRAY) return dtype as DType;
  throw new YqpError('E_DTYPE', `TensorRT output dtype ${dtype} has no tensor type here`, {
    received: dtype,
  });
}

/**
 * The TensorRT backend: the plan is deserialized once; each context is an IExecutionContext on its own CUDA
 * stream from the core, run() stages inputs through pinned memory, enqueues and resolves from the stream's
 * completion. Queueing, batching and round-robin stay in the scheduler above this seam.
 */
export const tensorrtBackend: Backend & { memoryStrategy?: string } = {
  name: 'tensorrt',
  availability() {
    return tensorrtAvailability();
  },
  async open(modelPath: string, config: ModelConfig, options: OpenOptions): Promise<BackendSession> {
    if (options.rowSelection)
      throw invalidParameter(
        'selectRows',
        "the onnxruntime backend's CUDA contexts (not TensorRT engines yet)",
        true,
      );
    const trt = requireTensorRT();
    const meta = config.metadata?.tensorrt as Partial<TensorRTPlanMetadata> | undefined;
    const device = options.device ?? 0;
    const info = trt.deviceInfo(device);
    const here = { version: trt.load().version ?? trt.compiledVersion, gpu: info.name, sm: info.sm };
    const plan = await readFile(modelPath).catch((e: NodeJS.ErrnoException) => {
      throw new YqpError('E_NOT_FOUND', `TensorRT plan ${modelPath} cannot be read (${e.code})`, {
        argument: 'model.plan',
        cause: e,
      });
    });
    let engine: NativeEngine;
    try {
      engine = new trt.Engine(plan, {
        contexts: options.contexts,
        device,
        memoryStrategy: validateMemoryStrategy(
          (config.metadata?.runtime as { memoryStrategy?: unknown } | undefined)?.memoryStrategy,
        ),
        cudaGraphs: (config.metadata?.runtime as { cudaGraphs?: boolean } | undefined)?.cudaGraphs ?? true,
        allowHostCode:
          (meta?.buildOptions as { versionCompatible?: boolean } | undefined)?.versionCompatible === true,
      });
    } catch (e) {
      // TensorRT's refusal says little ("version tag mismatch"); our metadata says which version and GPU built it.
      throw planLoadError(modelPath, meta, here, (e as Error).message);
    }
    const io = engine.describe().io;
    let closed = false;
    return {
      backend: 'tensorrt',
      contexts: options.contexts,
      async run(context: number, feeds: TensorMap): Promise<TensorMap> {
        if (closed) throw new YqpError('E_CLOSED', 'The TensorRT session is closed', { argument: 'session' });
        const inputs: Record<string, { data: ArrayBufferView; dims: number[] }> = {};
        for (const t of io.filter((t) => t.input)) {
          const feed = feeds[t.name];
          if (!feed)
            throw new YqpError('E_INPUT_MISSING', `Expected input ${t.name} but received none`, {
              argument: t.name,
            });
          if (feed.dtype !== t.dtype)
            throw new YqpError(
              'E_DTYPE',
              `Expected ${t.dtype} for input ${t.name} but received ${feed.dtype}`,
              {
                argument: t.name,
                expected: t.dtype,
                received: feed.dtype,
              },
            );
          inputs[t.name] = { data: feed.data, dims: [...feed.dims] };
        }
        let out;
        try {
          out = await engine.run(context, inputs);
        } catch (e) {
          if (isYqpError(e)) throw e;
          const err = e as Error & { code?: string };
          throw new YqpError(
            err.code === 'E_SHAPE' ? 'E_SHAPE' : 'E_BACKEND',
            `TensorRT run failed: ${err.message}`,
            { cause: e },
          );
        }
        const result: TensorMap = {};
        for (const [name, t] of Object.entries(out)) {
          const dtype = toDType(t.dtype);
          const Ctor = DTYPE_ARRAY[dtype];
          const data = new Ctor(
            t.data.buffer as ArrayBuffer,
            t.data.byteOffset,
            t.data.byteLength / Ctor.BYTES_PER_ELEMENT,
          );
          result[name] = { dtype, dims: t.dims, data };
        }
        return result;
      },
      async close() {
        if (closed) return;
        closed = true;
        engine.close();
      },
    };
  },
};

/** For doctor: the reason alone, without loading anything twice. */
export function tensorrtReason(): string | undefined {
  return loadTensorRT().reason;
}
