// The onnxruntime form as onnxruntime optimizes it for the CPU (channels-last QLinearConv, no transposes left), with
// the batch folded into the image height around each pointwise convolution (1x1, stride 1, no pad, one group):
// NHWC [N, H, W, C] is [1, N*H, W, C] for it, exactly. onnxruntime's QLinearConv computes a batch image by image,
// parallelizing only inside one image, so a batch of small images is many small parallel sections; folded, a
// pointwise convolution is one. An experiment for the int8-cpu bench (--fold), not a form yqp-trt writes.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/**
 * From `optimized` (the onnxruntime form as onnxruntime wrote it optimized: optimizedModelFilePath), writes the
 * folded model into `work`; returns its path and how many convolutions were folded, of how many.
 */
export async function foldPointwise(optimized, work, inputName, inputDims) {
  // Each QLinearConv's input and output shapes, from one batch-1 run with them as extra graph outputs.
  const probe = onnx.ModelProto.decode(readFileSync(optimized));
  const convs = probe.graph.node.filter((n) => n.opType === 'QLinearConv');
  const wanted = [...new Set(convs.flatMap((n) => [n.input[0], n.output[0]]))];
  for (const w of wanted) probe.graph.output.push(onnx.ValueInfoProto.create({ name: w, type: { tensorType: { elemType: 2 } } }));
  const probePath = join(work, 'ort-form-probe.onnx');
  writeFileSync(probePath, onnx.ModelProto.encode(probe).finish());
  const session = await ort.InferenceSession.create(probePath, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 });
  const one = [1, ...inputDims.slice(1)];
  const out = await session.run({ [inputName]: new ort.Tensor('float32', new Float32Array(one.reduce((a, d) => a * d, 1)), one) });
  await session.release();
  const shape = new Map(wanted.map((w) => [w, out[w].dims.map(Number)]));
  const m = onnx.ModelProto.decode(readFileSync(optimized));
  const attr = (n, name) => n.attribute.find((a) => a.name === name);
  const ints = (n, name, fallback) => attr(n, name)?.ints?.map(Number) ?? fallback;
  const nodes = [];
  let folded = 0;
  for (const n of m.graph.node) {
    const pointwise =
      n.opType === 'QLinearConv' &&
      n.domain === 'com.microsoft' &&
      ints(n, 'kernel_shape', []).every((k) => k === 1) &&
      ints(n, 'strides', [1, 1]).every((s) => s === 1) &&
      ints(n, 'pads', [0, 0, 0, 0]).every((p) => p === 0) &&
      Number(attr(n, 'group')?.i ?? 1) === 1;
    if (!pointwise) {
      nodes.push(n);
      continue;
    }
    const [, H, W, C] = shape.get(n.input[0]);
    const M = shape.get(n.output[0])[3];
    const tag = `fold${folded++}`;
    for (const [name, dims] of [[`${tag}_in_shape`, [1, -1, W, C]], [`${tag}_out_shape`, [-1, H, W, M]]])
      m.graph.initializer.push(onnx.TensorProto.create({ name, dataType: 7, dims: [dims.length], int64Data: dims }));
    const y = n.output[0];
    nodes.push(onnx.NodeProto.create({ opType: 'Reshape', name: `${tag}_in`, input: [n.input[0], `${tag}_in_shape`], output: [`${tag}_in`] }));
    n.input[0] = `${tag}_in`;
    n.output[0] = `${tag}_out`;
    nodes.push(n);
    nodes.push(onnx.NodeProto.create({ opType: 'Reshape', name: `${tag}_out`, input: [`${tag}_out`, `${tag}_out_shape`], output: [y] }));
  }
  m.graph.node = nodes;
  const path = join(work, 'ort-form-folded.onnx');
  writeFileSync(path, onnx.ModelProto.encode(m).finish());
  return { path, folded, convs: convs.length };
}
