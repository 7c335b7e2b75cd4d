export {
  HttpClient,
  InProcessClient,
  fetchModelInputs,
  fetchModelMetadata,
  resolveShapes,
  syntheticInputs,
  type BenchClient,
  type HttpClientOptions,
  type InputSpec,
} from './client.js';
export {
  mergePoints,
  percentile,
  runConcurrency,
  runRate,
  sweep,
  type LoadOptions,
  type LoadPoint,
  type SweepOptions,
} from './runner.js';
export {
  openBenchSharedMemory,
  type BenchSharedMemory,
  type BenchSharedMemoryKind,
  type BenchSharedMemoryOptions,
} from './shared-memory-client.js';
export { GrpcClient, fetchModelInputsGrpc, grpcTarget, type GrpcClientOptions } from './grpc-client.js';
export { plotHtml, plotSvg, type Series } from './plot.js';
