/**
 * ModelInfer, the serving hot path, answered straight on the HTTP/2 streams of the server grpc-js listens with; every
 * other RPC (and a ModelInfer that is compressed) stays with grpc-js. Measured per request against HTTP binary
 * (BENCHMARKS.md, issue 14), grpc-js's call machinery and its fresh buffers (the request joined into one, the
 * response serialized and then framed into another) cost the event loop half again HTTP's CPU, a third of it in
 * GC. Here the request is read once into a pooled slab (its first raw input aligned, decoded without a copy) and
 * the response written once into another, with the same checks, statuses and messages as the grpc-js path.
 */
import type { ServerHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { status } from '@grpc/grpc-js';
import type { BufferPool } from '../buffer-pool.js';
import type { InferResult } from '../endpoint.js';
import { inferenceService, type Message } from './service.js';
import { grpcCodeOf } from './status.js';
import {
  UnaryMessageReader,
  encodeGrpcMessage,
  encodeInferResponseFrame,
  grpcTimeoutMs,
  type FrameFault,
} from './wire.js';

export const MODEL_INFER_PATH = '/inference.GRPCInferenceService/ModelInfer';

export interface UnaryInferHost {
  pool: BufferPool;
  maxMessageBytes: number;
  /** Why a call is refused before it is read (shutting down, no token), as for the calls grpc-js serves. */
  refusal(authorization: string | undefined): { code: status; details: string } | undefined;
  /** Runs the decoded request; `encode` makes the response from the endpoint's result. */
  infer<R>(
    request: Message,
    signal: AbortSignal,
    authorization: string | undefined,
    encode: (result: InferResult) => R,
  ): Promise<R>;
}

/** A call this path takes: ModelInfer, gRPC content, no message compression (grpc-js inflates those). */
export function takesStream(headers: IncomingHttpHeaders): boolean {
  if (headers[':path'] !== MODEL_INFER_PATH || headers[':method'] !== 'POST') return false;
  const type = headers['content-type'];
  if (typeof type !== 'string' || !type.startsWith('application/grpc')) return false;
  const encoding = headers['grpc-encoding'];
  return encoding === undefined || encoding === 'identity';
}

const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
};
const OK_TRAILERS = { 'grpc-status': String(status.OK), 'grpc-message': 'OK' };

/** A status without a message: trailers only, on the response headers (as gRPC answers a call that fails). */
function answerStatus(stream: ServerHttp2Stream, code: status, details: string, yqpCode?: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(code),
      'grpc-message': encodeGrpcMessage(details),
      ...(yqpCode ? { 'yqp-error-code': yqpCode } : {}),
    },
    { endStream: true },
  );
}

function answerFault(stream: ServerHttp2Stream, fault: FrameFault): void {
  answerStatus(stream, status[fault.code], fault.details);
}

/** Serves one ModelInfer stream (one that `takesStream` accepted). */
export function serveUnaryInfer(
  host: UnaryInferHost,
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
): void {
  // Errors come with a 'close' (handled below): nothing is left to answer on a broken stream.
  stream.on('error', () => {});
  const authorization = typeof headers.authorization === 'string' ? headers.authorization : undefined;
  const refused = host.refusal(authorization);
  if (refused) {
    answerStatus(stream, refused.code, refused.details);
    stream.resume();
    return;
  }
  const reader = new UnaryMessageReader(host.pool, host.maxMessageBytes);
  const abort = new AbortController();
  let answered = false;
  let running = false;
  const timeoutMs = grpcTimeoutMs(headers['grpc-timeout']);
  const deadline =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          answered = true;
          abort.abort();
          answerStatus(stream, status.DEADLINE_EXCEEDED, 'Deadline exceeded');
        }, timeoutMs);
  const finish = () => {
    if (deadline) clearTimeout(deadline);
  };
  stream.once('close', () => {
    finish();
    // A client gone before its answer drops its queued work; a running one still holds the slab until it settles.
    if (!answered) abort.abort();
    if (!running) reader.release();
  });
  stream.on('data', (chunk: Buffer) => {
    if (answered || reader.push(chunk)) return;
    answered = true;
    finish();
    answerFault(stream, reader.fault!);
    reader.release();
  });
  stream.once('end', () => {
    if (answered) return;
    const bytes = reader.message();
    if (!bytes) {
      answered = true;
      finish();
      answerFault(stream, reader.fault!);
      reader.release();
      return;
    }
    let request: Message;
    try {
      request = inferenceService().ModelInfer.requestDeserialize(bytes);
    } catch (e) {
      answered = true;
      finish();
      answerStatus(stream, status.INTERNAL, `Error deserializing request: ${(e as Error).message}`);
      reader.release();
      return;
    }
    running = true;
    host
      .infer(request, abort.signal, authorization, (result) => encodeInferResponseFrame(result, host.pool))
      .then(
        ({ frame, slab }) => {
          if (answered || stream.destroyed || stream.closed) {
            host.pool.give(slab);
            return;
          }
          answered = true;
          // The frame's slab goes back once the stream has closed: its bytes have left by then.
          stream.once('close', () => host.pool.give(slab));
          stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
          stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
          stream.end(frame);
        },
        (e: unknown) => {
          if (answered) return;
          answered = true;
          const yqpCode = (e as { code?: unknown }).code;
          answerStatus(
            stream,
            grpcCodeOf(e),
            e instanceof Error ? e.message : String(e),
            typeof yqpCode === 'string' ? yqpCode : undefined,
          );
        },
      )
      .finally(() => {
        finish();
        running = false;
        // Nothing reads the request's slab once its run has settled (a cancelled one never ran).
        reader.release();
      });
  });
}
