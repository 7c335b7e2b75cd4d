/**
 * The load generator's gRPC client: ModelInfer with raw_input_contents (what Triton's clients send), the request
 * encoded and framed once, answers taken as bytes (decoded only with `verify`), over several HTTP/2 connections.
 * ModelInfer goes straight over node:http2 (a stream per call, as any gRPC client sends it): grpc-js's client
 * spent twice the HTTP client's CPU per request (BENCHMARKS.md, issue 14), and on a machine the load generator
 * shares with the server that CPU is taken from the server.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { Metadata, credentials, makeGenericClientConstructor, status, type Client } from '@grpc/grpc-js';
import { YqpError } from '../errors.js';
import { bytesOfTyped, DATATYPE_TO_DTYPE, DTYPE_TO_DATATYPE } from '../serve/tensor-codec.js';
import { inferenceService, toInt, type Message } from '../serve/grpc/service.js';
import type { DType, TensorMap } from '../tensor.js';
import type { BenchClient } from './client.js';

export interface GrpcClientOptions {
  /** host:port, or grpc://host:port. */
  address: string;
  model: string;
  version?: string;
  feeds: TensorMap;
  /** HTTP/2 connections the calls are spread over (each carries many calls at once). */
  connections: number;
  authToken?: string;
  verify?: boolean;
}

/** grpc://host:port or host:port as grpc-js's target. */
export function grpcTarget(address: string): string {
  const m = /^(?:grpc:\/\/)?([^/]+?)\/?$/.exec(address);
  if (!m)
    throw new YqpError(
      'E_ARGUMENT',
      `Expected host:port or grpc://host:port for the target but received ${JSON.stringify(address)}`,
      {
        argument: 'target',
      },
    );
  return m[1];
}

type Unary = (req: unknown, meta: unknown, cb: (e: Error | null, res: unknown) => void) => void;

/** Past HTTP/2's 64 KiB default windows: a tensor goes out, and its answer comes in, without waiting for acks. */
const FLOW_WINDOW = 16 * 1024 * 1024;
const MODEL_INFER_PATH = '/inference.GRPCInferenceService/ModelInfer';

/** One HTTP/2 connection, opened again when it closes (as a channel reconnects). */
function openSession(target: string): Promise<http2.ClientHttp2Session> {
  const url = new URL(`http://${target}`);
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, {
      settings: { initialWindowSize: FLOW_WINDOW },
      // Nagle's algorithm would hold a request's last segment for the server's delayed ACK.
      createConnection: () =>
        net.connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port), noDelay: true }),
    });
    session.once('connect', () => {
      session.setLocalWindowSize(FLOW_WINDOW);
      session.off('error', reject);
      session.on('error', () => {}); // a failed connection fails its calls ('close' below)
      resolve(session);
    });
    session.once('error', reject);
  });
}

/** A gRPC call's error from its status trailers (or headers, for a trailers-only answer). */
function callError(headers: http2.IncomingHttpHeaders): YqpError | undefined {
  const code = Number(headers['grpc-status'] ?? status.UNKNOWN);
  if (code === status.OK) return undefined;
  const raw = headers['grpc-message'];
  const details = raw === undefined ? '' : decodeURIComponent(String(raw));
  return new YqpError('E_BACKEND', `gRPC ${status[code] ?? code}: ${details}`);
}

export class GrpcClient implements BenchClient {
  readonly description: string;
  private readonly target: string;
  private readonly sessions: (Promise<http2.ClientHttp2Session> | undefined)[];
  private next = 0;
  /** The request message with its gRPC frame header (uncompressed flag, big-endian length): written as is. */
  private readonly frame: Buffer;
  private readonly headers: http2.OutgoingHttpHeaders;

  constructor(private readonly options: GrpcClientOptions) {
    const target = grpcTarget(options.address);
    this.target = target;
    this.sessions = Array.from({ length: Math.max(1, options.connections) }, () => undefined);
    const request = {
      model_name: options.model,
      model_version: options.version ?? '',
      inputs: Object.entries(options.feeds).map(([name, t]) => ({
        name,
        datatype: DTYPE_TO_DATATYPE[t.dtype],
        shape: t.dims,
      })),
      raw_input_contents: Object.values(options.feeds).map((t) => bytesOfTyped(t.data)),
    };
    const body = inferenceService().ModelInfer.requestSerialize(request) as Buffer;
    this.frame = Buffer.alloc(5 + body.length);
    this.frame.writeUInt32BE(body.length, 1);
    body.copy(this.frame, 5);
    this.headers = {
      ':method': 'POST',
      ':path': MODEL_INFER_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...(options.authToken ? { authorization: `Bearer ${options.authToken}` } : {}),
    };
    this.description = `gRPC ${target} ${options.model}`;
  }

  private session(): Promise<http2.ClientHttp2Session> {
    const i = this.next++ % this.sessions.length;
    let s = this.sessions[i];
    if (!s) {
      s = openSession(this.target);
      this.sessions[i] = s;
      const forget = () => {
        if (this.sessions[i] === s) this.sessions[i] = undefined;
      };
      s.then((session) => session.once('close', forget), forget);
    }
    return s;
  }

  async infer(): Promise<void> {
    const session = await this.session().catch((e: Error) => {
      throw new YqpError('E_BACKEND', `gRPC UNAVAILABLE: ${e.message}`);
    });
    return new Promise((resolve, reject) => {
      const stream = session.request(this.headers);
      const chunks: Buffer[] = [];
      let answer: http2.IncomingHttpHeaders | undefined;
      stream.on('response', (h) => {
        if (h['grpc-status'] !== undefined) answer = h; // trailers-only: an error before any message
      });
      stream.on('trailers', (t) => (answer = t));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', () => {}); // answered on 'close' below
      stream.once('close', () => {
        if (!answer) {
          reject(new YqpError('E_BACKEND', `gRPC UNAVAILABLE: stream closed (code ${stream.rstCode})`));
          return;
        }
        const e = callError(answer);
        if (e) return reject(e);
        if (this.options.verify) {
          const body = Buffer.concat(chunks);
          inferenceService().ModelInfer.responseDeserialize(body.subarray(5, 5 + body.readUInt32BE(1)));
        }
        resolve();
      });
      stream.end(this.frame);
    });
  }

  async close(): Promise<void> {
    const open = this.sessions.splice(0);
    await Promise.all(open.map((s) => s?.then((session) => session.close()).catch(() => {})));
  }
}

/** ModelMetadata over gRPC: the inputs a bench must fill. */
export async function fetchModelInputsGrpc(
  address: string,
  model: string,
  authToken?: string,
): Promise<{ name: string; dtype: DType; dims: number[] }[]> {
  const Ctor = makeGenericClientConstructor(
    { ModelMetadata: inferenceService().ModelMetadata },
    'GRPCInferenceService',
  );
  const client = new Ctor(grpcTarget(address), credentials.createInsecure()) as unknown as Client & {
    ModelMetadata: Unary;
  };
  const meta = new Metadata();
  if (authToken) meta.set('authorization', `Bearer ${authToken}`);
  try {
    const res = await new Promise<Message>((resolve, reject) =>
      client.ModelMetadata({ name: model }, meta, (e, r) => (e ? reject(e) : resolve(r as Message))),
    ).catch((e: Error & { details?: string }) => {
      throw new YqpError('E_NOT_FOUND', `Model ${model} at ${address}: ${e.details ?? e.message}`, {
        argument: 'model',
      });
    });
    return (res.inputs as Message[]).map((i) => {
      const dtype = DATATYPE_TO_DTYPE[i.datatype];
      if (!dtype)
        throw new YqpError(
          'E_DTYPE',
          `Input ${i.name} has datatype ${i.datatype}, which bench cannot synthesize`,
          {
            argument: i.name,
          },
        );
      return { name: i.name, dtype, dims: (i.shape as unknown[]).map(toInt) };
    });
  } finally {
    client.close();
  }
}
