// CUDA shared-memory regions read in place by a run on the same GPU (serve --device cuda): the registry hands out
// the region's device pointer for the caller's own regions only, holds the region while a run reads it, and closes
// an unregistered region only when the last run reading it settles. The opener is a stand-in (no GPU here): the
// registry's bookkeeping is what runs.
import { describe, expect, it } from 'vitest';
import { SharedMemoryRegistry, type CudaIpcMapping } from '../src/serve/shared-memory.js';

function registry(ptr: bigint | undefined) {
  const closed: string[] = [];
  let n = 0;
  const shm = new SharedMemoryRegistry(
    {
      open: (): CudaIpcMapping => {
        const id = `m${++n}`;
        return {
          ptr,
          read: (_o, length) => new Uint8Array(length),
          write: () => undefined,
          close: () => closed.push(id),
        };
      },
    },
    { kinds: ['cuda'] },
  );
  const register = (name: string, owner: string, deviceId = 0) =>
    shm.registerCuda(
      name,
      { raw_handle: { b64: Buffer.alloc(64, 1).toString('base64') }, device_id: deviceId, byte_size: 4096 },
      owner,
    );
  return { shm, closed, register };
}

describe('CUDA shared memory read in place', () => {
  it("gives the region's device address at the request's offset, on its own GPU and to its owner only", () => {
    const { shm, register } = registry(0x7000_0000n);
    register('frames', 'alice', 1);
    const ref = { region: 'frames', offset: 256, byteSize: 1024 };
    const view = shm.deviceView(ref, 'alice', 'cuda:1')!;
    expect(view.ptr).toBe(0x7000_0000n + 256n);
    expect(view.size).toBe(1024);
    view.release();
    expect(shm.deviceView(ref, 'alice', 'cuda:0')).toBeUndefined(); // another GPU: read through the host
    expect(shm.deviceView(ref, 'alice', 'cpu')).toBeUndefined();
    expect(() => shm.deviceView(ref, 'bob', 'cuda:1')).toThrow(
      /Unable to find shared memory region: "frames"/,
    );
    expect(() => shm.deviceView({ ...ref, offset: 4000 }, 'alice', 'cuda:1')).toThrow(
      /Offset 4000 \+ 1024 bytes exceeds the 4096 bytes/,
    );
  });

  it('an opener without a device pointer is read through the host', () => {
    const { shm, register } = registry(undefined);
    register('frames', '');
    expect(shm.deviceView({ region: 'frames', offset: 0, byteSize: 16 }, '', 'cuda:0')).toBeUndefined();
  });

  it('unregistering while runs read the region closes it when the last one settles, once', () => {
    const { shm, closed, register } = registry(0x1000n);
    register('frames', '');
    const ref = { region: 'frames', offset: 0, byteSize: 64 };
    const a = shm.deviceView(ref, '', 'cuda:0')!;
    const b = shm.deviceView(ref, '', 'cuda:0')!;
    shm.unregister('cuda', 'frames');
    expect(shm.cudaStatus()).toEqual([]); // gone for new requests at once
    expect(closed).toEqual([]);
    a.release();
    a.release(); // a second release of the same hold counts once
    expect(closed).toEqual([]);
    b.release();
    expect(closed).toEqual(['m1']);
    // The name is free again: a new region under it is another mapping, closed on its own.
    register('frames', '');
    shm.unregister('cuda', 'frames');
    expect(closed).toEqual(['m1', 'm2']);
  });
});
