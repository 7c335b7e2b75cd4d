import { spawn, execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { YqpError } from '../errors.js';
import type { RawImage } from '../preprocess/cpu.js';

const execFileAsync = promisify(execFile);

/** Decodes an image file to raw RGB (EXIF orientation applied). */
export async function readRawImage(path: string): Promise<RawImage> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new Error('not a file');
  } catch {
    throw new YqpError('E_IMAGE', `Image ${path} does not exist or is not a file`, {
      argument: 'image',
      expected: 'an image file (jpg, png, webp)',
      received: path,
    });
  }
  try {
    const { data, info } = await sharp(path, { failOn: 'error' })
      .rotate()
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      channels: 3,
    };
  } catch (e) {
    throw new YqpError('E_IMAGE', `Image ${path} cannot be decoded (${(e as Error).message})`, {
      argument: 'image',
      received: path,
      cause: e,
    });
  }
}

function ffmpegMissing(tool: string, e: unknown): YqpError {
  return new YqpError('E_BACKEND_UNAVAILABLE', `${tool} is not installed (${(e as Error).message})`, {
    argument: 'video',
    solutions: ['apt-get install ffmpeg'],
    cause: e,
  });
}

export interface VideoInfo {
  width: number;
  height: number;
  fps: number;
  frames?: number;
}

/** The first video stream's size and rate (ffprobe). */
export async function probeVideo(path: string): Promise<VideoInfo> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new Error('not a file');
  } catch {
    throw new YqpError('E_IMAGE', `Video ${path} does not exist or is not a file`, {
      argument: 'video',
      received: path,
    });
  }
  let out: string;
  try {
    ({ stdout: out } = await execFileAsync('ffprobe', [
      '-v',
      'error',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=width,height,r_frame_rate,nb_frames',
      '-of',
      'json',
      path,
    ]));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw ffmpegMissing('ffprobe', e);
    throw new YqpError('E_IMAGE', `Video ${path} cannot be read (${(e as Error).message.split('\n')[0]})`, {
      argument: 'video',
      received: path,
      cause: e,
    });
  }
  const stream = (JSON.parse(out) as { streams?: Record<string, string | number>[] }).streams?.[0];
  if (!stream)
    throw new YqpError('E_IMAGE', `Video ${path} has no video stream`, { argument: 'video', received: path });
  const [num, den] = String(stream.r_frame_rate ?? '30/1')
    .split('/')
    .map(Number);
  const frames = Number(stream.nb_frames);
  return {
    width: Number(stream.width),
    height: Number(stream.height),
    fps: den ? num / den : num,
    frames: Number.isFinite(frames) && frames > 0 ? frames : undefined,
  };
}

/**
 * Decoded RGB frames of a video file, from an ffmpeg child process (rawvideo on stdout). Reading pauses ffmpeg when
 * the consumer is slower (the pipe's backpressure), so a file source loses no frame; `limit` stops after that many.
 */
export async function* videoFrames(
  path: string,
  options: { limit?: number } = {},
): AsyncGenerator<RawImage & { index: number }> {
  const info = await probeVideo(path);
  const frameBytes = info.width * info.height * 3;
  const args = ['-v', 'error', '-nostdin', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'rgb24'];
  if (options.limit) args.push('-frames:v', String(options.limit));
  args.push('-');
  const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(ffmpegMissing('ffmpeg', e)));
    child.on('close', (code) => resolve(code));
  });
  let index = 0;
  let buffered: Buffer[] = [];
  let have = 0;
  try {
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      buffered.push(chunk);
      have += chunk.length;
      while (have >= frameBytes) {
        const all = Buffer.concat(buffered);
        const frame = new Uint8Array(frameBytes);
        frame.set(all.subarray(0, frameBytes));
        buffered = [all.subarray(frameBytes)];
        have -= frameBytes;
        yield { data: frame, width: info.width, height: info.height, channels: 3, index: index++ };
      }
    }
    const code = await exited;
    if (code !== 0)
      throw new YqpError(
        'E_IMAGE',
        `ffmpeg failed on ${path} (exit ${code}): ${stderr.trim().split('\n').pop()}`,
        {
          argument: 'video',
          received: path,
        },
      );
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}
