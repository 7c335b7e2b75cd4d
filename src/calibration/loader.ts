import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, relative } from 'node:path';
import { YqpError, invalidParameter } from '../errors.js';
import { preprocessInto } from '../preprocess/cpu.js';
import { elementsPerImage, validatePreprocessing } from '../preprocess/spec.js';
import type { PreprocessingSpec } from '../repository/config.js';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);
export const VIDEO_EXTENSIONS = new Set(['.mp4', '.webm', '.mov', '.mkv', '.avi']);

export interface CalibrationFile {
  path: string;
  /** Path relative to the folder (the frame list of the reuse key). */
  name: string;
  size: number;
  mtimeMs: number;
}

export interface CalibrationListing {
  dir: string;
  images: CalibrationFile[];
  videos: CalibrationFile[];
  /** Files that are neither images nor videos. */
  skipped: string[];
}

/** Walks a folder (recursively, sorted) for images and videos. */
export async function listCalibrationFiles(dir: string): Promise<CalibrationListing> {
  if (typeof dir !== 'string' || dir.length === 0)
    throw invalidParameter('--calib', 'a folder of calibration images', dir);
  let s;
  try {
    s = await stat(dir);
  } catch {
    throw new YqpError('E_ARGUMENT', `Calibration folder ${dir} does not exist`, {
      argument: '--calib',
      expected: 'a folder of jpg, png or webp images',
      received: dir,
    });
  }
  if (!s.isDirectory())
    throw new YqpError('E_ARGUMENT', `Expected a folder for --calib but received the file ${dir}`, {
      argument: '--calib',
      expected: 'a folder',
      received: dir,
    });
  const images: CalibrationFile[] = [];
  const videos: CalibrationFile[] = [];
  const skipped: string[] = [];
  const walk = async (d: string) => {
    const entries = (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const p = join(d, e.name);
      // Symbolic links count as what they point to (a folder of links into a dataset is common).
      const target = e.isSymbolicLink() ? await stat(p).catch(() => undefined) : e;
      if (!target) {
        skipped.push(p);
        continue;
      }
      if (target.isDirectory()) {
        await walk(p);
        continue;
      }
      if (!target.isFile()) continue;
      const ext = extname(e.name).toLowerCase();
      const isImage = IMAGE_EXTENSIONS.has(ext);
      if (!isImage && !VIDEO_EXTENSIONS.has(ext)) {
        skipped.push(p);
        continue;
      }
      const st = await stat(p);
      const f = { path: p, name: relative(dir, p), size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
      (isImage ? images : videos).push(f);
    }
  };
  await walk(dir);
  return { dir, images, videos, skipped };
}

/** Whether ffmpeg is on PATH (videos are decoded with it; without it they are skipped). */
export function ffmpegAvailable(): boolean {
  const r = spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Extracts frames of a video as jpg files into `outDir` with ffmpeg, at `fps` frames per second. */
export function extractVideoFrames(video: string, outDir: string, fps = 5): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      'ffmpeg',
      ['-loglevel', 'error', '-i', video, '-vf', `fps=${fps}`, '-q:v', '2', join(outDir, 'f%06d.jpg')],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let err = '';
    p.stderr.on('data', (d) => (err += String(d)));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(err.trim() || `ffmpeg exited ${code}`)),
    );
  });
}

/** mulberry32: a small deterministic PRNG, so the same seed picks the same frames everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic sample: a seeded Fisher-Yates shuffle, the first `count`, back in name order. */
export function sampleFiles<T extends { name: string }>(
  files: readonly T[],
  count: number | undefined,
  seed: number,
): T[] {
  if (count === undefined || count >= files.length) return [...files];
  const rand = prng(seed);
  const a = [...files];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, count).sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

/** sha256 of the frame list (names, sizes, mtimes): part of the calibration reuse key. */
export function frameListHash(files: readonly CalibrationFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.name}\0${f.size}\0${f.mtimeMs}\n`);
  return h.digest('hex');
}

export interface FrameSource {
  files: CalibrationFile[];
  /** Videos present but not decoded, and why. */
  videosSkipped: { count: number; reason: string } | undefined;
  cleanup(): Promise<void>;
}

/**
 * Lists and samples the calibration frames of a folder. Videos become frames through ffmpeg when it is on PATH;
 * without it they are skipped (npm and Debian's default packages carry no other video decoder).
 */
export async function prepareFrames(
  dir: string,
  count: number | undefined,
  seed: number,
): Promise<FrameSource> {
  const listing = await listCalibrationFiles(dir);
  let files = listing.images;
  let videosSkipped: FrameSource['videosSkipped'];
  let tmp: string | undefined;
  if (listing.videos.length > 0) {
    if (ffmpegAvailable()) {
      tmp = await mkdtemp(join(tmpdir(), 'yqp-calib-frames-'));
      for (const [i, v] of listing.videos.entries()) {
        const out = join(tmp, String(i));
        await mkdir(out);
        try {
          await extractVideoFrames(v.path, out);
        } catch {
          continue; // counted below as an unreadable file: it produced no frame
        }
        for (const f of (await readdir(out)).sort()) {
          files.push({ path: join(out, f), name: `${v.name}#${f}`, size: v.size, mtimeMs: v.mtimeMs });
        }
      }
    } else {
      videosSkipped = { count: listing.videos.length, reason: 'ffmpeg is not on PATH' };
    }
  }
  files = files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (files.length === 0)
    throw new YqpError(
      'E_CALIBRATION',
      `Calibration folder ${dir} holds no usable image (jpg, png, webp)${
        listing.skipped.length ? `: ${listing.skipped.length} other files` : ''
      }${videosSkipped ? `; ${videosSkipped.count} videos skipped (${videosSkipped.reason})` : ''}`,
      { argument: '--calib', expected: 'a folder with jpg, png or webp images', received: dir },
    );
  return {
    files: sampleFiles(files, count, seed),
    videosSkipped,
    cleanup: async () => {
      if (tmp) await rm(tmp, { recursive: true, force: true });
    },
  };
}

export interface CalibrationBatch {
  data: Float32Array;
  /** Frames in this batch (the last batch may be short). */
  count: number;
}

/**
 * Streams preprocessed batches of `batch` frames. Up to `concurrency` decodes run at once (sharp decodes on
 * libuv's pool); memory stays at about concurrency + 2 batches whatever the number of frames. Unreadable files
 * are skipped and reported through onSkip.
 */
export async function* streamBatches(
  files: readonly CalibrationFile[],
  spec: PreprocessingSpec,
  batch: number,
  concurrency: number,
  onSkip: (file: CalibrationFile, error: Error) => void,
): AsyncGenerator<CalibrationBatch> {
  validatePreprocessing(spec, 'preprocessing');
  const size = elementsPerImage(spec);
  let next = 0;
  const inFlight = new Map<number, Promise<Float32Array | undefined>>();
  const start = (i: number) => {
    const out = new Float32Array(size);
    inFlight.set(
      i,
      preprocessInto(files[i].path, spec, out, 0, files[i].name).then(
        () => out,
        (e: Error) => {
          onSkip(files[i], e);
          return undefined;
        },
      ),
    );
  };
  while (next < files.length && inFlight.size < concurrency) start(next++);
  let current = new Float32Array(batch * size);
  let filled = 0;
  for (let i = 0; i < files.length; i++) {
    const frame = await inFlight.get(i)!;
    inFlight.delete(i);
    if (next < files.length) start(next++);
    if (!frame) continue;
    current.set(frame, filled * size);
    filled++;
    if (filled === batch) {
      yield { data: current, count: filled };
      current = new Float32Array(batch * size);
      filled = 0;
    }
  }
  if (filled > 0) yield { data: current.subarray(0, filled * size), count: filled };
}
