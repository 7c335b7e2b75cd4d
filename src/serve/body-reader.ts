/**
 * The HTTP layer's request body reader: bodies into pooled slabs (src/serve/buffer-pool.ts), against the body
 * limit and the Content-Length, as raw bytes whatever the content type.
 */
import type { FastifyRequest } from 'fastify';
import { YqpError, describeValue } from '../errors.js';
import type { BufferPool } from './buffer-pool.js';
import { scanJson, type JsonScanner } from './json-scan.js';

/** Set on a request whose JSON part was scanned against limits as it arrived. */
export const BODY_SCANNED = Symbol('yqp.bodyScanned');

/** Bytes of bodies held, all requests together; each request's share is given back once it is answered. */
export class BodyBudget {
  private used = 0;
  private readonly held = new WeakMap<object, number>();

  constructor(
    readonly cap: number,
    private readonly retryAfter: string,
  ) {}

  /** Adds `bytes` to the request's share; false (nothing added) when the cap would be passed. */
  reserve(req: object, bytes: number): boolean {
    if (this.used + bytes > this.cap) return false;
    this.used += bytes;
    this.held.set(req, (this.held.get(req) ?? 0) + bytes);
    return true;
  }

  /** Gives back the request's share (idempotent). */
  release(req: object): void {
    const n = this.held.get(req);
    if (n === undefined) return;
    this.held.delete(req);
    this.used -= n;
  }

  get inFlight(): number {
    return this.used;
  }

  full(): Error {
    return Object.assign(
      new Error(
        `The server holds ${this.cap} bytes of request bodies already (--max-inflight-body-bytes): retry later`,
      ),
      { statusCode: 503, retryAfter: this.retryAfter },
    );
  }
}

/** What readBody checks beyond the size: the bytes in flight, and the JSON part's depth and values. */
export interface BodyGuard {
  budget?: BodyBudget;
  scanner?: (req: FastifyRequest) => JsonScanner | undefined;
}

/** How many leading bytes of the body are JSON: the Inference-Header-Content-Length, else all of it. */
function jsonExtent(req: FastifyRequest): number {
  const h = req.headers['inference-header-content-length'];
  const v = Array.isArray(h) ? h[0] : h;
  return v !== undefined && /^[0-9]+$/.test(v) ? Number(v) : Infinity;
}

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
  guard: BodyGuard = {},
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
  // Bytes of every body in flight are capped together: past the cap the answer is 503 + Retry-After.
  const budget = guard.budget;
  if (budget && !budget.reserve(req, sized ? length : 0)) {
    payload.resume();
    done(budget.full());
    return;
  }
  // The JSON part (all of a JSON body, the header of a binary one) is scanned against limits as it arrives.
  const scanner = guard.scanner?.(req);
  const jsonBytes = jsonExtent(req);
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
    if (!sized && budget && !budget.reserve(req, chunk.length)) {
      fail(budget.full());
      return;
    }
    if (scanner && received < jsonBytes)
      try {
        scanner.push(chunk.subarray(0, Math.min(chunk.length, jsonBytes - received)));
      } catch (e) {
        fail(e as Error);
        return;
      }
    if (slab) chunk.copy(slab, received);
    else chunks.push(chunk);
    received += chunk.length;
  });
  payload.on('error', (e: Error) => fail(e));
  payload.on('end', () => {
    if (failed) return;
    if (scanner) (req as { [BODY_SCANNED]?: boolean })[BODY_SCANNED] = true;
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

/** Bodies of the control endpoints: empty or a JSON object (scanned with default limits unless read so). */
export function parseJsonBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (Buffer.isBuffer(body)) scanJson(body, { maxValues: 4096 });
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
