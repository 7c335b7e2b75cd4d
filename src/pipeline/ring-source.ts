import { invalidParameter } from '../errors.js';
import type { FrameRing, HeldFrame } from '../gpu/frame-ring.js';
import type { FacePipeline } from './face-pipeline.js';

export interface RingSourceOptions {
  /** CUDA stream the frame copies run on. */
  stream: bigint;
  /** Ring camera id -> pipeline camera (default: the same number). */
  cameraOf?: (cameraId: number) => number;
  /** Poll interval when the ring holds no newer frame, in ms (default 1). */
  pollMs?: number;
  signal?: AbortSignal;
}

export interface RingSourceStats {
  frames: number;
  /** Bytes copied from the GPU ring to the host (the CPU provider's price). */
  bytesToHost: number;
}

/**
 * The GPU frame ring (frames written by capture processes over CUDA IPC) as a pipeline source on the CPU provider:
 * the newest ready frame of each camera is copied to the host and pushed. Frames a camera wrote meanwhile are
 * skipped by the ring's newest-first acquire, as the pipeline's newest-frame-wins would drop them. Runs until the
 * signal aborts. (The all-GPU path, crops sampled straight from the slot, needs the CUDA provider with device
 * inputs: docs/face-pipeline.md.)
 */
export async function pumpRing(
  ring: FrameRing,
  pipeline: FacePipeline,
  options: RingSourceOptions,
): Promise<RingSourceStats> {
  if (typeof options?.stream !== 'bigint')
    throw invalidParameter('stream', 'a CUDA stream (BigInt)', options?.stream);
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
      if (held.format !== 'rgb' && held.format !== 'rgba') {
        ring.release(held);
        throw invalidParameter(`ring frame of camera ${c}`, 'rgb or rgba frames', held.format);
      }
      const data = new Uint8Array(held.bytes);
      await ring.readHost(held, data, options.stream);
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
    if (!got) await new Promise((r) => setTimeout(r, pollMs));
  }
  return stats;
}
