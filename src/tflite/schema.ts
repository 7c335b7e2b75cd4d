import * as flatbuffers from 'flatbuffers';
import { YqpError } from '../errors.js';

/**
 * The subset of the TFLite flatbuffer format the importer reads, written from the format's documentation: a Model
 * table (file identifier "TFL3") holding operator codes, subgraphs (tensors, operators, inputs, outputs) and
 * buffers. Field numbers are the schema's field order; a table field's vtable slot is 4 + 2 * field.
 */

/** TFLite TensorType values the importer understands. */
export const TENSOR_TYPES: Record<number, string> = {
  0: 'float32',
  1: 'float16',
  2: 'int32',
  3: 'uint8',
  4: 'int64',
  6: 'bool',
  7: 'int16',
  9: 'int8',
};

/** BuiltinOperator codes of the operators the importer converts (and the names of a few common others). */
export const BUILTIN_NAMES: Record<number, string> = {
  0: 'ADD',
  1: 'AVERAGE_POOL_2D',
  2: 'CONCATENATION',
  3: 'CONV_2D',
  4: 'DEPTHWISE_CONV_2D',
  6: 'DEQUANTIZE',
  9: 'FULLY_CONNECTED',
  14: 'LOGISTIC',
  17: 'MAX_POOL_2D',
  18: 'MUL',
  19: 'RELU',
  21: 'RELU6',
  22: 'RESHAPE',
  23: 'RESIZE_BILINEAR',
  25: 'SOFTMAX',
  28: 'TANH',
  32: 'CUSTOM',
  34: 'PAD',
  39: 'TRANSPOSE',
  40: 'MEAN',
  54: 'PRELU',
};

export interface TfliteTensor {
  index: number;
  name: string;
  shape: number[];
  type: number;
  buffer: number;
}

export interface TfliteOperator {
  index: number;
  /** BuiltinOperator code (CUSTOM for custom ops). */
  builtin: number;
  /** The custom op's name, for CUSTOM. */
  customCode?: string;
  inputs: number[];
  outputs: number[];
  /** The builtin options table, read lazily by field number. */
  options: OptionsTable | null;
}

export interface TfliteModel {
  version: number;
  description: string;
  tensors: TfliteTensor[];
  operators: TfliteOperator[];
  inputs: number[];
  outputs: number[];
  /** Buffer data by buffer index (empty for tensors computed at run time). */
  buffers: Uint8Array[];
}

/** A flatbuffer table: reads scalars, vectors and strings by field number, with the schema's defaults. */
export class OptionsTable {
  constructor(
    private readonly bb: flatbuffers.ByteBuffer,
    private readonly pos: number,
  ) {}

  private slot(field: number): number {
    return this.bb.__offset(this.pos, 4 + 2 * field);
  }
  int(field: number, fallback = 0): number {
    const o = this.slot(field);
    return o ? this.bb.readInt32(this.pos + o) : fallback;
  }
  uint(field: number, fallback = 0): number {
    const o = this.slot(field);
    return o ? this.bb.readUint32(this.pos + o) : fallback;
  }
  byte(field: number, fallback = 0): number {
    const o = this.slot(field);
    return o ? this.bb.readInt8(this.pos + o) : fallback;
  }
  ubyte(field: number, fallback = 0): number {
    const o = this.slot(field);
    return o ? this.bb.readUint8(this.pos + o) : fallback;
  }
  string(field: number): string | undefined {
    const o = this.slot(field);
    return o ? (this.bb.__string(this.pos + o) as string) : undefined;
  }
  ints(field: number): number[] {
    const o = this.slot(field);
    if (!o) return [];
    const start = this.bb.__vector(this.pos + o);
    const n = this.bb.__vector_len(this.pos + o);
    return Array.from({ length: n }, (_, i) => this.bb.readInt32(start + 4 * i));
  }
  bytes(field: number): Uint8Array {
    const o = this.slot(field);
    if (!o) return new Uint8Array(0);
    const start = this.bb.__vector(this.pos + o);
    const n = this.bb.__vector_len(this.pos + o);
    return this.bb.bytes().subarray(start, start + n);
  }
  table(field: number): OptionsTable | null {
    const o = this.slot(field);
    return o ? new OptionsTable(this.bb, this.bb.__indirect(this.pos + o)) : null;
  }
  tables(field: number): OptionsTable[] {
    const o = this.slot(field);
    if (!o) return [];
    const start = this.bb.__vector(this.pos + o);
    const n = this.bb.__vector_len(this.pos + o);
    return Array.from({ length: n }, (_, i) => new OptionsTable(this.bb, this.bb.__indirect(start + 4 * i)));
  }
}

function notTflite(path: string, why: string): YqpError {
  return new YqpError('E_MODEL_FILE', `Model file ${path} is not a TFLite model (${why})`, {
    argument: 'model',
    expected: 'a TFLite flatbuffer (file identifier TFL3)',
    received: why,
  });
}

/** Parses a TFLite file's first subgraph. Throws E_MODEL_FILE for anything that is not a readable TFLite model. */
export function parseTflite(bytes: Uint8Array, path = 'model'): TfliteModel {
  if (bytes.length < 8) throw notTflite(path, `${bytes.length} bytes`);
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (!bb.__has_identifier('TFL3')) {
    const id = Buffer.from(bytes.subarray(4, 8)).toString('latin1');
    throw notTflite(path, `file identifier ${JSON.stringify(id)}`);
  }
  try {
    const rootPos = bb.readUint32(0);
    if (rootPos >= bytes.length) throw new Error('root offset past the end');
    const model = new OptionsTable(bb, rootPos);
    const opcodes = model.tables(1).map((t) => {
      // builtin_code (field 3) replaced the byte-sized deprecated_builtin_code (field 0); files carry both.
      const deprecated = t.byte(0);
      const builtin = Math.max(deprecated, t.int(3));
      return { builtin, custom: t.string(1) };
    });
    const subgraphs = model.tables(2);
    if (subgraphs.length === 0) throw new Error('no subgraph');
    const sg = subgraphs[0];
    const tensors = sg.tables(0).map((t, index) => ({
      index,
      shape: t.ints(0),
      type: t.byte(1),
      buffer: t.uint(2),
      name: t.string(3) ?? `tensor_${index}`,
    }));
    const operators = sg.tables(3).map((op, index) => {
      const code = opcodes[op.uint(0)];
      if (!code) throw new Error(`operator ${index} names opcode ${op.uint(0)} of ${opcodes.length}`);
      return {
        index,
        builtin: code.builtin,
        customCode: code.custom,
        inputs: op.ints(1),
        outputs: op.ints(2),
        options: op.table(4),
      };
    });
    const buffers = model.tables(4).map((b) => b.bytes(0));
    for (const t of tensors)
      if (t.buffer >= buffers.length && buffers.length > 0)
        throw new Error(`tensor ${t.name} names buffer ${t.buffer} of ${buffers.length}`);
    return {
      version: model.uint(0),
      description: model.string(3) ?? '',
      tensors,
      operators,
      inputs: sg.ints(1),
      outputs: sg.ints(2),
      buffers,
    };
  } catch (e) {
    if (e instanceof YqpError) throw e;
    throw notTflite(path, `unreadable flatbuffer: ${(e as Error).message}`);
  }
}

export function operatorName(op: Pick<TfliteOperator, 'builtin' | 'customCode'>): string {
  if (op.builtin === 32) return `CUSTOM (${op.customCode ?? 'unnamed'})`;
  return BUILTIN_NAMES[op.builtin] ?? `builtin operator ${op.builtin}`;
}
