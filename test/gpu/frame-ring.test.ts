import { spawnSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build.js';
import { FrameRing } from '../../src/gpu/frame-ring.js';
import { allocPinned, createStreamPool, type NativeStreamPool } from '../../src/gpu/runtime.js';
import { loadModel, type Model } from '../../src/model.js';
import type { Face } from '../../src/postprocess/blazeface.js';
import { BLAZEFACE_ONNX, MEDIA_DIR } from '../helpers/data.js';
import { NO_GPU, skipNote } from './gpu-env.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const work = mkdtempSync(join(tmpdir(), 'yqp-ring-'));

interface Decoded {
  file: string;
  data: Uint8Array;
  width: number;
  height: number;
}

/** Four frames of the franck video, decoded to RGB by sharp (the CPU path's decoder). */
async function franckFrames(): Promise<Decoded[]> {
  const files = readdirSync(MEDIA_DIR)
    .filter((f) => /^franck_0\d+\.jpg$/.test(f))
    .sort()
    .slice(0, 4);
  return Promise.all(
    files.map(async (f) => {
      const { data, info } = await sharp(join(MEDIA_DIR, f))
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      return { file: join(MEDIA_DIR, f), data: new Uint8Array(data), width: info.width, height: info.height };
    }),
  );
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const cupy = NO_GPU
  ? { status: 1, stderr: 'not tried without an NVIDIA driver' }
  : spawnSync('python3', ['-c', 'import cupy; cupy.cuda.runtime.getDeviceCount()']);
const NO_CUPY = cupy.status !== 0;

describe.skipIf(NO_GPU)(`GPU frame ring${skipNote}`, () => {
  let pool: NativeStreamPool;
  let frames: Decoded[];
  let model: Model;
  let cpuFaces: Face[][];
  let rawFaces: Face[][];

  beforeAll(async () => {
    // Only the BlazeFace model and the franck frames are needed here (not all of requireData's files).
    for (const f of [BLAZEFACE_ONNX, MEDIA_DIR])
      if (!existsSync(f)) throw new Error(`test data missing: ${f}; run \`npm run data\``);
    pool = createStreamPool(2);
    frames = await franckFrames();
    const repo = join(work, 'repo');
    await build(BLAZEFACE_ONNX, { name: 'face', repo, backend: 'onnxruntime' });
    model = await loadModel(join(repo, 'face'), { contexts: 1 });
    // The CPU path: detections from the JPEG files themselves.
    cpuFaces = [];
    rawFaces = [];
    for (const f of frames) {
      cpuFaces.push((await model.inferImages([f.file])).faces![0]);
      rawFaces.push(
        (await model.inferImages([{ data: f.data, width: f.width, height: f.height, channels: 3 }]))
          .faces![0],
      );
    }
    expect(cpuFaces.every((l) => l.length === 1)).toBe(true);
  });
  afterAll(async () => {
    await model?.close();
    pool?.dispose();
  });

  /** Detections of frames that came through the ring equal those of the JPEG decode on the CPU path. */
  async function expectSameFaces(received: Uint8Array[]): Promise<void> {
    for (const [i, data] of received.entries()) {
      const { width, height } = frames[i];
      const faces = (await model.inferImages([{ data, width, height, channels: 3 }])).faces![0];
      // Exactly the detections of the same pixels decoded in this process. The JPEG-file path decodes with
      // libjpeg's shrink-on-load, so its pixels (and scores) differ slightly: same faces, close boxes.
      expect(faces).toEqual(rawFaces[i]);
      expect(faces).toHaveLength(cpuFaces[i].length);
      for (const [j, face] of faces.entries()) {
        expect(Math.abs(face.score - cpuFaces[i][j].score)).toBeLessThan(0.01);
        for (const [k, v] of face.box.entries()) expect(Math.abs(v - cpuFaces[i][j].box[k])).toBeLessThan(3);
      }
    }
  }

  it('publishes metadata, holds read slots and never rewrites a held slot', async () => {
    const s = pool.handle(0);
    const ring = FrameRing.create({ slots: 3, slotBytes: 1 << 20 });
    try {
      const seqs: number[] = [];
      for (let i = 0; i < 3; i++)
        seqs.push(
          (await ring.writeHost(
            new Uint8Array(1000).fill(i + 1),
            { cameraId: 5, frameIndex: i, width: 10, height: 10 },
            s,
          ))!,
        );
      expect(seqs).toEqual([1, 2, 3]);
      const newest = ring.acquire()!;
      expect(newest).toMatchObject({
        seq: 3,
        cameraId: 5,
        frameIndex: 2,
        width: 10,
        height: 10,
        bytes: 1000,
        format: 'rgb',
      });
      const oldest = ring.acquire({ oldest: true })!;
      expect(oldest.seq).toBe(1);
      expect(ring.acquire({ cameraId: 6 })).toBeNull();
      expect(ring.acquire({ afterSeq: 3 })).toBeNull();
      // Two slots held: writing three more frames can only cycle through the one free slot.
      for (let i = 3; i < 6; i++)
        await ring.writeHost(new Uint8Array(1000).fill(i + 1), { frameIndex: i }, s);
      expect(ring.native.slot(newest.slot)).toMatchObject({ seq: 3, readers: 1, state: 'ready' });
      expect(ring.native.slot(oldest.slot)).toMatchObject({ seq: 1, readers: 1, state: 'ready' });
      const host = new Uint8Array(1000);
      await ring.readHost(oldest, host, s);
      expect(host.every((v) => v === 1)).toBe(true);
      expect(ring.native.slot(oldest.slot).readers).toBe(0);
      // Every slot held or being written: the writer gets no slot instead of overwriting a held one.
      const w = ring.native.acquireWrite();
      expect(w).toBe(oldest.slot);
      const third = ring.acquire()!;
      expect(third.seq).toBe(6);
      expect(ring.native.acquireWrite()).toBe(-1);
      ring.native.abort(w);
      ring.release(third);
      ring.releaseAfter(newest, s);
      await pool.synchronize(0);
      expect(ring.native.slot(newest.slot).readers).toBe(0);
      expect(() => ring.native.release(newest.slot)).toThrow(/not held/);
      expect(() => ring.native.slotPtr(3)).toThrow(/slot: expected 0\.\.2, got 3/);
      await expect(ring.writeHost(new Uint8Array((1 << 20) + 1), {}, s)).rejects.toThrow(
        /at most 1048576 bytes for data/,
      );
    } finally {
      ring.dispose();
    }
  });

  it('a held frame keeps its ring alive after the ring itself is no longer referenced', async () => {
    // Found on the H200: a benchmark kept only the held frame; once the ring was collected its slots were freed
    // and the preprocessing kernel read freed memory (cudaErrorIllegalAddress a few hundred runs later).
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const s = pool.handle(0);
    const data = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
    const held = await (async () => {
      const ring = FrameRing.create({ slots: 2, slotBytes: data.length });
      await ring.writeHost(data, { width: 1024, height: 1024 }, s);
      return ring.acquire()!;
    })();
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(held.ring).toBeInstanceOf(FrameRing);
    expect(Object.keys(held)).not.toContain('ring');
    const host = new Uint8Array(data.length);
    await held.ring.readHost(held, host, s);
    expect(sha(host)).toBe(sha(data));
    held.ring.dispose();
  });

  it('Node -> Node across processes: frames arrive bit-identical and give the same faces', async () => {
    const s = pool.handle(0);
    const ring = FrameRing.create({
      slots: frames.length,
      slotBytes: Math.max(...frames.map((f) => f.data.length)),
    });
    try {
      const sent: string[] = [];
      for (const [i, f] of frames.entries()) {
        const pinned = allocPinned(f.data.length);
        pinned.array.set(f.data);
        await ring.writeHost(pinned, { cameraId: 1, frameIndex: i, width: f.width, height: f.height }, s);
        pinned.dispose();
        sent.push(sha(f.data));
      }
      const out = join(work, 'node-reader.bin');
      const r = await run(process.execPath, [
        join(import.meta.dirname, 'ring-reader.mjs'),
        ring.descriptor,
        String(frames.length),
        out,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const got = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(got.map((g) => g.sha256)).toEqual(sent);
      expect(got.map((g) => [g.frameIndex, g.width, g.height, g.cameraId])).toEqual(
        frames.map((f, i) => [i, f.width, f.height, 1]),
      );
      const bytes = readFileSync(out);
      let at = 0;
      const received = frames.map((f) => new Uint8Array(bytes.subarray(at, (at += f.data.length))));
      await expectSameFaces(received);
    } finally {
      ring.dispose();
    }
  });

  it.skipIf(NO_CUPY)(
    `Python (CuPy) -> Node across processes: frames arrive bit-identical and give the same faces${NO_CUPY ? ` (skipped: python3 cannot use CuPy: ${String(cupy.stderr).trim().split('\n').pop()})` : ''}`,
    async () => {
      const s = pool.handle(1);
      const { width, height } = frames[0];
      expect(frames.every((f) => f.width === width && f.height === height)).toBe(true);
      const ring = FrameRing.create({ slots: frames.length, slotBytes: width * height * 3 });
      try {
        const raw = join(work, 'frames.raw');
        writeFileSync(raw, Buffer.concat(frames.map((f) => f.data)));
        const r = await run('python3', [
          join(import.meta.dirname, 'ring_writer.py'),
          ring.descriptor,
          raw,
          String(width),
          String(height),
          String(frames.length),
          '9',
        ]);
        expect(r.code, r.stderr).toBe(0);
        const written = r.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        expect(written.map((w) => w.sha256)).toEqual(frames.map((f) => sha(f.data)));
        const received: Uint8Array[] = [];
        let afterSeq = 0;
        for (let i = 0; i < frames.length; i++) {
          const f = ring.acquire({ afterSeq, oldest: true, cameraId: 9 })!;
          expect(f).toMatchObject({ frameIndex: i, width, height, bytes: width * height * 3 });
          const host = new Uint8Array(f.bytes);
          await ring.readHost(f, host, s);
          received.push(host);
          afterSeq = f.seq;
        }
        expect(received.map(sha)).toEqual(written.map((w) => w.sha256));
        await expectSameFaces(received);
      } finally {
        ring.dispose();
      }
    },
  );
});
