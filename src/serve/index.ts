export { InferenceServer, serve, DEFAULT_BODY_LIMIT, type ServerOptions } from './server.js';
export { ModelManager, type IndexEntry, type ModelState, type ModelLoadOptions } from './model-manager.js';
export { ServerMetrics } from './metrics.js';
export { SharedMemoryRegistry, type CudaIpcOpen, type CudaIpcMapping } from './shared-memory.js';
export {
  parseInferRequest,
  encodeInferResponse,
  encodeInferRequest,
  parseInferResponse,
  statusOf,
  DATATYPE_TO_DTYPE,
  DTYPE_TO_DATATYPE,
  type InferRequest,
} from './protocol.js';
