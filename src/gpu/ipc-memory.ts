import { YqpError } from '../errors.js';
import { nativeError, requireRuntime } from './runtime.js';

import type {
  NativeExportedIpcRegion,
  NativeIpcRegion,
  NativeIpcRuntime as IpcRuntime,
} from '../native/runtime.js';

/** A raw CUDA IPC region (Triton's CUDA shared-memory extension): synchronous request-sized copies in and out. */
export type IpcRegion = NativeIpcRegion;

/** A region this process allocates (one whole cudaMalloc) and exports; `handle` is the cudaIpcMemHandle_t. */
export type ExportedIpcRegion = NativeExportedIpcRegion;

function ipcRuntime(): Required<IpcRuntime> {
  const rt: IpcRuntime = requireRuntime();
  if (typeof rt.exportIpcMemory !== 'function' || typeof rt.openIpcMemHandle !== 'function')
    throw new YqpError('E_BACKEND_UNAVAILABLE', 'this build of the native addon has no CUDA IPC regions', {
      solutions: ['rebuild it: `npm run build:native`'],
    });
  return rt as Required<IpcRuntime>;
}

/** A plain object over the native region whose calls turn native errors into YqpErrors. */
function guarded<T extends IpcRegion>(region: T): T {
  const wrap =
    <A extends unknown[], R>(f: (...a: A) => R) =>
    (...a: A): R => {
      try {
        return f.apply(region, a);
      } catch (e) {
        throw nativeError(e);
      }
    };
  const out: IpcRegion & { handle?: Uint8Array } = {
    get byteSize() {
      return region.byteSize;
    },
    get ptr() {
      return region.ptr;
    },
    read: wrap(region.read),
    write: wrap(region.write),
    close: wrap(region.close),
  };
  if ('handle' in region) out.handle = (region as unknown as ExportedIpcRegion).handle;
  return out as T;
}

export function exportIpcMemory(byteSize: number, device = 0): ExportedIpcRegion {
  try {
    return guarded(ipcRuntime().exportIpcMemory(byteSize, device));
  } catch (e) {
    throw nativeError(e);
  }
}

/** Opens another process's region; a handle CUDA refuses is the caller's error (E_ARGUMENT), with CUDA's reason. */
export function openIpcMemHandle(handle: Uint8Array, device: number, byteSize: number): IpcRegion {
  const rt = ipcRuntime();
  try {
    return guarded(rt.openIpcMemHandle(handle, device, byteSize));
  } catch (e) {
    const err = nativeError(e);
    throw new YqpError('E_ARGUMENT', `Cannot open the CUDA IPC handle: ${err.message}`, {
      argument: 'raw_handle',
      cause: e,
    });
  }
}
