import { loadBinding } from '../native/binding.js';
import type { NativeTensorRT } from '../native/tensorrt.js';

export type {
  NativeTensorRT,
  NativeShapeRange,
  NativeBuildOptions,
  NativeProgressEvent,
  NativeBuildCallbacks,
  NativeTensorInfo,
  NativeBuildResult,
  NativeEngineOptions,
  NativeEngine,
} from '../native/tensorrt.js';

export interface LoadedAddon {
  /** The addon's exports, when it loaded. */
  addon?: { tensorrt?: NativeTensorRT } & Record<string, unknown>;
  path?: string;
  /** Why the addon did not load. */
  error?: string;
}

/** The addon through the package's one loader (src/binding.ts). Never throws. */
export function loadAddon(): LoadedAddon {
  const loaded = loadBinding();
  if (loaded.binding) return { addon: loaded.binding as unknown as LoadedAddon['addon'], path: loaded.path };
  return {
    error: `the native addon is not available (${loaded.errors.join('; ') || 'no candidate'}); ${loaded.solutions[0] ?? ''}`,
  };
}
