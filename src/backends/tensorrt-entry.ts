import type { BackendEntry } from './registry.js';

/**
 * The TensorRT backend's entry. Its modules load on first use: they need the native addon built with TensorRT,
 * which the onnxruntime path never does.
 */
export const tensorrtEntry: BackendEntry = {
  name: 'tensorrt',
  displayName: 'TensorRT',
  modelFile: 'model.plan',
  platform: 'tensorrt_plan',
  // Engines run on a GPU only; their runs are captured as CUDA graphs unless the entry says not to (tensorrt.ts).
  triton: {
    backend: 'tensorrt',
    instanceKind: 'gpu',
    cudaGraphsDefault: true,
    replacesAccelerators: ['tensorrt'],
  },
  builtModel: 'a TensorRT engine',
  autoPriority: 10,
  requires: 'a machine with TensorRT and an NVIDIA driver',
  perProcessNote: 'holds its own engine and CUDA context (GPU serving wants --http-workers 1, or MPS)',
  async load() {
    return (await import('./tensorrt.js')).tensorrtBackend;
  },
  async availability() {
    try {
      const { tensorrtBackend } = await import('./tensorrt.js');
      return tensorrtBackend.availability();
    } catch (e) {
      return { available: false, reason: (e as Error).message };
    }
  },
  async build({ onnxPath, config, options, progress }) {
    progress('building the TensorRT engine');
    const { buildEngine } = await import('../tensorrt/index.js');
    const engine = await buildEngine(onnxPath, config, { precision: config.precision, ...options }, progress);
    return { model: engine.plan, metadata: { tensorrt: engine.metadata }, notes: engine.notes ?? [] };
  },
  async doctor() {
    const trt = await this.availability();
    return {
      checks: [
        {
          name: 'tensorrt backend',
          ok: trt.available,
          detail: trt.available ? `available (TensorRT ${trt.version})` : `unavailable: ${trt.reason}`,
          solutions: trt.available
            ? undefined
            : ['builds and serving use the onnxruntime backend meanwhile (--backend onnxruntime)'],
        },
      ],
      report: { tensorrtAvailable: trt.available },
      summary: `tensorrt backend: ${trt.available ? 'available' : 'unavailable'}`,
    };
  },
};
