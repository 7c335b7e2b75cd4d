import { YqpError } from '../errors.js';
import type { Backend, BackendAvailability } from './backend.js';
import { onnxruntimeBackend } from './onnxruntime.js';

export type BackendName = 'onnxruntime' | 'tensorrt';

/** The TensorRT backend loads lazily: it needs the native addon, which the onnxruntime path never does. */
export async function getBackend(name: BackendName): Promise<Backend> {
  if (name === 'onnxruntime') return onnxruntimeBackend;
  const { tensorrtBackend } = await import('./tensorrt.js');
  const availability = tensorrtBackend.availability();
  if (!availability.available)
    throw new YqpError(
      'E_BACKEND_UNAVAILABLE',
      `The tensorrt backend is unavailable: ${availability.reason}`,
      {
        argument: 'backend',
        expected: 'a machine with TensorRT and an NVIDIA driver',
        received: availability.reason,
        solutions: ['run `yqp-trt doctor` to see what is missing', 'use --backend onnxruntime'],
      },
    );
  return tensorrtBackend;
}

export async function backendAvailability(name: BackendName): Promise<BackendAvailability> {
  if (name === 'onnxruntime') return onnxruntimeBackend.availability();
  try {
    const { tensorrtBackend } = await import('./tensorrt.js');
    return tensorrtBackend.availability();
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}

/** auto: tensorrt where it is available, else the embedded onnxruntime backend. */
export async function resolveBackend(choice: 'auto' | BackendName): Promise<BackendName> {
  if (choice !== 'auto') return choice;
  return (await backendAvailability('tensorrt')).available ? 'tensorrt' : 'onnxruntime';
}
