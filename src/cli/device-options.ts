import type { Argv } from 'yargs';
import { parseDevice } from '../device.js';

export interface DeviceArgs {
  device?: string;
  'cuda-graph'?: boolean;
  'tensorrt-provider'?: boolean;
}

/** --device, --cuda-graph and --tensorrt-provider: where a command's models run (infer, serve, bench). */
export function withDeviceOptions<T>(y: Argv<T>): Argv<T & DeviceArgs> {
  return y
    .option('device', {
      type: 'string',
      describe:
        "where models run: 'cpu' (onnxruntime's CPU provider), 'cuda' or 'cuda:N' (its CUDA provider on GPU N); default: the entry's config.json device, else cpu",
    })
    .option('cuda-graph', {
      type: 'boolean',
      describe:
        'with --device cuda: replay each batch size as a CUDA graph (batches padded to the next graph size)',
    })
    .option('tensorrt-provider', {
      type: 'boolean',
      describe: "with --device cuda: onnxruntime's TensorRT provider first (needs libnvinfer 10)",
    }) as unknown as Argv<T & DeviceArgs>;
}

/** The loadModel options the flags ask for (validated: a bad --device is a usage error naming it). */
export function deviceLoadOptions(argv: DeviceArgs): {
  device?: string;
  cudaGraph?: boolean;
  tensorrtProvider?: boolean;
} {
  const out: { device?: string; cudaGraph?: boolean; tensorrtProvider?: boolean } = {};
  if (argv.device !== undefined) {
    parseDevice(argv.device, '--device');
    out.device = argv.device;
  }
  if (argv['cuda-graph'] !== undefined) out.cudaGraph = argv['cuda-graph'];
  if (argv['tensorrt-provider'] !== undefined) out.tensorrtProvider = argv['tensorrt-provider'];
  return out;
}
