/**
 * The HTTP layer's request body reader: bodies into pooled slabs (src/serve/buffer-pool.ts), against the body
 * limit and the Content-Length, as raw bytes whatever the content type.
 */
import type { FastifyRequest } from 'fastify';
import { YqpError, describeValue } from '../errors.js';
import type { BufferPool } from './buffer-pool.js';

/** Where a request keeps the pooled slab its body was read into, to give it back once the request is done. */
export const BODY_SLAB = Symbol('yqp.bodySlab');

/**
 * Reads a request body into a pooled slab (Fastify's own reader concatenates into a fresh buffer per request).
 * With a Content-Length the bytes are copied once into place; without one (chunked) they are gathered and joined.
 * Over `limit` bytes is Fastify's 413 error, so the error handler words it as before.
 */
export function readBody(
  req: FastifyRequest,
  payload: NodeJS.ReadableStream,
  limit: number,
  pool: BufferPool,
  done: (err: Error | null, body?: Buffer) => void,
): void {
  const tooLarge = () =>
    Object.assign(new Error('Request body is too large'), {
      code: 'FST_ERR_CTP_BODY_TOO_LARGE',
      statusCode: 413,
    });
  const declared = req.headers['content-length'];
  const length = declared === undefined ? undefined : Number(declared);
  if (length !== undefined && length > limit) {
    payload.resume();
    done(tooLarge());
    return;
  }
  const sized = length !== undefined && Number.isSafeInteger(length) && length >= 0;
  const slab = sized ? pool.take(length) : undefined;
  const chunks: Buffer[] = [];
  let received = 0;
  let failed = false;
  const fail = (e: Error) => {
    if (failed) return;
    failed = true;
    if (slab) pool.give(slab);
    done(e);
  };
  payload.on('data', (chunk: Buffer) => {
    if (failed) return;
    if (received + chunk.length > (sized ? length : limit)) {
      fail(
        !sized
          ? tooLarge()
          : Object.assign(new Error(`Request body is longer than its Content-Length of ${length} bytes`), {
              statusCode: 400,
            }),
      );
      return;
    }
    if (slab) chunk.copy(slab, received);
    else chunks.push(chunk);
    received += chunk.length;
  });
  payload.on('error', (e: Error) => fail(e));
  payload.on('end', () => {
    if (failed) return;
    if (!slab) {
      done(null, Buffer.concat(chunks, received));
      return;
    }
    if (received !== length) {
      fail(
        Object.assign(new Error(`Request body ended after ${received} of its ${length} bytes`), {
          statusCode: 400,
        }),
      );
      return;
    }
    (req as { [BODY_SLAB]?: Buffer })[BODY_SLAB] = slab;
    done(null, slab.subarray(0, received));
  });
}

/** Bodies of the control endpoints: empty or a JSON object. */
export function parseJsonBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : String(body);
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new YqpError('E_ARGUMENT', `Malformed JSON in the request body: ${(e as Error).message}`, {
      argument: 'body',
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a JSON object as the request body but received ${describeValue(parsed)}`,
      {
        argument: 'body',
      },
    );
  return parsed as Record<string, unknown>;
}
