/** gRPC clients for the tests: grpc-js with every RPC of the service, and raw HTTP/2 calls for hand-made frames. */
import http2 from 'node:http2';
import {
  Metadata,
  credentials,
  makeGenericClientConstructor,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { inferenceService, type Message } from '../src/serve/grpc/service.js';

export type Rpc = (request: Message, metadata?: Metadata) => Promise<Message>;

export function connect(
  address: string,
  options: Record<string, unknown> = {},
): { rpc: Record<string, Rpc>; client: Client } {
  const Ctor = makeGenericClientConstructor(inferenceService(), 'GRPCInferenceService');
  const client = new Ctor(address, credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
    ...options,
  });
  const rpc: Record<string, Rpc> = {};
  for (const name of Object.keys(inferenceService()))
    rpc[name] = (request, metadata = new Metadata()) =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, Function>)[name](
          request,
          metadata,
          (e: Error | null, res: Message) => (e ? reject(e) : resolve(res)),
        ),
      );
  return { rpc, client };
}

export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error('expected the call to fail');
}

/** Metadata with `authorization: Bearer <token>`. */
export function bearer(token: string): Metadata {
  const m = new Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
}

export const faceInput = (batch: number) =>
  new Float32Array(batch * 128 * 128 * 3).map((_, i) => Math.sin(i * 0.001 + batch));

export const rawRequest = (model: string, batch: number, extra: Message = {}) => {
  const x = faceInput(batch);
  return {
    model_name: model,
    inputs: [{ name: 'input:0', datatype: 'FP32', shape: [batch, 128, 128, 3] }],
    raw_input_contents: [Buffer.from(x.buffer)],
    ...extra,
  };
};

/** A gRPC message frame: uncompressed flag (or `flag`), big-endian length, the message. */
export function grpcFrame(message: Uint8Array, flag = 0): Buffer {
  const f = Buffer.alloc(5 + message.length);
  f[0] = flag;
  f.writeUInt32BE(message.length, 1);
  f.set(message, 5);
  return f;
}

export interface RawAnswer {
  code: number;
  details: string;
  headers: http2.IncomingHttpHeaders;
  data: Buffer;
}

/** One call over a fresh HTTP/2 connection with `body` as sent (frames as the test makes them). */
export async function rawCall(
  address: string,
  path: string,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<RawAnswer> {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      });
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const data: Buffer[] = [];
      stream.on('response', (h) => (head = h));
      stream.on('trailers', (t) => (trailers = t));
      stream.on('data', (c: Buffer) => data.push(c));
      stream.on('error', () => {}); // the answer (or its absence) is read on 'close'
      stream.on('close', () => {
        const all = { ...head, ...trailers };
        if (all['grpc-status'] === undefined)
          return reject(new Error(`no grpc-status (stream closed with ${stream.rstCode})`));
        resolve({
          code: Number(all['grpc-status']),
          details: decodeURI(String(all['grpc-message'] ?? '')),
          headers: all,
          data: Buffer.concat(data),
        });
      });
      stream.end(body);
    });
  } finally {
    session.close();
  }
}
