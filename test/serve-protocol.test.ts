import { describe, expect, it } from 'vitest';
import { YqpError } from '../src/errors.js';
import { fromHalfBits } from '../src/preprocess/half.js';
import { encodeInferRequest, parseInferResponse } from '../src/serve/client-codec.js';
import { statusOf } from '../src/serve/http-status.js';
import { encodeInferResponse, parseInferRequest } from '../src/serve/protocol.js';
import { decodeBytesElements, encodeBytesElements } from '../src/serve/tensor-codec.js';

const json = (x: unknown) => Buffer.from(JSON.stringify(x));

function binaryBody(header: object, ...parts: Buffer[]): { body: Buffer; length: string } {
  const h = json(header);
  return { body: Buffer.concat([h, ...parts]), length: String(h.length) };
}

function errorOf(f: () => unknown): YqpError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(YqpError);
    return e as YqpError;
  }
  throw new Error('expected a throw');
}

describe('KServe v2 request parsing', () => {
  it('reads JSON tensors of every numeric datatype, flat or nested', () => {
    const r = parseInferRequest(
      json({
        id: 'r1',
        inputs: [
          {
            name: 'f32',
            datatype: 'FP32',
            shape: [2, 2],
            data: [
              [1.5, 2],
              [3, 4],
            ],
          },
          { name: 'f16', datatype: 'FP16', shape: [2], data: [1, -2.5] },
          { name: 'i64', datatype: 'INT64', shape: [2], data: [7, -9] },
          { name: 'b', datatype: 'BOOL', shape: [3], data: [true, false, true] },
          { name: 'u8', datatype: 'UINT8', shape: [2], data: [0, 255] },
          { name: 'i8', datatype: 'INT8', shape: [1], data: [-128] },
          { name: 'i32', datatype: 'INT32', shape: [1], data: [123456] },
          { name: 'f64', datatype: 'FP64', shape: [1], data: [0.1] },
          { name: 's', datatype: 'BYTES', shape: [2], data: ['ab', 'c'] },
        ],
      }),
    );
    expect(r.id).toBe('r1');
    const t = Object.fromEntries(r.inputs.map((i) => [i.name, i]));
    expect(Array.from(t.f32.tensor!.data as Float32Array)).toEqual([1.5, 2, 3, 4]);
    expect(t.f32.tensor!.dims).toEqual([2, 2]);
    expect(Array.from(t.f16.tensor!.data as Uint16Array, fromHalfBits)).toEqual([1, -2.5]);
    expect(Array.from(t.i64.tensor!.data as BigInt64Array)).toEqual([7n, -9n]);
    expect(Array.from(t.b.tensor!.data)).toEqual([1, 0, 1]);
    expect(t.b.tensor!.dtype).toBe('bool');
    expect(Array.from(t.u8.tensor!.data)).toEqual([0, 255]);
    expect(t.i8.tensor!.data[0]).toBe(-128);
    expect(t.i32.tensor!.data[0]).toBe(123456);
    expect(t.f64.tensor!.data[0]).toBe(0.1);
    expect(t.s.bytes!.map((b) => b.toString())).toEqual(['ab', 'c']);
    expect(r.outputs).toBeUndefined();
  });

  it('reads binary tensors after the JSON header, in input order, at any alignment', () => {
    const a = Buffer.from(new Float32Array([1, 2, 3]).buffer);
    const b = Buffer.from(new BigInt64Array([5n, 6n]).buffer);
    // A header of odd length puts the float data off its 4-byte alignment.
    const header = {
      id: 'x',
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [3], parameters: { binary_data_size: a.length } },
        { name: 'b', datatype: 'INT64', shape: [2], parameters: { binary_data_size: b.length } },
      ],
      outputs: [{ name: 'y', parameters: { binary_data: true } }, { name: 'z' }],
    };
    const { body, length } = binaryBody(header, a, b);
    const r = parseInferRequest(body, length);
    expect(Array.from(r.inputs[0].tensor!.data as Float32Array)).toEqual([1, 2, 3]);
    expect(Array.from(r.inputs[1].tensor!.data as BigInt64Array)).toEqual([5n, 6n]);
    expect(r.outputs).toEqual([
      { name: 'y', binary: true, sharedMemory: undefined },
      { name: 'z', binary: false, sharedMemory: undefined },
    ]);
  });

  it('reads BYTES elements with 4-byte length prefixes and refuses cut ones', () => {
    const raw = encodeBytesElements([Buffer.from('hello'), Buffer.alloc(0), Buffer.from([1, 2, 3])]);
    expect(decodeBytesElements(raw, 3, 'x').map((b) => b.length)).toEqual([5, 0, 3]);
    expect(errorOf(() => decodeBytesElements(raw.subarray(0, raw.length - 1), 3, 'x')).message).toMatch(
      /Truncated BYTES/,
    );
    expect(errorOf(() => decodeBytesElements(raw, 2, 'x')).message).toMatch(/Expected 2 BYTES elements/);
  });

  it('refuses malformed JSON, truncated and oversized binary bodies, and wrong sizes, naming the input', () => {
    expect(errorOf(() => parseInferRequest(Buffer.from('{"inputs": [')))).toMatchObject({
      code: 'E_ARGUMENT',
    });
    expect(errorOf(() => parseInferRequest(Buffer.from('{"inputs": ['))).message).toMatch(/Malformed JSON/);
    expect(errorOf(() => parseInferRequest(json([1, 2]))).message).toMatch(/JSON object/);
    expect(errorOf(() => parseInferRequest(json({ inputs: [] }))).message).toMatch(
      /non-empty array for inputs/,
    );
    const a = Buffer.from(new Float32Array([1, 2, 3]).buffer);
    const header = {
      inputs: [{ name: 'a', datatype: 'FP32', shape: [3], parameters: { binary_data_size: 12 } }],
    };
    const { body, length } = binaryBody(header, a);
    expect(errorOf(() => parseInferRequest(body.subarray(0, body.length - 2), length)).message).toMatch(
      /Truncated binary body: input "a" needs 12 bytes/,
    );
    expect(errorOf(() => parseInferRequest(Buffer.concat([body, Buffer.alloc(4)]), length)).message).toMatch(
      /4 bytes beyond/,
    );
    expect(errorOf(() => parseInferRequest(body, String(body.length + 1))).message).toMatch(
      /Inference-Header-Content-Length says/,
    );
    expect(errorOf(() => parseInferRequest(body, 'abc')).message).toMatch(/byte count/);
    const wrong = binaryBody(
      { inputs: [{ name: 'a', datatype: 'FP32', shape: [4], parameters: { binary_data_size: 12 } }] },
      a,
    );
    const e = errorOf(() => parseInferRequest(wrong.body, wrong.length));
    expect(e.code).toBe('E_SHAPE');
    expect(e.message).toMatch(/Input "a" of shape \[4\] and datatype FP32 needs 16 bytes but received 12/);
    const count = errorOf(() =>
      parseInferRequest(json({ inputs: [{ name: 'a', datatype: 'FP32', shape: [2, 2], data: [1, 2, 3] }] })),
    );
    expect(count.code).toBe('E_SHAPE');
    expect(count.message).toMatch(/4 elements\) but its data holds 3/);
  });

  it('refuses unknown datatypes, bad shapes, out-of-range integers and wrong JSON types', () => {
    const one = (input: object) => errorOf(() => parseInferRequest(json({ inputs: [input] })));
    expect(one({ name: 'a', datatype: 'FP8', shape: [1], data: [1] })).toMatchObject({ code: 'E_DTYPE' });
    expect(one({ name: 'a', datatype: 'FP32', shape: [-1], data: [1] }).message).toMatch(
      /non-negative integers for input "a".shape/,
    );
    expect(one({ name: 'a', datatype: 'UINT8', shape: [1], data: [256] }).message).toMatch(/UINT8 range/);
    expect(one({ name: 'a', datatype: 'INT32', shape: [1], data: [1.5] }).message).toMatch(/integers/);
    expect(one({ name: 'a', datatype: 'FP32', shape: [1], data: ['1'] }).message).toMatch(/numbers/);
    expect(one({ name: 'a', datatype: 'BOOL', shape: [1], data: [1] }).message).toMatch(/true or false/);
    expect(one({ name: 'a', datatype: 'FP32', shape: [1] }).message).toMatch(/array for input "a".data/);
    expect(
      one({ name: 'a', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }).message,
    ).toMatch(/no Inference-Header-Content-Length/);
    expect(
      one({ name: 'a', datatype: 'FP32', shape: [1], parameters: { shared_memory_region: 'r' } }).message,
    ).toMatch(/shared_memory_byte_size/);
    const twice = errorOf(() =>
      parseInferRequest(
        json({
          inputs: [
            { name: 'a', datatype: 'FP32', shape: [1], data: [1] },
            { name: 'a', datatype: 'FP32', shape: [1], data: [1] },
          ],
        }),
      ),
    );
    expect(twice.message).toMatch(/appears twice/);
  });

  it('reads shared-memory references and binary_data_output', () => {
    const r = parseInferRequest(
      json({
        parameters: { binary_data_output: true },
        inputs: [
          {
            name: 'a',
            datatype: 'FP32',
            shape: [2],
            parameters: { shared_memory_region: 'in', shared_memory_byte_size: 8, shared_memory_offset: 16 },
          },
        ],
        outputs: [{ name: 'y' }, { name: 'z', parameters: { binary_data: false } }],
      }),
    );
    expect(r.inputs[0].sharedMemory).toEqual({ region: 'in', byteSize: 8, offset: 16 });
    expect(r.outputs!.map((o) => o.binary)).toEqual([true, false]);
  });
});

describe('KServe v2 responses', () => {
  const y = { dtype: 'float32' as const, dims: [1, 2], data: new Float32Array([0.5, -1]) };
  const k = { dtype: 'int64' as const, dims: [1], data: new BigInt64Array([3n]) };
  it('encodes JSON outputs as Triton does', () => {
    const r = encodeInferResponse({ name: 'm', version: '2' }, 'id7', [
      { name: 'y', tensor: y, binary: false },
      { name: 'k', tensor: k, binary: false },
    ]);
    expect(r.headerLength).toBeUndefined();
    expect(JSON.parse(r.body as string)).toEqual({
      model_name: 'm',
      model_version: '2',
      id: 'id7',
      outputs: [
        { name: 'y', datatype: 'FP32', shape: [1, 2], data: [0.5, -1] },
        { name: 'k', datatype: 'INT64', shape: [1], data: [3] },
      ],
    });
  });

  it('encodes binary outputs after the header and reads them back', () => {
    const r = encodeInferResponse({ name: 'm', version: '1' }, undefined, [
      { name: 'y', tensor: y, binary: true },
      { name: 'k', tensor: k, binary: false },
    ]);
    const body = r.body as Buffer;
    expect(r.headerLength).toBeGreaterThan(0);
    const header = JSON.parse(body.subarray(0, r.headerLength).toString());
    expect(header.outputs[0].parameters).toEqual({ binary_data_size: 8 });
    expect(body.length).toBe(r.headerLength! + 8);
    const back = parseInferResponse(body, r.headerLength);
    expect(Array.from(back.outputs.y.data as Float32Array)).toEqual([0.5, -1]);
    expect(Array.from(back.outputs.k.data as BigInt64Array)).toEqual([3n]);
  });

  it('round-trips a binary request through the encoder and the parser', () => {
    const { body, headerLength } = encodeInferRequest([{ name: 'x', tensor: y }], { id: 'q' });
    const r = parseInferRequest(body, String(headerLength));
    expect(r.id).toBe('q');
    expect(r.binaryDataOutput).toBe(true);
    expect(Array.from(r.inputs[0].tensor!.data as Float32Array)).toEqual([0.5, -1]);
  });

  it('maps typed errors to Triton statuses', () => {
    expect(statusOf(new YqpError('E_NOT_FOUND', 'x'))).toBe(404);
    expect(statusOf(new YqpError('E_QUEUE_FULL', 'x'))).toBe(503);
    expect(statusOf(new YqpError('E_SHAPE', 'x'))).toBe(400);
    expect(statusOf(new YqpError('E_DTYPE', 'x'))).toBe(400);
    expect(statusOf(new YqpError('E_TIMEOUT', 'x'))).toBe(504);
    expect(statusOf(new YqpError('E_BACKEND', 'x'))).toBe(500);
    expect(statusOf(new Error('plain'))).toBe(500);
    expect(statusOf(Object.assign(new Error('too large'), { statusCode: 413 }))).toBe(413);
  });
});
