import { onnxruntimeEntry } from './onnxruntime-entry.js';
import { registerBackend } from './registry.js';
import { tensorrtEntry } from './tensorrt-entry.js';

// The built-in backends, the embedded one first (the order `backendNames()` and error messages list them in).
registerBackend(onnxruntimeEntry);
registerBackend(tensorrtEntry);

export {
  backendAvailability,
  backendEntries,
  backendEntry,
  backendForModelFile,
  backendForTritonBackend,
  backendForTritonPlatform,
  backendNames,
  embeddedBackend,
  getBackend,
  registerBackend,
  resolveBackend,
  type BackendBuildContext,
  type BackendBuildResult,
  type BackendDoctor,
  type BackendEntry,
  type BackendName,
  type BackendTriton,
} from './registry.js';
