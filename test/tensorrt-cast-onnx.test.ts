import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeOnnx, loadOnnx } from '../src/onnx/model.js';
import { fromHalfBits } from '../src/preprocess/half.js';
import { castOnnx, toBfloat16Bits } from '../src/tensorrt/cast-onnx.js';
import { BLAZEFACE_ONNX, MEDIA_DIR, OCR_DET_ONNX, requireData } from './helpers/data.js';

/** A real face photo as BlazeFace wants it: NHWC 128x128 RGB in [-1, 1]. */
async function facePhoto(file: string): Promise<Float32Array> {
  const { data } = await sharp(join(MEDIA_DIR, file))
    .resize(128, 128, { fit: 'fill' })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return Float32Array.from(data, (v) => v / 127.5 - 1);
}

async function run(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

/** Largest |a-b| relative to the largest |a| of the tensor (fp16 keeps about 3 significant digits). */
function relativeMaxError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]));
  }
  return diff / Math.max(scale, 1e-6);
}

describe('castOnnx (fp16 ONNX for TensorRT 11 strongly typed builds)', () => {
  beforeAll(() => requireData());

  it('casts BlazeFace to fp16 compute with fp32 I/O, and onnxruntime matches fp32 on face photos', async () => {
    const fp32 = await loadOnnx(BLAZEFACE_ONNX);
    const cast = await loadOnnx(BLAZEFACE_ONNX);
    const report = castOnnx(cast.proto, 'float16');
    expect(report.initializers).toBeGreaterThan(30);
    expect(report.constants).toBe(11); // the 11 ConstantOfShape pads
    expect(report.inputs).toEqual(['input:0']);
    expect(report.outputs).toHaveLength(4);
    const bytes = encodeOnnx(cast.proto);
    // Weights really are 16-bit now: the model shrinks to about half.
    expect(bytes.length).toBeLessThan(fp32.bytes.length * 0.6);
    expect(cast.proto.graph!.input![0].type!.tensorType!.elemType).toBe(1);

    const photos = readdirSync(MEDIA_DIR)
      .filter((f) => f.endsWith('.jpg'))
      .slice(0, 3);
    expect(photos.length).toBeGreaterThan(0);
    for (const photo of photos) {
      const feeds = { 'input:0': new ort.Tensor('float32', await facePhoto(photo), [1, 128, 128, 3]) };
      const a = await run(fp32.bytes, feeds);
      const b = await run(bytes, feeds);
      for (const name of Object.keys(a)) {
        expect(b[name]).toBeInstanceOf(Float32Array);
        expect(b[name].length).toBe(a[name].length);
        expect(relativeMaxError(a[name], b[name]), `${photo} ${name}`).toBeLessThan(0.02);
      }
    }
  });

  it('keeps Resize scales float32 in a dynamic-shape model and it still runs', async () => {
    const m = await loadOnnx(OCR_DET_ONNX);
    const report = castOnnx(m.proto, 'float16');
    expect(report.floatOnlyInputs).toBeGreaterThan(0);
    expect(report.constants).toBeGreaterThan(100);
    // A real photo, NCHW, normalized as PaddleOCR does; the output is a probability map in [0, 1].
    const { data } = await sharp(join(MEDIA_DIR, 'audrey.jpg'))
      .resize(96, 64, { fit: 'fill' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const input = new Float32Array(3 * 64 * 96);
    for (let i = 0; i < 64 * 96; i++)
      for (let c = 0; c < 3; c++) input[c * 64 * 96 + i] = (data[i * 3 + c] / 255 - 0.5) / 0.25;
    const feeds = { x: new ort.Tensor('float32', input, [1, 3, 64, 96]) };
    const a = await run(m.bytes, feeds);
    const b = await run(encodeOnnx(m.proto), feeds);
    const name = Object.keys(a)[0];
    expect(b[name].length).toBe(a[name].length);
    let maxAbs = 0;
    for (let i = 0; i < a[name].length; i++) maxAbs = Math.max(maxAbs, Math.abs(a[name][i] - b[name][i]));
    expect(Number.isFinite(maxAbs)).toBe(true);
    expect(maxAbs).toBeLessThan(0.01);
  });

  it('rounds bfloat16 to nearest even', () => {
    expect(toBfloat16Bits(1)).toBe(0x3f80);
    expect(toBfloat16Bits(-2)).toBe(0xc000);
    // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
    expect(toBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(toBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(Number.isNaN(fromHalfBits(0x7e00))).toBe(true);
    expect(toBfloat16Bits(Number.NaN) & 0x7f80).toBe(0x7f80);
  });
});
