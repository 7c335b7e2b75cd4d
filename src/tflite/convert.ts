import { YqpError } from '../errors.js';
import type onnxProto from 'onnx-proto';
import { onnx, type ModelProto, type NodeProto, type TensorProto } from '../onnx/model.js';
import { fromHalfBits } from '../preprocess/half.js';
import {
  operatorName,
  TENSOR_TYPES,
  type OptionsTable,
  type TfliteModel,
  type TfliteOperator,
} from './schema.js';

/**
 * TFLite -> ONNX. TFLite computes in NHWC; ONNX's Conv and MaxPool in NCHW. Every rank-4 activation is kept NCHW
 * inside the graph (one Transpose after each NHWC graph input, one before each rank-4 graph output), so the model's
 * I/O layout stays the TFLite one. Tensors of other ranks keep TFLite's layout; a Reshape of a rank-4 tensor goes
 * through NHWC first so its element order is TFLite's. FP16 constants behind DEQUANTIZE become FP32 initializers.
 * The batch (dimension 0 of every input and output) is the symbolic 'batch'.
 */

const OPSET = 13;
const A = onnx.AttributeProto.AttributeType;
const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];

export interface ConvertReport {
  operators: Record<string, number>;
  /** FP16 constants folded to FP32 through DEQUANTIZE. */
  dequantized: number;
}

interface Value {
  /** ONNX name of the value. */
  name: string;
  /** TFLite (NHWC) shape, batch included. */
  shape: number[];
  /** Constant data (FP32 after DEQUANTIZE, or int32), for weights and shape operands. */
  constant?: Float32Array | Int32Array;
}

function attrInt(name: string, i: number) {
  return onnx.AttributeProto.create({ name, type: A.INT, i });
}
function attrInts(name: string, ints: number[]) {
  return onnx.AttributeProto.create({ name, type: A.INTS, ints });
}

function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: 1,
    dims,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

/** Reorders an NHWC-broadcastable constant (rank <= 4, right-aligned) to NCHW. */
function constantToNchw(values: Float32Array, shape: number[]): { data: Float32Array; dims: number[] } {
  const s = [1, 1, 1, 1, ...shape].slice(-4);
  const [n, h, w, c] = s;
  const out = new Float32Array(values.length);
  for (let b = 0; b < n; b++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < c; ch++)
          out[((b * c + ch) * h + y) * w + x] = values[((b * h + y) * w + x) * c + ch];
  return { data: out, dims: [n, c, h, w] };
}

/** TFLite's SAME padding: total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0), the odd pixel after. */
function samePads(
  inSize: number,
  outSize: number,
  k: number,
  stride: number,
  dilation: number,
): [number, number] {
  const total = Math.max((outSize - 1) * stride + (k - 1) * dilation + 1 - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

function unsupported(op: TfliteOperator, why?: string): YqpError {
  const name = operatorName(op);
  const custom = op.builtin === 32;
  return new YqpError(
    'E_MODEL_FILE',
    custom
      ? `TFLite operator ${op.index} is the custom operator ${op.customCode ?? '(unnamed)'}, which the importer does not implement`
      : `TFLite operator ${op.index} (${name}) is not supported by the importer${why ? `: ${why}` : ''}`,
    {
      argument: `operators[${op.index}]`,
      expected:
        'one of ADD, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, MAX_POOL_2D, AVERAGE_POOL_2D, PAD, PRELU, RELU, RELU6, RESHAPE, LOGISTIC, TANH, MUL',
      received: name,
    },
  );
}

export function convertTflite(
  model: TfliteModel,
  modelName: string,
): { proto: ModelProto; report: ConvertReport } {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const values = new Map<number, Value>();
  const report: ConvertReport = { operators: {}, dequantized: 0 };
  let counter = 0;
  const fresh = (base: string) => `${base}__${counter++}`;
  const node = (
    opType: string,
    input: string[],
    output: string[],
    attribute: onnxProto.onnx.IAttributeProto[] = [],
  ) => nodes.push(onnx.NodeProto.create({ name: fresh(opType), opType, input, output, attribute }));
  const addConst = (base: string, dims: number[], data: Float32Array): string => {
    const name = fresh(base);
    initializers.push(floatTensor(name, dims, data));
    return name;
  };
  const addInt64 = (base: string, ints: number[]): string => {
    const name = fresh(base);
    initializers.push(onnx.TensorProto.create({ name, dataType: 7, dims: [ints.length], int64Data: ints }));
    return name;
  };

  const tensorConstant = (index: number): Float32Array | Int32Array | undefined => {
    const t = model.tensors[index];
    const data = model.buffers[t.buffer];
    if (!data || data.length === 0) return undefined;
    const copy = Uint8Array.from(data); // buffers are not aligned inside the file
    if (t.type === 0) return new Float32Array(copy.buffer);
    if (t.type === 1) {
      const bits = new Uint16Array(copy.buffer);
      return Float32Array.from(bits, fromHalfBits);
    }
    if (t.type === 2) return new Int32Array(copy.buffer);
    throw new YqpError(
      'E_MODEL_FILE',
      `TFLite constant ${t.name} has type ${TENSOR_TYPES[t.type] ?? t.type}`,
      {
        argument: t.name,
        expected: 'float32, float16 or int32 constants',
        received: TENSOR_TYPES[t.type] ?? String(t.type),
      },
    );
  };

  const valueOf = (index: number, op: TfliteOperator): Value => {
    let v = values.get(index);
    if (!v) {
      const t = model.tensors[index];
      const constant = tensorConstant(index);
      if (!constant) throw unsupported(op, `its input ${t.name} is neither computed earlier nor constant`);
      v = { name: t.name, shape: t.shape, constant };
      values.set(index, v);
    }
    return v;
  };
  const outputValue = (op: TfliteOperator, k = 0): Value => {
    const t = model.tensors[op.outputs[k]];
    const v = { name: t.name, shape: t.shape };
    values.set(op.outputs[k], v);
    return v;
  };
  /** A constant as an ONNX initializer in the graph's layout (NCHW-broadcastable when the partner is rank 4). */
  const constName = (v: Value, partnerRank: number): string => {
    const data = v.constant as Float32Array;
    if (partnerRank === 4) {
      const c = constantToNchw(data, v.shape);
      return addConst(v.name, c.dims, c.data);
    }
    return addConst(v.name, v.shape, Float32Array.from(data));
  };
  const activation = (out: string, fused: number, op: TfliteOperator): void => {
    // TFLite ActivationFunctionType: 0 NONE, 1 RELU, 3 RELU6, 4 TANH.
    const pre = `${out}__pre_activation`;
    if (fused === 0) return;
    const last = nodes[nodes.length - 1];
    last.output = [pre];
    if (fused === 1) node('Relu', [pre], [out]);
    else if (fused === 3)
      node(
        'Clip',
        [pre, addConst('zero', [], Float32Array.of(0)), addConst('six', [], Float32Array.of(6))],
        [out],
      );
    else if (fused === 4) node('Tanh', [pre], [out]);
    else throw unsupported(op, `fused activation ${fused}`);
  };
  const opts = (op: TfliteOperator): OptionsTable => {
    if (!op.options) throw unsupported(op, 'it has no options table');
    return op.options;
  };

  // Graph inputs: NHWC outside, NCHW inside.
  const graphInputs = model.inputs.map((index) => {
    const t = model.tensors[index];
    if (t.type !== 0)
      throw new YqpError(
        'E_MODEL_FILE',
        `TFLite input ${t.name} is ${TENSOR_TYPES[t.type] ?? t.type}, not float32`,
        {
          argument: t.name,
          expected: 'float32 inputs',
        },
      );
    if (t.shape.length === 4) {
      const inner = `${t.name}__nchw`;
      node('Transpose', [t.name], [inner], [attrInts('perm', NHWC_TO_NCHW)]);
      values.set(index, { name: inner, shape: t.shape });
    } else values.set(index, { name: t.name, shape: t.shape });
    return t;
  });

  for (const op of model.operators) {
    const name = operatorName(op);
    report.operators[name] = (report.operators[name] ?? 0) + 1;
    switch (op.builtin) {
      case 6: {
        // DEQUANTIZE of an FP16 constant: fold to FP32.
        const t = model.tensors[op.inputs[0]];
        const data = tensorConstant(op.inputs[0]);
        if (t.type !== 1 || !data)
          throw unsupported(op, 'only FP16 constants are dequantized (INT8 quantization is not)');
        values.set(op.outputs[0], {
          name: model.tensors[op.outputs[0]].name,
          shape: t.shape,
          constant: data,
        });
        report.dequantized++;
        break;
      }
      case 3:
      case 4: {
        const depthwise = op.builtin === 4;
        const o = opts(op);
        const x = valueOf(op.inputs[0], op);
        const w = valueOf(op.inputs[1], op);
        const out = outputValue(op);
        if (!w.constant) throw unsupported(op, 'its filter is not constant');
        const [, inH, inW, inC] = x.shape;
        const [, outH, outW] = out.shape;
        // Conv2DOptions: padding 0, stride_w 1, stride_h 2, activation 3, dilation_w 4, dilation_h 5.
        // DepthwiseConv2DOptions: padding 0, stride_w 1, stride_h 2, depth_multiplier 3, activation 4, dilations 5, 6.
        const padding = o.byte(0);
        const sw = o.int(1, 1);
        const sh = o.int(2, 1);
        const fused = o.byte(depthwise ? 4 : 3);
        const dw = o.int(depthwise ? 5 : 4, 1);
        const dh = o.int(depthwise ? 6 : 5, 1);
        // Filters: CONV_2D [O, kh, kw, I] -> [O, I, kh, kw]; DEPTHWISE [1, kh, kw, C*M] -> [C*M, 1, kh, kw].
        const [d0, kh, kw, d3] = w.shape;
        const src = w.constant as Float32Array;
        const outC = depthwise ? d3 : d0;
        const perOut = depthwise ? 1 : d3;
        const wt = new Float32Array(src.length);
        for (let oc = 0; oc < outC; oc++)
          for (let ic = 0; ic < perOut; ic++)
            for (let y = 0; y < kh; y++)
              for (let xx = 0; xx < kw; xx++)
                wt[((oc * perOut + ic) * kh + y) * kw + xx] = depthwise
                  ? src[(y * kw + xx) * d3 + oc]
                  : src[((oc * kh + y) * kw + xx) * d3 + ic];
        const inputs = [x.name, addConst(`${w.name}`, [outC, perOut, kh, kw], wt)];
        if (op.inputs.length > 2 && op.inputs[2] >= 0) {
          const b = valueOf(op.inputs[2], op);
          inputs.push(addConst(b.name, [outC], Float32Array.from(b.constant as Float32Array)));
        }
        const [pt, pb] = padding === 0 ? samePads(inH, outH, kh, sh, dh) : [0, 0];
        const [pl, pr] = padding === 0 ? samePads(inW, outW, kw, sw, dw) : [0, 0];
        node(
          'Conv',
          inputs,
          [out.name],
          [
            attrInts('kernel_shape', [kh, kw]),
            attrInts('strides', [sh, sw]),
            attrInts('dilations', [dh, dw]),
            attrInts('pads', [pt, pl, pb, pr]),
            attrInt('group', depthwise ? inC : 1),
          ],
        );
        activation(out.name, fused, op);
        if (!depthwise && d3 !== inC)
          throw unsupported(op, `filter has ${d3} input channels, input has ${inC}`);
        break;
      }
      case 17:
      case 1: {
        const o = opts(op);
        const x = valueOf(op.inputs[0], op);
        const out = outputValue(op);
        // Pool2DOptions: padding 0, stride_w 1, stride_h 2, filter_width 3, filter_height 4, activation 5.
        const sw = o.int(1, 1);
        const sh = o.int(2, 1);
        const fw = o.int(3, 1);
        const fh = o.int(4, 1);
        const same = o.byte(0) === 0;
        const [pt, pb] = same ? samePads(x.shape[1], out.shape[1], fh, sh, 1) : [0, 0];
        const [pl, pr] = same ? samePads(x.shape[2], out.shape[2], fw, sw, 1) : [0, 0];
        const attrs = [
          attrInts('kernel_shape', [fh, fw]),
          attrInts('strides', [sh, sw]),
          attrInts('pads', [pt, pl, pb, pr]),
        ];
        // TFLite's average pool divides by the taps inside the image.
        if (op.builtin === 1) attrs.push(attrInt('count_include_pad', 0));
        node(op.builtin === 17 ? 'MaxPool' : 'AveragePool', [x.name], [out.name], attrs);
        activation(out.name, o.byte(5), op);
        break;
      }
      case 0:
      case 18: {
        const a = valueOf(op.inputs[0], op);
        const b = valueOf(op.inputs[1], op);
        const out = outputValue(op);
        const rank = out.shape.length;
        const operand = (v: Value) => (v.constant ? constName(v, rank) : v.name);
        node(op.builtin === 0 ? 'Add' : 'Mul', [operand(a), operand(b)], [out.name]);
        activation(out.name, op.options ? op.options.byte(0) : 0, op);
        break;
      }
      case 54: {
        const x = valueOf(op.inputs[0], op);
        const alpha = valueOf(op.inputs[1], op);
        const out = outputValue(op);
        if (!alpha.constant) throw unsupported(op, 'its alpha is not constant');
        node('PRelu', [x.name, constName(alpha, x.shape.length)], [out.name]);
        break;
      }
      case 19:
      case 21:
      case 14:
      case 28: {
        const x = valueOf(op.inputs[0], op);
        const out = outputValue(op);
        if (op.builtin === 21)
          node(
            'Clip',
            [x.name, addConst('zero', [], Float32Array.of(0)), addConst('six', [], Float32Array.of(6))],
            [out.name],
          );
        else node({ 19: 'Relu', 14: 'Sigmoid', 28: 'Tanh' }[op.builtin]!, [x.name], [out.name]);
        break;
      }
      case 34: {
        const x = valueOf(op.inputs[0], op);
        const p = valueOf(op.inputs[1], op);
        const out = outputValue(op);
        if (!p.constant) throw unsupported(op, 'its paddings are not constant');
        const pads = Array.from(p.constant as Int32Array);
        const rank = x.shape.length;
        const before = Array.from({ length: rank }, (_, d) => pads[2 * d]);
        const after = Array.from({ length: rank }, (_, d) => pads[2 * d + 1]);
        if (before[0] !== 0 || after[0] !== 0) throw unsupported(op, 'it pads the batch dimension');
        const order = rank === 4 ? NHWC_TO_NCHW : before.map((_, d) => d);
        node(
          'Pad',
          [x.name, addInt64('pads', [...order.map((d) => before[d]), ...order.map((d) => after[d])])],
          [out.name],
        );
        break;
      }
      case 22: {
        const x = valueOf(op.inputs[0], op);
        const out = outputValue(op);
        if (out.shape.slice(1).some((d) => d <= 0))
          throw unsupported(op, `its output shape ${out.shape} is not static`);
        let src = x.name;
        if (x.shape.length === 4) {
          src = fresh(`${x.name}__nhwc`);
          node('Transpose', [x.name], [src], [attrInts('perm', NCHW_TO_NHWC)]);
        }
        // 0 copies the batch dimension, which keeps the batch dynamic.
        const shapeName = addInt64('shape', [0, ...out.shape.slice(1)]);
        if (out.shape.length === 4) {
          const nhwc = fresh(`${out.name}__nhwc`);
          node('Reshape', [src, shapeName], [nhwc]);
          node('Transpose', [nhwc], [out.name], [attrInts('perm', NHWC_TO_NCHW)]);
        } else node('Reshape', [src, shapeName], [out.name]);
        break;
      }
      case 2: {
        const o = opts(op);
        const ins = op.inputs.map((i) => valueOf(i, op));
        const out = outputValue(op);
        const rank = out.shape.length;
        let axis = o.int(0);
        if (axis < 0) axis += rank;
        if (axis === 0) throw unsupported(op, 'it concatenates along the batch');
        const onnxAxis = rank === 4 ? NHWC_TO_NCHW.indexOf(axis) : axis;
        node(
          'Concat',
          ins.map((v) => (v.constant ? constName(v, rank) : v.name)),
          [out.name],
          [attrInt('axis', onnxAxis)],
        );
        activation(out.name, o.byte(1), op);
        break;
      }
      default:
        throw unsupported(op);
    }
  }

  const graphOutputs = model.outputs.map((index) => {
    const t = model.tensors[index];
    const v = values.get(index);
    if (!v)
      throw new YqpError('E_MODEL_FILE', `TFLite output ${t.name} is computed by no operator`, {
        argument: t.name,
      });
    if (t.shape.length === 4) {
      // The last node wrote v.name in NCHW; rename it and transpose back to the model's NHWC under the TFLite name.
      const inner = `${t.name}__nchw`;
      for (const n of nodes) n.output = n.output!.map((o) => (o === v.name ? inner : o));
      for (const n of nodes) n.input = n.input!.map((i) => (i === v.name ? inner : i));
      node('Transpose', [inner], [t.name], [attrInts('perm', NCHW_TO_NHWC)]);
    }
    return t;
  });

  const valueInfo = (t: { name: string; shape: number[] }) =>
    onnx.ValueInfoProto.create({
      name: t.name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({
          elemType: 1,
          shape: onnx.TensorShapeProto.create({
            dim: t.shape.map((d, i) =>
              onnx.TensorShapeProto.Dimension.create(i === 0 ? { dimParam: 'batch' } : { dimValue: d }),
            ),
          }),
        }),
      }),
    });

  const proto = onnx.ModelProto.create({
    irVersion: 7,
    producerName: 'yqp-trt import',
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET })],
    graph: onnx.GraphProto.create({
      name: modelName,
      node: nodes,
      initializer: initializers,
      input: graphInputs.map(valueInfo),
      output: graphOutputs.map(valueInfo),
    }),
  });
  return { proto, report };
}
