/**
 * Triton's model configuration of any repository entry: the completed config.pbtxt of a Triton folder, or the one
 * Triton would have for a yqp-trt config.json entry. Served by the HTTP config endpoint (as Triton's JSON) and the
 * gRPC ModelConfig RPC (as the message).
 */
import { backendEntry } from '../backends/index.js';
import { parseDevice } from '../device.js';
import type { ModelConfig, TensorSpec } from './config.js';
import type { RepositoryEntry } from './repository.js';
import { tritonConfigJson, type TritonModelConfig } from './triton-config.js';
import { DTYPE_TO_TRITON } from './triton-import.js';

/** Whether a config.json entry batches on dimension 0 the way Triton's max_batch_size means. */
function hasBatchDim(config: ModelConfig): boolean {
  return config.maxBatchSize > 0 && [...config.inputs, ...config.outputs].every((t) => t.dims[0] === -1);
}

/** The Triton configuration a yqp-trt config.json describes. */
export function toTriton(config: ModelConfig, device = 0): TritonModelConfig {
  const batch = hasBatchDim(config);
  const backend = backendEntry(config.backend);
  // A backend that runs anywhere is on the GPU its config.json `device` names ('cuda:N').
  const placed =
    backend.triton.instanceKind === 'any' && config.device !== undefined
      ? parseDevice(config.device, 'config.device')
      : undefined;
  const cudaDevice = placed?.kind === 'cuda';
  const onGpu = backend.triton.instanceKind === 'gpu' || cudaDevice;
  const gpu = cudaDevice ? placed.id : device;
  const cudaGraphsDefault = backend.triton.cudaGraphsDefault;
  const tensor = (t: TensorSpec) => ({
    name: t.name,
    data_type: DTYPE_TO_TRITON[t.dtype],
    dims: batch ? t.dims.slice(1) : t.dims,
  });
  const warm = config.warmup;
  const runtime = config.metadata?.runtime as { cudaGraphs?: boolean } | undefined;
  return {
    name: config.name,
    platform: backend.platform,
    backend: backend.triton.backend,
    version_policy: { latest: { num_versions: 1 } },
    max_batch_size: batch ? config.maxBatchSize : 0,
    input: config.inputs.map(tensor),
    output: config.outputs.map(tensor),
    ...(config.dynamicBatching
      ? {
          dynamic_batching: {
            preferred_batch_size: config.dynamicBatching.preferredBatchSizes ?? [],
            max_queue_delay_microseconds: config.dynamicBatching.maxQueueDelayMicroseconds,
            ...(config.scheduler
              ? {
                  default_queue_policy: {
                    max_queue_size: config.scheduler.maxQueueSize,
                    default_timeout_microseconds: (config.scheduler.queueTimeoutMs ?? 0) * 1000,
                  },
                }
              : {}),
          },
        }
      : {}),
    instance_group: [
      {
        name: config.name,
        kind: onGpu ? 'KIND_GPU' : 'KIND_CPU',
        count: config.instances,
        ...(onGpu ? { gpus: [gpu] } : {}),
      },
    ],
    default_model_filename: config.modelFile,
    ...(cudaGraphsDefault !== undefined
      ? { optimization: { cuda: { graphs: runtime?.cudaGraphs ?? cudaGraphsDefault } } }
      : cudaDevice
        ? { optimization: { cuda: { graphs: Boolean(config.cudaGraph) } } }
        : {}),
    ...(typeof warm === 'object' && warm.batchSizes
      ? {
          model_warmup: warm.batchSizes.map((b) => ({
            name: `batch_${b}`,
            batch_size: b,
            inputs: Object.fromEntries(
              config.inputs.map((i) => [
                i.name,
                {
                  data_type: DTYPE_TO_TRITON[i.dtype],
                  dims: (batch ? i.dims.slice(1) : i.dims).map((d, k) =>
                    d === -1 ? (config.profiles[0]?.[i.name]?.opt[batch ? k + 1 : k] ?? 1) : d,
                  ),
                  zero_data: true,
                },
              ]),
            ),
          })),
        }
      : {}),
  };
}

/** The entry's Triton configuration: as read (and completed) from config.pbtxt, or derived from config.json. */
export function tritonConfigOf(entry: RepositoryEntry): TritonModelConfig {
  return entry.triton ?? toTriton(entry.config, entry.device);
}

/** The entry's configuration as Triton's HTTP endpoint prints it. */
export function tritonConfigJsonOf(entry: RepositoryEntry): Record<string, unknown> {
  return tritonConfigJson(tritonConfigOf(entry));
}
