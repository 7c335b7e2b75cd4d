/**
 * The ModelInfer hot path's wire format (src/serve/grpc/wire.ts): a request message read from DATA chunks into a
 * pooled slab with its first raw input aligned, the faults grpc-js answers for the same frames, the response
 * frame against protobufjs's own encoding, grpc-message's encoding and grpc-timeout.
 */
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../src/serve/buffer-pool.js';
import { grpcInferResponse } from '../src/serve/grpc/infer-messages.js';
import { inferenceService, messageType, toInt, type Message } from '../src/serve/grpc/service.js';
import {
  FRAME_HEADER_BYTES,
  UnaryMessageReader,
  encodeGrpcMessage,
  encodeInferResponseFrame,
  firstRawInputOffset,
  grpcTimeoutMs,
} from '../src/serve/grpc/wire.js';
import type { InferResult } from '../src/serve/endpoint.js';

const ModelInfer = inferenceService().ModelInfer;

/** A ModelInferRequest whose first raw input starts `pad` name bytes later (to move its offset around). */
function request(pad: number, raw: Buffer[] = [Buffer.from(new Float32Array([1, 2, 3, 4, 5]).buffer)]) {
  const msg = {
    model_name: 'm'.repeat(1 + pad),
    id: 'r',
    inputs: raw.map((_, i) => ({ name: `x${i}`, datatype: 'FP32', shape: [1, raw[i].length / 4] })),
    raw_input_contents: raw,
  };
  return ModelInfer.requestSerialize(msg) as Buffer;
}

function frame(message: Buffer, compressed = 0): Buffer {
  const f = Buffer.alloc(FRAME_HEADER_BYTES + message.length);
  f[0] = compressed;
  f.writeUInt32BE(message.length, 1);
  message.copy(f, FRAME_HEADER_BYTES);
  return f;
}

/** `bytes` in chunks of the given sizes (the rest in one). */
function chunks(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  for (const n of sizes) {
    out.push(bytes.subarray(pos, pos + n));
    pos += n;
  }
  if (pos < bytes.length) out.push(bytes.subarray(pos));
  return out;
}

describe('firstRawInputOffset', () => {
  it('finds where the first raw input starts, past the other fields', () => {
    for (const pad of [0, 1, 2, 3, 200]) {
      const msg = request(pad);
      const off = firstRawInputOffset(msg);
      expect(off).toBeGreaterThan(pad);
      expect(msg.subarray(off, off + 20).equals(Buffer.from(new Float32Array([1, 2, 3, 4, 5]).buffer))).toBe(
        true,
      );
    }
  });

  it('answers -1 without raw inputs, or where the prefix ends first', () => {
    const typed = ModelInfer.requestSerialize({
      model_name: 'm',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1], contents: { fp32_contents: [1] } }],
    }) as Buffer;
    expect(firstRawInputOffset(typed)).toBe(-1);
    expect(firstRawInputOffset(request(0).subarray(0, 3))).toBe(-1);
    expect(firstRawInputOffset(Buffer.from([0xff]))).toBe(-1);
  });
});

describe('UnaryMessageReader', () => {
  it('gathers a message from any chunking, its first raw input 8-byte aligned, and gives its slab back', () => {
    const raw = Buffer.alloc(100_000);
    for (let i = 0; i < raw.length; i++) raw[i] = i % 251;
    for (const pad of [0, 1, 5]) {
      const msg = request(pad, [raw, Buffer.from([1, 2, 3, 4])]);
      for (const sizes of [[], [1, 2, 3], [4, 4096, 3], [7, 10_000]]) {
        const pool = new BufferPool();
        const reader = new UnaryMessageReader(pool, 1 << 20);
        for (const c of chunks(frame(msg), sizes)) expect(reader.push(c)).toBe(true);
        const bytes = reader.message()!;
        expect(bytes.equals(msg)).toBe(true);
        const decoded = ModelInfer.requestDeserialize(bytes) as Message;
        expect(decoded.raw_input_contents[0].byteOffset % 8).toBe(0);
        expect(Buffer.from(decoded.raw_input_contents[0]).equals(raw)).toBe(true);
        expect(Array.from(decoded.raw_input_contents[1] as Buffer)).toEqual([1, 2, 3, 4]);
        reader.release();
        expect(pool.idleBytes).toBeGreaterThanOrEqual(msg.length);
      }
    }
  });

  it('reads a small and an empty message', () => {
    const small = new UnaryMessageReader(new BufferPool(), 1 << 20);
    const msg = request(0);
    small.push(frame(msg));
    expect(small.message()!.equals(msg)).toBe(true);
    const empty = new UnaryMessageReader(new BufferPool(), 1 << 20);
    empty.push(frame(Buffer.alloc(0)));
    expect(empty.message()!.length).toBe(0);
  });

  it('refuses what grpc-js refuses, with its status and wording', () => {
    const msg = request(0);
    const over = new UnaryMessageReader(new BufferPool(), msg.length - 1);
    expect(over.push(frame(msg))).toBe(false);
    expect(over.fault).toEqual({
      code: 'RESOURCE_EXHAUSTED',
      details: `Received message larger than max (${msg.length} vs ${msg.length - 1})`,
    });
    const compressed = new UnaryMessageReader(new BufferPool(), 1 << 20);
    expect(compressed.push(frame(msg, 1))).toBe(false);
    expect(compressed.fault?.code).toBe('INTERNAL');
    const two = new UnaryMessageReader(new BufferPool(), 1 << 20);
    expect(two.push(Buffer.concat([frame(msg), frame(msg)]))).toBe(false);
    expect(two.fault).toEqual({
      code: 'UNIMPLEMENTED',
      details: 'Received a second request message for the unary method ModelInfer',
    });
    const none = new UnaryMessageReader(new BufferPool(), 1 << 20);
    expect(none.message()).toBeUndefined();
    expect(none.fault?.code).toBe('UNIMPLEMENTED');
    const cut = new UnaryMessageReader(new BufferPool(), 1 << 20);
    expect(cut.push(frame(msg).subarray(0, 20))).toBe(true);
    expect(cut.message()).toBeUndefined();
    expect(cut.fault).toEqual({
      code: 'INTERNAL',
      details: `Received 15 of the ${msg.length} bytes of a request message`,
    });
  });
});

describe('encodeInferResponseFrame', () => {
  it('frames what protobufjs encodes for the same response, raw outputs included', () => {
    const y = new Float32Array([0.5, -1, 2, 1e-7]);
    const mask = new Uint8Array(70_000).map((_, i) => i % 3);
    const result: InferResult = {
      model: { name: 'blaze', version: '1' },
      id: 'q7',
      outputs: [
        { name: 'y', binary: true, tensor: { dtype: 'float32', dims: [1, 4], data: y } },
        { name: 'mask', binary: true, tensor: { dtype: 'uint8', dims: [70_000], data: mask } },
        {
          name: 'shm',
          binary: true,
          tensor: { dtype: 'float32', dims: [1, 4], data: y },
          sharedMemory: { region: 'io', offset: 16, byteSize: 16 },
        },
      ],
    };
    const pool = new BufferPool();
    const { frame: f, slab } = encodeInferResponseFrame(result, pool);
    expect(f[0]).toBe(0);
    expect(f.readUInt32BE(1)).toBe(f.length - FRAME_HEADER_BYTES);
    const reference = messageType('inference.ModelInferResponse').encode(grpcInferResponse(result)).finish();
    expect(Buffer.from(f.subarray(FRAME_HEADER_BYTES)).equals(Buffer.from(reference))).toBe(true);
    const decoded = ModelInfer.responseDeserialize(f.subarray(FRAME_HEADER_BYTES)) as Message;
    expect(decoded.id).toBe('q7');
    expect(decoded.outputs[1].shape.map(toInt)).toEqual([70_000]);
    expect(Buffer.from(decoded.raw_output_contents[1]).equals(Buffer.from(mask))).toBe(true);
    expect(decoded.raw_output_contents[2]).toHaveLength(0);
    pool.give(slab);
    expect(pool.idleBytes).toBe(slab.length);
  });
});

describe('status and deadline headers', () => {
  it('percent-encodes grpc-message as gRPC decoders (and grpc-js) read it', () => {
    const details = 'Unknown model: "é" 100%\nnext';
    const encoded = encodeGrpcMessage(details);
    expect(encoded).toBe('Unknown model: "%C3%A9" 100%25%0Anext');
    expect(decodeURI(encoded)).toBe(details);
  });

  it('reads grpc-timeout in each unit', () => {
    expect(grpcTimeoutMs('100m')).toBe(100);
    expect(grpcTimeoutMs('5S')).toBe(5000);
    expect(grpcTimeoutMs('2M')).toBe(120_000);
    expect(grpcTimeoutMs('1H')).toBe(3_600_000);
    expect(grpcTimeoutMs('2000u')).toBe(2);
    expect(grpcTimeoutMs('3000000n')).toBe(3);
    expect(grpcTimeoutMs(undefined)).toBeUndefined();
    expect(grpcTimeoutMs('soon')).toBeUndefined();
    expect(grpcTimeoutMs('123456789m')).toBeUndefined(); // at most 8 digits
  });
});
