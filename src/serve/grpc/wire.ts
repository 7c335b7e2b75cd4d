/**
 * gRPC's wire format where the ModelInfer hot path speaks it itself (src/serve/grpc/unary-infer.ts): the 5-byte
 * message frame, a request message read into a pooled slab with its first raw input 8-byte aligned (typed arrays
 * over it need no copy), a ModelInferResponse written with its raw outputs straight into one pooled slab, and the
 * status headers (grpc-status, percent-encoded grpc-message).
 */
import type { BufferPool } from '../buffer-pool.js';
import type { InferResult } from '../endpoint.js';
import { grpcInferResponse } from './infer-messages.js';
import { messageType, type Message } from './service.js';

/** Compressed flag (1 byte) and big-endian message length (4 bytes) before every message. */
export const FRAME_HEADER_BYTES = 5;

/** ModelInferRequest.raw_input_contents and ModelInferResponse.raw_output_contents (.proto field numbers). */
const RAW_INPUT_FIELD = 7;
const RAW_OUTPUT_TAG = (6 << 3) | 2;

/** Bytes a varint of `n` takes. */
function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    bytes++;
  }
  return bytes;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** A varint at `pos` of `buf` and the position after it; undefined where `buf` ends first. */
function readVarint(buf: Uint8Array, pos: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10 && pos < buf.length; i++) {
    const b = buf[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  return undefined;
}

/**
 * Where the first raw_input_contents entry's bytes start in a ModelInferRequest, scanning its top-level fields in
 * `prefix` (the message's first bytes); -1 where it is not within them (typed contents, or an odd field order).
 */
export function firstRawInputOffset(prefix: Uint8Array): number {
  let pos = 0;
  while (pos < prefix.length) {
    const tag = readVarint(prefix, pos);
    if (!tag) return -1;
    pos = tag[1];
    const field = Math.floor(tag[0] / 8);
    const wire = tag[0] & 7;
    if (wire === 0) {
      const v = readVarint(prefix, pos);
      if (!v) return -1;
      pos = v[1];
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = readVarint(prefix, pos);
      if (!len) return -1;
      if (field === RAW_INPUT_FIELD) return len[1];
      pos = len[1] + len[0];
    } else return -1;
  }
  return -1;
}

let responseType: ReturnType<typeof messageType> | undefined;

/** Why a request message cannot be read (the status grpc-js answers with in the same case). */
export interface FrameFault {
  code: 'RESOURCE_EXHAUSTED' | 'INTERNAL' | 'UNIMPLEMENTED';
  details: string;
}

/** How much of a message is gathered before its first raw input is looked for (the fields before it are small). */
const SCAN_BYTES = 4096;

/**
 * One unary call's request message from its DATA chunks: the frame header, then the message copied once into a
 * pooled slab, at a shift that puts its first raw input on an 8-byte boundary. `message()` is its bytes once the
 * stream has ended; the slab goes back with `release()`, once nothing reads the decoded request any more.
 */
export class UnaryMessageReader {
  private header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerHave = 0;
  private size = -1;
  /** Chunks held until SCAN_BYTES (or the whole message) are in, to choose the shift. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private slab?: Buffer;
  private shift = 0;
  private have = 0;
  fault?: FrameFault;

  constructor(
    private readonly pool: BufferPool,
    private readonly maxBytes: number,
  ) {}

  /** Takes one DATA chunk; false once the request is refused (then `fault` says why). */
  push(chunk: Buffer): boolean {
    if (this.fault) return false;
    let pos = 0;
    while (pos < chunk.length) {
      if (this.size >= 0 && this.have + this.pendingBytes >= this.size) {
        this.fault = {
          code: 'UNIMPLEMENTED',
          details: 'Received a second request message for the unary method ModelInfer',
        };
        return false;
      }
      if (this.headerHave < FRAME_HEADER_BYTES) {
        const n = Math.min(FRAME_HEADER_BYTES - this.headerHave, chunk.length - pos);
        chunk.copy(this.header, this.headerHave, pos, pos + n);
        this.headerHave += n;
        pos += n;
        if (this.headerHave === FRAME_HEADER_BYTES && !this.startMessage()) return false;
        continue;
      }
      const n = Math.min(this.size - this.have - this.pendingBytes, chunk.length - pos);
      this.take(chunk.subarray(pos, pos + n));
      pos += n;
    }
    return true;
  }

  private startMessage(): boolean {
    if (this.header[0] !== 0) {
      this.fault = {
        code: 'INTERNAL',
        details: 'Received compressed message but "grpc-encoding" header was identity',
      };
      return false;
    }
    this.size = this.header.readUInt32BE(1);
    if (this.size > this.maxBytes) {
      this.fault = {
        code: 'RESOURCE_EXHAUSTED',
        details: `Received message larger than max (${this.size} vs ${this.maxBytes})`,
      };
      return false;
    }
    return true;
  }

  private take(bytes: Buffer): void {
    if (this.slab) {
      bytes.copy(this.slab, this.shift + this.have);
      this.have += bytes.length;
      return;
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= Math.min(SCAN_BYTES, this.size)) this.place();
  }

  /** Chooses the shift from the message's first bytes and copies what is held into the slab. */
  private place(): void {
    const first = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    const offset = firstRawInputOffset(first.subarray(0, SCAN_BYTES));
    this.shift = offset < 0 ? 0 : (8 - (offset % 8)) % 8;
    this.slab = this.pool.take(this.size + this.shift);
    first.copy(this.slab, this.shift);
    this.have = first.length;
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** The message, once the stream has ended; undefined (with `fault` set) where none or only part of one came. */
  message(): Buffer | undefined {
    if (this.fault) return undefined;
    if (this.size < 0 || this.have + this.pendingBytes < this.size) {
      this.fault = {
        code: this.size < 0 ? 'UNIMPLEMENTED' : 'INTERNAL',
        details:
          this.size < 0
            ? 'Received no request message for the unary method ModelInfer'
            : `Received ${this.have + this.pendingBytes} of the ${this.size} bytes of a request message`,
      };
      return undefined;
    }
    if (!this.slab) this.place(); // an empty message
    return this.slab!.subarray(this.shift, this.shift + this.size);
  }

  release(): void {
    if (this.slab) this.pool.give(this.slab);
    this.slab = undefined;
  }
}

/**
 * A ModelInferResponse as one gRPC message frame: the fields before raw_output_contents encoded by protobufjs
 * (names, shapes: small), each output's bytes then copied once into the same pooled slab. Returns the frame and the
 * slab to give back once the frame is written.
 */
export function encodeInferResponseFrame(
  result: InferResult,
  pool: BufferPool,
): { frame: Buffer; slab: Buffer } {
  const message: Message = grpcInferResponse(result);
  const raw = message.raw_output_contents as Buffer[];
  message.raw_output_contents = [];
  responseType ??= messageType('inference.ModelInferResponse');
  const head = responseType.encode(message).finish();
  let size = head.length;
  for (const r of raw) size += 1 + varintBytes(r.length) + r.length;
  const slab = pool.take(FRAME_HEADER_BYTES + size);
  slab[0] = 0;
  slab.writeUInt32BE(size, 1);
  slab.set(head, FRAME_HEADER_BYTES);
  let pos = FRAME_HEADER_BYTES + head.length;
  for (const r of raw) {
    slab[pos++] = RAW_OUTPUT_TAG;
    pos = writeVarint(slab, pos, r.length);
    slab.set(r, pos);
    pos += r.length;
  }
  return { frame: slab.subarray(0, pos), slab };
}

/**
 * grpc-message's percent-encoding (the gRPC HTTP/2 protocol): bytes outside printable ASCII, and '%' itself, as
 * %XX of their UTF-8.
 */
export function encodeGrpcMessage(details: string): string {
  let out = '';
  for (const b of Buffer.from(details, 'utf8'))
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3600e3, M: 60e3, S: 1e3, m: 1, u: 1e-3, n: 1e-6 };

/** A grpc-timeout header ("100m", "5S") in ms; undefined where absent or malformed. */
export function grpcTimeoutMs(header: string | string[] | undefined): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(String(header ?? ''));
  return m ? Number(m[1]) * TIMEOUT_UNITS[m[2]] : undefined;
}
