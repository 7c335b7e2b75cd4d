import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { build } from '../src/build.js';
import { YqpError } from '../src/errors.js';
import { makeBatchDynamic } from '../src/onnx/dynamic-batch.js';
import { FLOAT32_INPUTS, convertToFp16, readHalfs } from '../src/onnx/fp16.js';
import {
  decodeOnnx,
  encodeOnnx,
  loadOnnx,
  onnx,
  readFloats,
  type ModelProto,
  type NodeProto,
} from '../src/onnx/model.js';
import { decodeBlazeFace, type Face } from '../src/postprocess/blazeface.js';
import { blazefacePreset } from '../src/presets.js';
import { fromHalfBits, toHalfBits } from '../src/preprocess/half.js';
import { preprocessImages } from '../src/preprocess/cpu.js';
import type { TensorMap } from '../src/tensor.js';
import { BLAZEFACE_ONNX, MEDIA_DIR, OCR_DET_ONNX, requireData } from './helpers/data.js';
import { expectFacesMatch } from './helpers/faces.js';

const FLOAT = 1;
const FLOAT16 = 10;
const PROFILE = [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [16, 128, 128, 3] } }];

async function dynamicBlazeFace(): Promise<ModelProto> {
  const m = await loadOnnx(BLAZEFACE_ONNX);
  makeBatchDynamic(m.proto);
  return m.proto;
}

/** A deep copy, so one model can be converted while the original is kept. */
function clone(proto: ModelProto): ModelProto {
  return decodeOnnx(encodeOnnx(proto), 'clone');
}

async function run(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, ort.Tensor>> {
  // Errors only: the CPU provider warns that it cannot constant-fold float16 nodes it has no kernel for.
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

const toTensorMap = (out: Record<string, ort.Tensor>): TensorMap =>
  Object.fromEntries(
    Object.entries(out).map(([k, v]) => [
      k,
      { dtype: 'float32', dims: [...v.dims], data: v.data as Float32Array },
    ]),
  );

const castTo = (n: NodeProto) => Number(n.attribute?.find((a) => a.name === 'to')?.i);

describe('convertToFp16 on the dynamic-batch BlazeFace', () => {
  let fp32: ModelProto;
  let fp16: ModelProto;
  beforeAll(async () => {
    requireData();
    fp32 = await dynamicBlazeFace();
    fp16 = clone(fp32);
    convertToFp16(fp16);
  });

  it('stores every float32 weight as float16, each within half a float16 step of the float32 value', () => {
    const before = new Map(fp32.graph!.initializer!.map((t) => [t.name!, t]));
    const floats = fp32.graph!.initializer!.filter((t) => t.dataType === FLOAT);
    expect(floats.length).toBe(58);
    expect(fp16.graph!.initializer!.filter((t) => t.dataType === FLOAT)).toEqual([]);
    let values = 0;
    for (const t of fp16.graph!.initializer!) {
      const src = before.get(t.name!)!;
      expect(t.dataType, t.name!).toBe(src.dataType === FLOAT ? FLOAT16 : src.dataType);
      if (t.dataType !== FLOAT16) continue;
      const a = readFloats(src);
      const b = readHalfs(t);
      expect(b.length).toBe(a.length);
      for (let i = 0; i < a.length; i++) {
        // Round to nearest: at most half a unit in the last place, 2^-11 relative (2^-25 among subnormals).
        const bound = Math.max(Math.abs(a[i]) * 2 ** -11, 2 ** -25);
        if (!(Math.abs(a[i] - b[i]) <= bound)) expect.fail(`${t.name}[${i}]: ${a[i]} -> ${b[i]}`);
        values++;
      }
    }
    expect(values).toBeGreaterThan(50_000);
    // The 11 ConstantOfShape pads make float16 zeros.
    const pads = fp16.graph!.node!.filter((n) => n.opType === 'ConstantOfShape');
    expect(pads).toHaveLength(11);
    for (const n of pads) expect(n.attribute!.find((a) => a.name === 'value')!.t!.dataType).toBe(FLOAT16);
  });

  it('keeps the float32 input and outputs behind Cast nodes at the edges of the graph', () => {
    const g = fp16.graph!;
    expect(g.input!.map((i) => [i.name, i.type!.tensorType!.elemType])).toEqual([['input:0', FLOAT]]);
    expect(g.output!.every((o) => o.type!.tensorType!.elemType === FLOAT)).toBe(true);
    const first = g.node![0];
    expect([first.opType, first.input, castTo(first)]).toEqual(['Cast', ['input:0'], FLOAT16]);
    // Nothing else reads the float32 input.
    expect(g.node!.filter((n) => n.input!.includes('input:0'))).toEqual([first]);
    const last = g.node!.slice(-4);
    expect(last.map((n) => [n.opType, castTo(n)])).toEqual(Array(4).fill(['Cast', FLOAT]));
    expect(last.map((n) => n.output![0]).sort()).toEqual(g.output!.map((o) => o.name).sort());
    // Each output Cast reads what the original producer (a Reshape) now writes.
    for (const c of last) {
      const producer = g.node!.find((n) => n.output!.includes(c.input![0]))!;
      expect(producer.opType).toBe('Reshape');
    }
    expect(g.node!.filter((n) => n.opType === 'Cast')).toHaveLength(5);
  });

  it('halves the file and loads in onnxruntime; faces on real photos match FP32', async () => {
    const bytes32 = encodeOnnx(fp32);
    const bytes16 = encodeOnnx(fp16);
    expect(bytes16.length).toBeLessThan(bytes32.length * 0.6);
    const { preprocessing, postprocessing } = blazefacePreset('input:0');
    const photos = readdirSync(MEDIA_DIR)
      .filter((f) => /\.(jpg|png)$/.test(f))
      .sort()
      .slice(0, 12);
    expect(photos.length).toBe(12);
    const { tensor, transforms } = await preprocessImages(
      photos.map((p) => join(MEDIA_DIR, p)),
      preprocessing,
    );
    const feeds = { 'input:0': new ort.Tensor('float32', tensor.data as Float32Array, tensor.dims) };
    const out32 = await run(bytes32, feeds);
    const out16 = await run(bytes16, feeds);
    for (const [name, t] of Object.entries(out16)) {
      expect(t.type, name).toBe('float32');
      expect(t.dims).toEqual(out32[name].dims);
    }
    const faces = (out: Record<string, ort.Tensor>): Face[][] =>
      decodeBlazeFace(toTensorMap(out), postprocessing!, transforms);
    const reference = faces(out32);
    const seen = expectFacesMatch(reference, faces(out16), photos);
    // Not vacuous: most of these photos hold a face.
    expect(seen.faces).toBeGreaterThanOrEqual(8);
    console.log(
      `fp16 vs fp32 on onnxruntime CPU, ${photos.length} photos: ${seen.faces} faces, worst IoU ${seen.worstIou.toFixed(4)}, worst score diff ${seen.worstScoreDiff.toFixed(5)}`,
    );
  });

  it('makes the inputs and outputs float16 themselves on request', async () => {
    const m = clone(fp32);
    const report = convertToFp16(m, { keepIoFloat32: false });
    expect(report.io).toBe('float16');
    const g = m.graph!;
    expect(g.input![0].type!.tensorType!.elemType).toBe(FLOAT16);
    expect(g.output!.every((o) => o.type!.tensorType!.elemType === FLOAT16)).toBe(true);
    expect(g.node!.filter((n) => n.opType === 'Cast')).toEqual([]);
    const x = Float32Array.from({ length: 2 * 128 * 128 * 3 }, (_, i) => Math.sin(i * 0.37));
    const out16 = await run(encodeOnnx(m), {
      'input:0': new ort.Tensor('float16', Uint16Array.from(x, toHalfBits), [2, 128, 128, 3]),
    });
    const out32 = await run(encodeOnnx(fp32), { 'input:0': new ort.Tensor('float32', x, [2, 128, 128, 3]) });
    for (const [name, t] of Object.entries(out16)) {
      expect(t.type).toBe('float16');
      const a = out32[name].data as Float32Array;
      const b = Float32Array.from(t.data as Uint16Array, fromHalfBits);
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < a.length; i++) {
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(a[i]));
      }
      expect(diff / scale, name).toBeLessThan(0.02);
    }
  });
});

/**
 * A small graph with the cases BlazeFace lacks: Resize scales computed in the graph (Shape -> Cast -> Mul) and
 * from an initializer another node also reads, a Range from float Constants, a weight beyond float16's range.
 * X [1,1,2,2] -> out1 = Resize(X, scales) + sc + Resize(X, sc) + Range(0, 4, 1), out2 = Min(X, 1e5),
 * out3 = Resize(X, Range(1, 5, 1)): a float32 op's output on a float32-only input.
 */
function synthetic(): ModelProto {
  const { TensorProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto, TensorShapeProto } = onnx;
  const floats = (name: string, values: number[], dims = [values.length]) =>
    TensorProto.create({ name, dataType: FLOAT, dims, floatData: values });
  const vi = (name: string, elemType: number, dims?: number[]) =>
    ValueInfoProto.create({
      name,
      type: TypeProto.create({
        tensorType: TypeProto.Tensor.create({
          elemType,
          ...(dims ? { shape: TensorShapeProto.create({ dim: dims.map((d) => ({ dimValue: d })) }) } : {}),
        }),
      }),
    });
  const node = (opType: string, input: string[], output: string[], attribute: object[] = []) =>
    NodeProto.create({ name: output[0], opType, input, output, attribute });
  const scalar = (name: string, f: number) =>
    node('Constant', [], [name], [{ name: 'value_float', type: AttributeProto.AttributeType.FLOAT, f }]);
  const nearest = {
    name: 'mode',
    type: AttributeProto.AttributeType.STRING,
    s: new TextEncoder().encode('nearest'),
  };
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: onnx.GraphProto.create({
      name: 'synthetic',
      input: [vi('X', FLOAT, [1, 1, 2, 2])],
      output: [
        vi('out1', FLOAT, [1, 1, 4, 4]),
        vi('out2', FLOAT, [1, 1, 2, 2]),
        vi('out3', FLOAT, [1, 2, 6, 8]),
      ],
      valueInfo: [vi('scales', FLOAT), vi('A', FLOAT)],
      initializer: [floats('ones', [1, 1, 1, 1]), floats('sc', [1, 1, 2, 2]), floats('big', [1e5], [1])],
      node: [
        node('Shape', ['X'], ['shape']),
        node(
          'Cast',
          ['shape'],
          ['shapeF'],
          [{ name: 'to', type: AttributeProto.AttributeType.INT, i: FLOAT }],
        ),
        node('Mul', ['shapeF', 'ones'], ['scales']),
        node('Resize', ['X', '', 'scales'], ['Y1'], [nearest]),
        node('Resize', ['X', '', 'sc'], ['Y2'], [nearest]),
        node('Add', ['Y1', 'sc'], ['A']),
        scalar('c0', 0),
        scalar('c4', 4),
        scalar('c1', 1),
        node('Range', ['c0', 'c4', 'c1'], ['R']),
        node('Add', ['Y2', 'A'], ['B']),
        node('Add', ['B', 'R'], ['out1']),
        node('Min', ['X', 'big'], ['out2']),
        scalar('c5', 5),
        node('Range', ['c1', 'c5', 'c1'], ['S']),
        node('Resize', ['X', '', 'S'], ['out3'], [nearest]),
      ],
    }),
  });
}

describe('convertToFp16: inputs that must stay float32', () => {
  it('lists each kept (op, input) pair with its reason', () => {
    for (const rule of FLOAT32_INPUTS) expect(rule.why.length, rule.op).toBeGreaterThan(20);
    expect(FLOAT32_INPUTS.map((r) => r.op)).toEqual(
      expect.arrayContaining(['Resize', 'Upsample', 'NonMaxSuppression', 'Range']),
    );
  });

  it('keeps Resize scales and Range float32 with Casts, splits a shared weight, keeps or clamps a weight beyond 65504', async () => {
    const source = synthetic();
    const m = clone(source);
    const report = convertToFp16(m);
    const g = m.graph!;
    const byOutput = (name: string) => g.node!.find((n) => n.output!.includes(name))!;
    const init = (name: string) => g.initializer!.find((t) => t.name === name)!;

    expect(report.keptFloat32.map((k) => `${k.op}[${k.input}] ${k.tensor}`).sort()).toEqual([
      'Min[0] X',
      'Min[1] big',
      'Range[0] c0',
      'Range[0] c1',
      'Range[1] c4',
      'Range[1] c5',
      'Range[2] c1',
      'Range[2] c1',
      'Resize[2] S',
      'Resize[2] sc',
      'Resize[2] scales',
    ]);
    // Computed scales: the graph's Cast now makes float16, a new Cast feeds Resize float32.
    expect(castTo(byOutput('shapeF'))).toBe(FLOAT16);
    const resize1 = byOutput('Y1');
    const scalesCast = byOutput(resize1.input![2]);
    expect([scalesCast.opType, scalesCast.input, castTo(scalesCast)]).toEqual(['Cast', ['scales'], FLOAT]);
    // The shared initializer: float32 for Resize, a float16 copy for Add.
    const resize2 = byOutput('Y2');
    expect(resize2.input![2]).toBe('sc/fp32');
    expect(init('sc/fp32').dataType).toBe(FLOAT);
    expect(Array.from(readFloats(init('sc/fp32')))).toEqual([1, 1, 2, 2]);
    const add = byOutput('A');
    expect(add.input![1]).toBe('sc');
    expect(init('sc').dataType).toBe(FLOAT16);
    expect(Array.from(readHalfs(init('sc')))).toEqual([1, 1, 2, 2]);
    // The second Range's float32 output feeds Resize as it is (its float16 Cast goes unread).
    const resize3 = g.node!.find((n) => n.opType === 'Resize' && n !== resize1 && n !== resize2)!;
    expect(byOutput(resize3.input![2]).opType).toBe('Range');
    // After X, before the computed scales, after each Range, after Min, before each output.
    expect(report.castsInserted).toBe(8);
    // Range runs on its float32 Constants and a Cast brings its output to float16.
    const range = g.node!.find((n) => n.opType === 'Range')!;
    for (const i of range.input!) expect(byOutput(i).attribute![0].t!.dataType).toBe(FLOAT);
    const rangeCast = byOutput('R');
    expect([rangeCast.opType, rangeCast.input, castTo(rangeCast)]).toEqual(['Cast', range.output, FLOAT16]);
    // The weight beyond 65504 stays float32 with its Min node, whose output is cast to float16.
    expect(report.outOfRange).toEqual({ tensors: ['big'], maxAbs: 1e5 });
    expect(report.clamped.values).toBe(0);
    expect(init('big').dataType).toBe(FLOAT);
    expect(report.keptFloat32.filter((k) => k.op === 'Min').map((k) => k.tensor)).toEqual(['X', 'big']);
    const min = g.node!.find((n) => n.opType === 'Min')!;
    expect(min.input).toEqual(['X', 'big']); // X is the float32 graph input itself
    expect(castTo(byOutput('out2'))).toBe(FLOAT);
    // value_info follows: 'scales' and 'A' are float16 tensors now.
    expect(g.valueInfo!.map((v) => [v.name, v.type!.tensorType!.elemType])).toEqual([
      ['scales', FLOAT16],
      ['A', FLOAT16],
    ]);

    // onnxruntime loads both; these small integers are exact in float16, so the results are equal.
    const x = new Float32Array([1, 2, 3, 4]);
    const feeds = { X: new ort.Tensor('float32', x, [1, 1, 2, 2]) };
    const a = await run(encodeOnnx(source), feeds);
    const b = await run(encodeOnnx(m), feeds);
    expect(b.out1.type).toBe('float32');
    expect(Array.from(b.out1.data as Float32Array)).toEqual(Array.from(a.out1.data as Float32Array));
    expect(Array.from(b.out2.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(b.out3.dims).toEqual([1, 2, 6, 8]);
    expect(Array.from(b.out3.data as Float32Array)).toEqual(Array.from(a.out3.data as Float32Array));

    // On request the weight is clamped to 65504 and counted instead; Min(X, 65504) is still X.
    const clamped = clone(source);
    const r2 = convertToFp16(clamped, { outOfRange: 'clamp' });
    expect(r2.clamped).toEqual({ values: 1, tensors: ['big'], maxAbs: 1e5 });
    const big = clamped.graph!.initializer!.find((t) => t.name === 'big')!;
    expect(Array.from(readHalfs(big))).toEqual([65504]);
    const c = await run(encodeOnnx(clamped), feeds);
    expect(Array.from(c.out2.data as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  it('converts PP-OCRv4 det (Resize with float32 scales kept) and it still runs close to FP32', async () => {
    requireData(OCR_DET_ONNX);
    const src = await loadOnnx(OCR_DET_ONNX);
    const m = clone(src.proto);
    const report = convertToFp16(m);
    expect(report.keptFloat32.filter((k) => k.op === 'Resize').length).toBeGreaterThan(0);
    expect(report.constants).toBeGreaterThan(100); // its weights are Constant nodes
    // Its first BatchNormalization's running variance reaches 9.8e7: that node stays float32, nothing is clamped.
    expect(report.outOfRange.tensors).toContain('batch_norm_0.w_2');
    expect(report.keptFloat32.filter((k) => k.op === 'BatchNormalization').length).toBeGreaterThan(0);
    expect(report.clamped.values).toBe(0);
    // A real photo, NCHW, normalized as PaddleOCR does; the output is a probability map in [0, 1].
    const { data } = await sharp(join(MEDIA_DIR, 'audrey.jpg'))
      .resize(96, 64, { fit: 'fill' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const x = new Float32Array(3 * 64 * 96);
    for (let i = 0; i < 64 * 96; i++)
      for (let c = 0; c < 3; c++) x[c * 64 * 96 + i] = (data[i * 3 + c] / 255 - 0.5) / 0.25;
    const feeds = { x: new ort.Tensor('float32', x, [1, 3, 64, 96]) };
    const a = await run(src.bytes, feeds);
    const b = await run(encodeOnnx(m), feeds);
    const name = Object.keys(a)[0];
    const pa = a[name].data as Float32Array;
    const pb = b[name].data as Float32Array;
    expect(pb.length).toBe(pa.length);
    let maxAbs = 0;
    for (let i = 0; i < pa.length; i++) maxAbs = Math.max(maxAbs, Math.abs(pa[i] - pb[i]));
    expect(maxAbs).toBeLessThan(0.01);
    // Clamping instead (the variance becomes 65504) visibly changes this model: why float32 is the default.
    const clamped = clone(src.proto);
    expect(convertToFp16(clamped, { outOfRange: 'clamp' }).clamped.tensors).toContain('batch_norm_0.w_2');
    const c = (await run(encodeOnnx(clamped), feeds))[name].data as Float32Array;
    let clampedMaxAbs = 0;
    for (let i = 0; i < pa.length; i++) clampedMaxAbs = Math.max(clampedMaxAbs, Math.abs(pa[i] - c[i]));
    expect(clampedMaxAbs).toBeGreaterThan(0.1);
  });

  it('refuses models with subgraphs, naming the node', () => {
    const m = synthetic();
    m.graph!.node!.push(
      onnx.NodeProto.create({
        name: 'branch',
        opType: 'If',
        input: ['X'],
        output: ['Z'],
        attribute: [{ name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: { name: 't' } }],
      }),
    );
    expect(() => convertToFp16(m)).toThrow(/does not convert subgraphs: node branch \(If\)/);
  });
});

describe('build --fp16', () => {
  const repo = mkdtempSync(join(tmpdir(), 'yqp-fp16-'));
  beforeAll(() => requireData());

  it('is refused without a CUDA device, naming --fp16 and the CUDA execution provider', async () => {
    for (const device of [undefined, 'cpu']) {
      const e = await build(BLAZEFACE_ONNX, {
        name: 'refused',
        repo,
        dynamicBatch: true,
        backend: 'onnxruntime',
        profiles: PROFILE,
        precision: 'fp16',
        device,
      }).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(YqpError);
      expect((e as YqpError).argument).toBe('--fp16');
      expect((e as YqpError).message).toMatch(
        /--fp16 needs --device cuda: FP16 runs on onnxruntime's CUDA execution provider.*slower than FP32 or not at all/,
      );
    }
    expect(readdirSync(repo)).not.toContain('refused');
  });

  it('leaves FP16 to the build step of a backend that has one (TensorRT), and checks the device under auto', async () => {
    const auto = await build(BLAZEFACE_ONNX, { name: 'auto16', repo, precision: 'fp16' }).catch((e) => e);
    expect((auto as YqpError).argument).toBe('--fp16');
    // TensorRT takes FP16 as a builder flag: no --device needed. Where TensorRT is missing, it is what stops the
    // build; where it is installed, the engine is built.
    const trt = await build(BLAZEFACE_ONNX, {
      name: 'trt16',
      repo,
      precision: 'fp16',
      backend: 'tensorrt',
    }).then(
      (r) => r.entry.config,
      (e: YqpError) => e,
    );
    if (trt instanceof YqpError)
      expect([trt.code, trt.argument]).toEqual(['E_BACKEND_UNAVAILABLE', 'backend']);
    else expect([trt.backend, trt.precision]).toEqual(['tensorrt', 'fp16']);
  });

  it('writes the FP16 model, precision fp16 and device cuda with --device cuda (no GPU needed)', async () => {
    const { entry, notes } = await build(BLAZEFACE_ONNX, {
      name: 'face16',
      repo,
      dynamicBatch: true,
      backend: 'onnxruntime',
      profiles: PROFILE,
      precision: 'fp16',
      device: 'cuda',
    });
    expect(entry.config.precision).toBe('fp16');
    expect(entry.config.device).toBe('cuda');
    expect(entry.config.inputs[0]).toEqual({ name: 'input:0', dtype: 'float32', dims: [-1, 128, 128, 3] });
    expect(entry.config.metadata!.fp16).toMatchObject({ initializers: 58, io: 'float32', castsInserted: 5 });
    expect(notes.some((n) => n.startsWith('fp16: 58 initializers'))).toBe(true);
    const written = decodeOnnx(readFileSync(entry.modelPath), entry.modelPath);
    expect(written.graph!.initializer!.filter((t) => t.dataType === FLOAT)).toEqual([]);
    expect(written.graph!.initializer!.filter((t) => t.dataType === FLOAT16)).toHaveLength(58);
  });

  it('rejects a device that is not cpu, cuda or cuda:N', async () => {
    await expect(
      build(BLAZEFACE_ONNX, { name: 'x', repo, precision: 'fp16', device: 'gpu0' }),
    ).rejects.toThrow(/Expected 'cpu', 'cuda' or 'cuda:N' for device but received "gpu0" of type string/);
  });
});
