import type { Argv, CommandModule } from 'yargs';
import { parseDevice } from '../../device.js';
import { invalidParameter } from '../../errors.js';
import { createFacePipeline, type FrameResult } from '../../pipeline/face-pipeline.js';
import { readRawImage, videoFrames } from '../../pipeline/sources.js';
import { runCommand } from '../run-command.js';

interface TrackArgs {
  detector: string;
  landmarks: string;
  image?: string[];
  video?: string[];
  'detect-every'?: number;
  'max-faces'?: number;
  frames?: number;
  device?: string;
  json?: boolean;
  verbose?: boolean;
}

const r1 = (v: number) => Math.round(v * 10) / 10;

function frameJson(source: string, r: FrameResult) {
  return {
    source,
    camera: r.camera,
    frame: r.frame,
    width: r.width,
    height: r.height,
    faces: r.faces.map((f) => ({
      box: f.box.map(r1),
      score: Math.round(f.score * 1e4) / 1e4,
      keypoints: f.keypoints.map(([x, y]) => [r1(x), r1(y)]),
      landmarks: f.landmarks.map(([x, y, z]) => [r1(x), r1(y), r1(z)]),
      detected: f.detected,
    })),
  };
}

export const trackCommand: CommandModule<object, TrackArgs> = {
  command: 'track',
  describe: 'Face detection + 468 landmarks on images or videos (one camera per file), tracked across frames',
  builder: (y: Argv) =>
    y
      .option('detector', {
        type: 'string',
        demandOption: true,
        describe: 'detector entry (imported face_detection_short_range)',
      })
      .option('landmarks', {
        type: 'string',
        demandOption: true,
        describe: 'landmark entry (imported face_landmark)',
      })
      .option('image', { type: 'string', array: true, describe: 'image files (each detected afresh)' })
      .option('video', {
        type: 'string',
        array: true,
        describe: 'video files (one camera each, decoded by ffmpeg)',
      })
      .option('detect-every', {
        type: 'number',
        describe: 'detect at least every N frames while tracking (default 10)',
      })
      .option('max-faces', { type: 'number', describe: 'faces per image or camera (default 1)' })
      .option('frames', { type: 'number', describe: 'stop each video after N frames' })
      .option('device', {
        type: 'string',
        describe:
          "'cpu' (onnxruntime's CPU provider, default) or 'cuda' / 'cuda:N' (frames, crops and models on GPU N; only detections and landmarks come back)",
      })
      .option('json', {
        type: 'boolean',
        describe: 'print one JSON object per frame (JSON lines)',
      }) as unknown as Argv<TrackArgs>,
  handler: runCommand('track', async (argv: TrackArgs) => {
    const images = argv.image ?? [];
    const videos = argv.video ?? [];
    if ((images.length === 0) === (videos.length === 0))
      throw invalidParameter('--image / --video', 'image files or video files (one of the two)', {
        image: argv.image,
        video: argv.video,
      });
    const sources = images.length > 0 ? images : videos;
    if (argv.device !== undefined) parseDevice(argv.device, '--device');
    const pipeline = await createFacePipeline({
      device: argv.device,
      detector: argv.detector,
      landmarks: argv.landmarks,
      cameras: sources.length,
      detectEvery: argv['detect-every'],
      maxFaces: argv['max-faces'],
    });
    const print = (r: FrameResult) => {
      const source = sources[r.camera];
      if (argv.json) {
        process.stdout.write(JSON.stringify(frameJson(source, r)) + '\n');
        return;
      }
      const head = `${source}${videos.length ? ` frame ${r.frame}` : ''} (${r.width}x${r.height}): ${r.faces.length} face${r.faces.length === 1 ? '' : 's'}`;
      const faces = r.faces.map(
        (f) =>
          `  score ${f.score.toFixed(3)} box [${f.box.map(r1).join(', ')}] ${f.detected ? 'detected' : 'tracked'}, 468 landmarks, nose tip (${f.landmarks[1].slice(0, 2).map(r1).join(', ')})`,
      );
      process.stdout.write([head, ...faces].join('\n') + '\n');
    };
    pipeline.on('result', print);
    try {
      if (images.length > 0) {
        const raws = await Promise.all(images.map((f) => readRawImage(f)));
        await pipeline.process(raws.map((image, camera) => ({ camera, image })));
        return;
      }
      // One reader per video; a file source waits for its frame's result before the next (no frame dropped).
      await Promise.all(
        videos.map(async (file, camera) => {
          for await (const frame of videoFrames(file, { limit: argv.frames })) {
            const done = new Promise<void>((resolve) => {
              const on = (r: FrameResult) => {
                if (r.camera !== camera) return;
                pipeline.off('result', on);
                resolve();
              };
              pipeline.on('result', on);
            });
            pipeline.push(camera, frame);
            await done;
          }
        }),
      );
    } finally {
      await pipeline.close();
    }
  }),
};
