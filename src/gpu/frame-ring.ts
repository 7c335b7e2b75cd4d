import { invalidParameter, expectPositiveInteger } from '../errors.js';
import {
  type FrameMeta,
  type FrameSlot,
  type NativeFrameRing,
  type NativePinnedBuffer,
  nativeError,
  requireRuntime,
} from './runtime.js';

/** Pixel formats a slot's metadata may name (the numbers are what the shared memory holds). */
export const FRAME_FORMATS = { rgb: 0, bgr: 1, rgba: 2, bgra: 3, nv12: 4, gray: 5 } as const;
export type FrameFormat = keyof typeof FRAME_FORMATS;

export interface FrameInfo {
  cameraId: number;
  format: FrameFormat;
  width: number;
  height: number;
  frameIndex: number;
  timestampUs: number;
  bytes: number;
}

export interface HeldFrame extends FrameInfo {
  slot: number;
  seq: number;
  /** Device pointer of the frame in this process (IPC-mapped in a reader). */
  ptr: bigint;
  /**
   * The ring that holds the frame (not enumerable). A held frame keeps its ring alive: without it, a ring no longer
   * referenced could be collected, and its slots freed, while kernels still read `ptr`.
   */
  readonly ring: FrameRing;
}

const formatName = (n: number): FrameFormat =>
  (Object.entries(FRAME_FORMATS).find(([, v]) => v === n)?.[0] as FrameFormat | undefined) ?? 'rgb';

function toHeld(s: FrameSlot, ring: FrameRing): HeldFrame {
  const held = { ...s, format: formatName(s.format) };
  return Object.defineProperty(held, 'ring', { value: ring, enumerable: false }) as HeldFrame;
}

/**
 * GPU frame ring shared between processes (trt/core/frame_ring.cc). The creating process owns the slots (one
 * cudaMalloc each, exported as CUDA IPC handles in `descriptor`); other processes attach with FrameRing.open.
 * A writer acquires a slot, writes it on its stream and commits (an interprocess event orders the reader's stream
 * after the writer's writes); a reader holds a slot until it releases it, and a held slot is never rewritten.
 */
export class FrameRing {
  private constructor(readonly native: NativeFrameRing) {}

  static create(options: { slots: number; slotBytes: number; device?: number }): FrameRing {
    expectPositiveInteger('slots', options?.slots);
    expectPositiveInteger('slotBytes', options?.slotBytes);
    try {
      return new FrameRing(new (requireRuntime().FrameRing)(options));
    } catch (e) {
      throw nativeError(e);
    }
  }

  /** Attaches to a ring another process created, from its `descriptor`. */
  static open(descriptor: string): FrameRing {
    if (typeof descriptor !== 'string' || !descriptor.startsWith('{'))
      throw invalidParameter('descriptor', 'the descriptor string of a FrameRing', descriptor);
    try {
      return new FrameRing(requireRuntime().FrameRing.open(descriptor));
    } catch (e) {
      throw nativeError(e);
    }
  }

  /** JSON with the shared-memory name and the hex IPC handles of every slot's memory and event. */
  get descriptor(): string {
    return this.native.descriptor;
  }
  get slotCount(): number {
    return this.native.slotCount;
  }
  get slotBytes(): number {
    return this.native.slotBytes;
  }

  /**
   * Writes a host frame into a slot on `stream` and publishes it; resolves with its sequence number once the
   * copy is done, or null when every slot is held (the frame is dropped).
   */
  async writeHost(
    data: Uint8Array | NativePinnedBuffer,
    info: Partial<FrameInfo>,
    stream: bigint,
  ): Promise<number | null> {
    const bytes = data instanceof Uint8Array ? data.byteLength : data.size;
    if (bytes > this.slotBytes) throw invalidParameter('data', `at most ${this.slotBytes} bytes`, data);
    const slot = this.native.acquireWrite();
    if (slot < 0) return null;
    try {
      const rt = requireRuntime();
      const done = rt.copy({ ptr: this.native.slotPtr(slot), size: this.slotBytes } as never, data, stream, {
        bytes,
      });
      const seq = this.native.commit(slot, toMeta({ ...info, bytes }), stream);
      await done;
      return seq;
    } catch (e) {
      this.native.abort(slot);
      throw nativeError(e);
    }
  }

  /** Holds the newest ready frame newer than afterSeq (of cameraId), or null. Release it with release(). */
  acquire(options: { afterSeq?: number; cameraId?: number; oldest?: boolean } = {}): HeldFrame | null {
    const s = this.native.acquireRead(options);
    return s ? toHeld(s, this) : null;
  }

  /** Makes `stream` wait for the writer's writes of the held frame (before any kernel reads it). */
  waitReady(frame: HeldFrame, stream: bigint): void {
    this.native.waitReady(frame.slot, stream);
  }

  /** Copies a held frame to host memory on `stream` (after waitReady) and releases it once copied. */
  async readHost(frame: HeldFrame, dst: Uint8Array | NativePinnedBuffer, stream: bigint): Promise<void> {
    try {
      this.native.waitReady(frame.slot, stream);
      await requireRuntime().copy(dst, { ptr: frame.ptr, size: frame.bytes } as never, stream, {
        bytes: frame.bytes,
      });
    } catch (e) {
      throw nativeError(e);
    } finally {
      this.native.release(frame.slot);
    }
  }

  release(frame: HeldFrame): void {
    this.native.release(frame.slot);
  }

  /** Ends the hold when `stream` gets past the work queued so far (no JS round trip). */
  releaseAfter(frame: HeldFrame, stream: bigint): void {
    this.native.releaseAfter(frame.slot, stream);
  }

  dispose(): void {
    this.native.dispose();
  }
}

function toMeta(info: Partial<FrameInfo>): FrameMeta {
  const format = info.format ?? 'rgb';
  if (!(format in FRAME_FORMATS))
    throw invalidParameter('format', Object.keys(FRAME_FORMATS).join(', '), format);
  return {
    cameraId: info.cameraId ?? 0,
    format: FRAME_FORMATS[format],
    width: info.width ?? 0,
    height: info.height ?? 0,
    frameIndex: info.frameIndex ?? 0,
    timestampUs: info.timestampUs ?? Date.now() * 1000,
    bytes: info.bytes,
  };
}
