import { YqpError } from '../errors.js';
import { onnx, readFloats, type ModelProto, type NodeProto, type TensorProto } from '../onnx/model.js';
import { toHalfBits } from '../preprocess/half.js';

/**
 * Casts an fp32 ONNX model to fp16 (or bf16) compute for TensorRT 11, which builds strongly typed networks only:
 * there the precision of every layer is the precision of its tensors, so FP16 is chosen in the ONNX, not by a
 * builder flag. The graph's inputs and outputs stay float32 (a Cast follows each float input and precedes each
 * float output) so the repository entry, its preprocessing and its clients do not change.
 *
 * What changes: float initializers, float Constant / ConstantOfShape values, Cast-to-float nodes and float
 * value_info become the target type. Inputs that ONNX defines as float-only (Resize roi/scales, Upsample scales)
 * get a Cast back to float32.
 */
export type CastTarget = 'float16' | 'bfloat16';

const FLOAT = 1;
const FLOAT16 = 10;
const BFLOAT16 = 16;

/** op type -> input slots that must stay tensor(float) whatever the data type. */
const FLOAT_ONLY_INPUTS: Record<string, number[]> = {
  Resize: [1, 2],
  Upsample: [1],
};

export interface CastReport {
  target: CastTarget;
  initializers: number;
  constants: number;
  casts: number;
  inputs: string[];
  outputs: string[];
  floatOnlyInputs: number;
}

/** bfloat16 bits of a float32, rounded to nearest even (NaN stays a quiet NaN). */
export function toBfloat16Bits(value: number): number {
  const f = new Float32Array([value]);
  const u = new Uint32Array(f.buffer)[0];
  if (Number.isNaN(value)) return ((u >>> 16) | 0x40) & 0xffff;
  const rounded = u + 0x7fff + ((u >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

function castTensor(t: TensorProto, elem: number): void {
  const values = readFloats(t);
  const bits = new Uint16Array(values.length);
  const conv = elem === FLOAT16 ? toHalfBits : toBfloat16Bits;
  for (let i = 0; i < values.length; i++) bits[i] = conv(values[i]);
  t.dataType = elem;
  t.floatData = [];
  t.rawData = new Uint8Array(bits.buffer);
}

function uniqueName(used: Set<string>, base: string): string {
  let name = base;
  for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
  used.add(name);
  return name;
}

export function castOnnx(proto: ModelProto, target: CastTarget = 'float16'): CastReport {
  const graph = proto.graph;
  if (!graph) throw new YqpError('E_MODEL_FILE', 'ONNX model has no graph', { argument: 'model' });
  const elem = target === 'float16' ? FLOAT16 : BFLOAT16;
  const report: CastReport = {
    target,
    initializers: 0,
    constants: 0,
    casts: 0,
    inputs: [],
    outputs: [],
    floatOnlyInputs: 0,
  };
  const nodes = (graph.node ?? []) as NodeProto[];
  const used = new Set<string>();
  for (const n of nodes) for (const o of n.output ?? []) used.add(o);
  for (const v of [...(graph.input ?? []), ...(graph.initializer ?? [])]) used.add(v.name ?? '');

  for (const t of graph.initializer ?? []) {
    if (t.dataType === FLOAT) {
      castTensor(t, elem);
      report.initializers++;
    }
  }
  for (const n of nodes) {
    if (n.opType === 'Constant') {
      const value = n.attribute?.find((a) => a.name === 'value');
      if (value?.t && value.t.dataType === FLOAT) {
        castTensor(value.t, elem);
        report.constants++;
      }
    } else if (n.opType === 'ConstantOfShape') {
      const value = n.attribute?.find((a) => a.name === 'value');
      if (!value) {
        // The default value is a float32 zero; make it explicit in the target type.
        n.attribute = [
          ...(n.attribute ?? []),
          onnx.AttributeProto.create({
            name: 'value',
            type: onnx.AttributeProto.AttributeType.TENSOR,
            t: onnx.TensorProto.create({ dataType: elem, dims: [1], rawData: new Uint8Array(2) }),
          }),
        ];
        report.constants++;
      } else if (value.t && value.t.dataType === FLOAT) {
        castTensor(value.t, elem);
        report.constants++;
      }
    } else if (n.opType === 'Cast') {
      const to = n.attribute?.find((a) => a.name === 'to');
      if (to && Number(to.i) === FLOAT) {
        to.i = elem;
        report.casts++;
      }
    }
  }
  for (const v of graph.valueInfo ?? []) {
    const tt = v.type?.tensorType;
    if (tt && tt.elemType === FLOAT) tt.elemType = elem;
  }

  const castNode = (input: string, output: string, to: number, name: string): NodeProto =>
    onnx.NodeProto.create({
      opType: 'Cast',
      name,
      input: [input],
      output: [output],
      attribute: [
        onnx.AttributeProto.create({ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: to }),
      ],
    });

  // Float-only inputs: read the casted tensor back as float32.
  const prologue: NodeProto[] = [];
  const extra: { before: NodeProto; node: NodeProto }[] = [];
  for (const n of nodes) {
    const slots = FLOAT_ONLY_INPUTS[n.opType ?? ''];
    if (!slots) continue;
    for (const s of slots) {
      const name = n.input?.[s];
      if (!name) continue;
      const out = uniqueName(used, `${name}_float32_for_${n.name || n.opType}`);
      extra.push({ before: n, node: castNode(name, out, FLOAT, uniqueName(used, `yqp_cast_${out}`)) });
      n.input![s] = out;
      report.floatOnlyInputs++;
    }
  }

  // Graph inputs stay float32: consumers read a Cast of them.
  const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name));
  for (const input of graph.input ?? []) {
    if (initializerNames.has(input.name) || input.type?.tensorType?.elemType !== FLOAT) continue;
    const name = input.name!;
    const cast = uniqueName(used, `${name}_${target}`);
    for (const n of nodes) n.input = (n.input ?? []).map((i) => (i === name ? cast : i));
    prologue.push(castNode(name, cast, elem, uniqueName(used, `yqp_cast_in_${name}`)));
    report.inputs.push(name);
  }
  // Graph outputs stay float32: the producer writes a renamed tensor, a Cast writes the original name.
  const epilogue: NodeProto[] = [];
  for (const output of graph.output ?? []) {
    if (output.type?.tensorType?.elemType !== FLOAT) continue;
    const name = output.name!;
    const inner = uniqueName(used, `${name}_${target}`);
    for (const n of nodes) {
      n.output = (n.output ?? []).map((o) => (o === name ? inner : o));
      n.input = (n.input ?? []).map((i) => (i === name ? inner : i));
    }
    epilogue.push(castNode(inner, name, FLOAT, uniqueName(used, `yqp_cast_out_${name}`)));
    report.outputs.push(name);
  }

  const ordered: NodeProto[] = [...prologue];
  for (const n of nodes) {
    for (const e of extra) if (e.before === n) ordered.push(e.node);
    ordered.push(n);
  }
  ordered.push(...epilogue);
  graph.node = ordered;
  return report;
}
