import { invalidParameter } from '../errors.js';
import type { FrameRing, HeldFrame, FrameFormat as RingFormat } from '../gpu/frame-ring.js';
import type { FrameFormat } from '../gpu/frames.js';
import type { FacePipeline } from './face-pipeline.js';

export interface RingSourceOptions {
  /** CUDA stream the frame copies to the host run on (CPU-provider pipelines; a cuda pipeline reads in place). */
  stream?: bigint;
  /** Ring camera id -> pipeline camera (default: the same number). */
  cameraOf?: (cameraId: number) => number;
  /** Poll interval when the ring holds no newer frame, in ms (default 1). */
  pollMs?: number;
  signal?: AbortSignal;
}

export interface RingSourceStats {
  frames: number;
  /** Bytes copied from the GPU ring to the host (the CPU provider's price; 0 on device cuda). */
  bytesToHost: number;
}

/** The ring's pixel formats as the GPU kernels name them (gray has no kernel format). */
const KERNEL_FORMAT: Partial<Record<RingFormat, FrameFormat>> = {
  rgb: 'RGB',
  bgr: 'BGR',
  rgba: 'RGBA',
  bgra: 'BGRA',
  nv12: 'NV12',
};

/**
 * The GPU frame ring (frames written by capture processes over CUDA IPC) as a pipeline source. The newest ready
 * frame of each camera is taken; frames a camera wrote meanwhile are skipped by the ring's newest-first acquire, as
 * the pipeline's newest-frame-wins would drop them. On device cuda the held slot itself is pushed: the kernels read
 * it in place after waiting on the writer's event, and the slot is released once the pipeline is done with it (or
 * a newer frame replaced it). On the CPU provider the frame is copied to the host first. Runs until the signal
 * aborts.
 */
export async function pumpRing(
  ring: FrameRing,
  pipeline: FacePipeline,
  options: RingSourceOptions = {},
): Promise<RingSourceStats> {
  const onGpu = pipeline.device !== 'cpu';
  if (!onGpu && typeof options?.stream !== 'bigint')
    throw invalidParameter('stream', 'a CUDA stream (BigInt) for the copies to the host', options?.stream);
  const cameraOf = options.cameraOf ?? ((id: number) => id);
  const pollMs = options.pollMs ?? 1;
  const lastSeq = new Map<number, number>();
  const stats: RingSourceStats = { frames: 0, bytesToHost: 0 };
  while (!options.signal?.aborted) {
    let got = false;
    for (let c = 0; c < pipeline.cameras; c++) {
      const held: HeldFrame | null = ring.acquire({ afterSeq: lastSeq.get(c) ?? 0, cameraId: c });
      if (!held) continue;
      got = true;
      lastSeq.set(c, held.seq);
      const format = KERNEL_FORMAT[held.format];
      if (onGpu && format) {
        let released = false;
        const release = () => {
          if (released) return;
          released = true;
          ring.release(held);
        };
        try {
          pipeline.push(
            cameraOf(held.cameraId),
            {
              ptr: held.ptr,
              width: held.width,
              height: held.height,
              format,
              waitReady: (stream) => ring.waitReady(held, stream),
              release,
            },
            held.timestampUs,
          );
        } catch (e) {
          release();
          throw e;
        }
        stats.frames++;
        continue;
      }
      if (held.format !== 'rgb' && held.format !== 'rgba') {
        ring.release(held);
        throw invalidParameter(
          `ring frame of camera ${c}`,
          onGpu ? 'rgb, bgr, rgba, bgra or nv12 frames' : 'rgb or rgba frames',
          held.format,
        );
      }
      const data = new Uint8Array(held.bytes);
      await ring.readHost(held, data, options.stream!);
      stats.frames++;
      stats.bytesToHost += held.bytes;
      pipeline.push(
        cameraOf(held.cameraId),
        {
          data,
          width: held.width,
          height: held.height,
          channels: held.format === 'rgb' ? 3 : 4,
        },
        held.timestampUs,
      );
    }
    // Yield either way: the pipeline's ticks run on this event loop too.
    await new Promise((r) => (got ? setImmediate(r) : setTimeout(r, pollMs)));
  }
  return stats;
}
