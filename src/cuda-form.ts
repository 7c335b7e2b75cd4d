import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { embeddedBackend } from './backends/index.js';
import { fuseConvAddRelu } from './onnx/conv-add-relu.js';
import { encodeOnnx, onnx, type OnnxModel } from './onnx/model.js';
import type { ModelConfig } from './repository/config.js';
import type { TensorMap } from './tensor.js';

/** Largest difference to the model as given, relative to its largest output value (at least 1). */
export const CUDA_FORM_TOLERANCE = 1e-4;

export interface CudaForm {
  bytes: Uint8Array;
  /** Conv -> Add -> Relu chains fused (0: the model as given). */
  fused: number;
  /** Largest output difference to the model as given on the CPU provider (synthetic inputs). */
  maxAbsDiff?: number;
  /** Why the model as given is written instead of the fused one. */
  skipped?: string;
}

/**
 * The FP32 form of a model (`model`, written at `givenPath`) for onnxruntime's CUDA provider (`build --device
 * cuda`): residual Conv -> Add -> Relu chains as FusedConv (onnx/conv-add-relu.ts), one cuDNN operation instead of
 * three launches. Measured on the H200 (BENCHMARKS.md, twelfth session): BlazeFace's GPU time 0.357 -> 0.323 ms at
 * batch 1, 0.998 -> 0.885 ms at batch 64. The rewrite is checked here on the CPU provider, which has FusedConv
 * too, against the model as given; where the fused model does not run or differs, the model as given is written
 * and the build note says why.
 */
export async function cudaFp32Form(
  model: OnnxModel,
  givenPath: string,
  config: ModelConfig,
  feeds: TensorMap,
): Promise<CudaForm> {
  const proto = onnx.ModelProto.decode(model.bytes); // a copy: the FP32 proto stays as it was
  const { fused } = fuseConvAddRelu(proto);
  if (fused === 0) return { bytes: model.bytes, fused };
  const bytes = encodeOnnx(proto);
  const path = join(dirname(givenPath), 'model-cuda.onnx');
  await writeFile(path, bytes);
  const backend = await embeddedBackend().load();
  const given = await backend.open(givenPath, config, { contexts: 1 });
  try {
    const a = await given.run(0, feeds);
    let b: TensorMap;
    try {
      const rewritten = await backend.open(path, config, { contexts: 1 });
      try {
        b = await rewritten.run(0, feeds);
      } finally {
        await rewritten.close();
      }
    } catch (e) {
      // A sum that only broadcasts to the Conv's output (not its shape) fails here: the model as given is written.
      return {
        bytes: model.bytes,
        fused: 0,
        skipped: `the fused model does not run: ${(e as Error).message.split('\n')[0]}`,
      };
    }
    let maxAbsDiff = 0;
    let scale = 1;
    for (const [name, t] of Object.entries(a)) {
      const x = t.data as Float32Array;
      const y = b[name].data as Float32Array;
      for (let i = 0; i < x.length; i++) {
        scale = Math.max(scale, Math.abs(x[i]));
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(x[i] - y[i]));
      }
    }
    if (!(maxAbsDiff <= CUDA_FORM_TOLERANCE * scale))
      return {
        bytes: model.bytes,
        fused: 0,
        skipped: `the fused model differs by ${maxAbsDiff} (largest output ${scale}; at most ${CUDA_FORM_TOLERANCE * scale} allowed)`,
      };
    return { bytes, fused, maxAbsDiff };
  } finally {
    await given.close();
  }
}

/** One line for the build's notes. */
export function describeCudaForm(form: CudaForm): string {
  if (form.skipped) return `CUDA form: left out, ${form.skipped}; the model as given`;
  return form.fused === 0
    ? 'CUDA form: no residual Conv -> Add -> Relu chain to fuse; the model as given'
    : `CUDA form: ${form.fused} residual Conv -> Add -> Relu chains as FusedConv (checked on the CPU provider: max abs diff ${form.maxAbsDiff})`;
}
