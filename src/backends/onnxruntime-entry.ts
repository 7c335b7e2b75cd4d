import type { BackendEntry } from './registry.js';

/**
 * The embedded backend's entry. Execution providers (CPU today; CUDA and TensorRT next) are options of this one
 * backend with a `device`, not backends of their own: they run the same model.onnx through the same session and
 * runner, and differ only in session options (docs/architecture.md, "Backends and execution providers").
 */
export const onnxruntimeEntry: BackendEntry = {
  name: 'onnxruntime',
  displayName: 'onnxruntime',
  modelFile: 'model.onnx',
  platform: 'onnxruntime_onnx',
  // A Triton folder names no device: it runs on the CPU provider here (config.json's device picks CUDA).
  // KIND_GPU: onnxruntime's CUDA provider (device cuda), as Triton's onnxruntime backend runs it.
  triton: { backend: 'onnxruntime', instanceKind: 'any' },
  embedded: true,
  autoPriority: 0,
  async load() {
    return (await import('./onnxruntime.js')).onnxruntimeBackend;
  },
  async availability() {
    return (await import('./onnxruntime.js')).onnxruntimeBackend.availability();
  },
  async modelIo(modelPath) {
    const { inputs, outputs } = await (await import('../onnx/model.js')).loadOnnx(modelPath);
    return { inputs, outputs };
  },
  async doctor() {
    return (await import('./onnxruntime-doctor.js')).onnxruntimeDoctor();
  },
};
