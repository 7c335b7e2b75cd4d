/**
 * Triton's model configuration: the message definitions (schemas/triton/*.proto, written from Triton's documented
 * format), config.pbtxt read into a plain object, and that object printed as Triton prints it (JSON with every
 * scalar, list and map present, 64-bit integers as numbers).
 */
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { parseTextProto, type TextObject } from './pbtxt.js';

export const TRITON_PROTO_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'schemas',
  'triton',
);

let root: protobuf.Root | undefined;

/** The inference package (model_config.proto and grpc_service.proto), field names as written (snake_case). */
export function tritonProtos(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => join(TRITON_PROTO_DIR, basename(target));
  r.loadSync('grpc_service.proto', { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}

export const modelConfigType = (): protobuf.Type => tritonProtos().lookupType('inference.ModelConfig');

/** The parts of Triton's ModelConfig yqp-trt reads (the rest is still there, as parsed, for the warnings). */
export interface TritonTensor {
  name?: string;
  data_type?: string;
  format?: string;
  dims?: number[];
  reshape?: { shape?: number[] };
  is_shape_tensor?: boolean;
  allow_ragged_batch?: boolean;
  optional?: boolean;
  label_filename?: string;
  [field: string]: unknown;
}

export interface TritonQueuePolicy {
  timeout_action?: string;
  default_timeout_microseconds?: number;
  allow_timeout_override?: boolean;
  max_queue_size?: number;
}

export interface TritonInstanceGroup {
  name?: string;
  kind?: string;
  count?: number;
  gpus?: number[];
  [field: string]: unknown;
}

export interface TritonWarmup {
  name?: string;
  batch_size?: number;
  inputs?: Record<
    string,
    {
      data_type?: string;
      dims?: number[];
      zero_data?: boolean;
      random_data?: boolean;
      input_data_file?: string;
    }
  >;
  count?: number;
}

export interface TritonModelConfig {
  name?: string;
  platform?: string;
  backend?: string;
  runtime?: string;
  version_policy?: { latest?: { num_versions?: number }; all?: object; specific?: { versions?: number[] } };
  max_batch_size?: number;
  input?: TritonTensor[];
  output?: TritonTensor[];
  dynamic_batching?: {
    preferred_batch_size?: number[];
    max_queue_delay_microseconds?: number;
    preserve_ordering?: boolean;
    priority_levels?: number;
    default_priority_level?: number;
    default_queue_policy?: TritonQueuePolicy;
    priority_queue_policy?: Record<string, TritonQueuePolicy>;
  };
  instance_group?: TritonInstanceGroup[];
  default_model_filename?: string;
  optimization?: {
    cuda?: {
      graphs?: boolean;
      busy_wait_events?: boolean;
      graph_spec?: unknown[];
      output_copy_stream?: boolean;
    };
    execution_accelerators?: {
      gpu_execution_accelerator?: { name?: string; parameters?: Record<string, string> }[];
      cpu_execution_accelerator?: { name?: string; parameters?: Record<string, string> }[];
    };
    input_pinned_memory?: { enable?: boolean };
    output_pinned_memory?: { enable?: boolean };
    [field: string]: unknown;
  };
  parameters?: Record<string, { string_value?: string }>;
  model_warmup?: TritonWarmup[];
  [field: string]: unknown;
}

/** Reads config.pbtxt text; syntax errors and unknown fields are E_CONFIG naming the line and column. */
export function parseTritonConfig(text: string, where: string): TritonModelConfig {
  return parseTextProto(text, modelConfigType(), where) as TritonModelConfig;
}

/**
 * Triton's JSON of a model configuration (what its HTTP config endpoint answers): every scalar, list and map
 * printed with its default, sub-messages only where set, enums by name, 64-bit integers as numbers.
 */
export function tritonConfigJson(config: TritonModelConfig): Record<string, unknown> {
  const type = modelConfigType();
  const message = type.fromObject(config as TextObject);
  const json = type.toObject(message, {
    enums: String,
    longs: Number,
    defaults: true,
    arrays: true,
    objects: true,
  }) as Record<string, unknown>;
  return dropUnset(json, config as Record<string, unknown>) as Record<string, unknown>;
}

/** protobufjs prints unset sub-messages as null and oneof members as defaults; Triton leaves both out. */
function dropUnset(json: unknown, given: unknown): unknown {
  if (Array.isArray(json))
    return json.map((v, i) => dropUnset(v, Array.isArray(given) ? given[i] : undefined));
  if (typeof json !== 'object' || json === null) return json;
  const out: Record<string, unknown> = {};
  const g = (typeof given === 'object' && given !== null ? given : {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(json)) {
    if (v === null || v === undefined) continue;
    out[k] = dropUnset(v, g[k]);
  }
  return out;
}
