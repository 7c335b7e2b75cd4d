import { loadRuntime } from '../../src/gpu/runtime.js';

/** Why the GPU tests of the runtime core cannot run here (empty when they can). */
export const runtimeState = loadRuntime();
export const NO_GPU = runtimeState.runtime === undefined;
export const skipNote = NO_GPU ? ` (skipped: ${runtimeState.reason})` : '';
