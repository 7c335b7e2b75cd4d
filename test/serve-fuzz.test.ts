/**
 * Property-based fuzzing of the inference protocol (fast-check): the parser on its own over arbitrary JSON
 * and binary bodies, and whole requests through the server (Fastify's inject, no sockets). No 500, no crash,
 * no hang: every failure is a typed client error, every answer a 2xx or a 4xx with Triton's error JSON.
 */
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { YqpError } from '../src/errors.js';
import { statusOf } from '../src/serve/http-status.js';
import { parseInferRequest } from '../src/serve/protocol.js';
import { InferenceServer } from '../src/serve/server.js';
import { tempRepo, writeTiny } from './serve-fixtures.js';

const DATATYPES = ['BOOL', 'UINT8', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES', 'X'];

/** Requests near the protocol's shape, so the fuzzer reaches deep into the parser, plus anything at all. */
const input = fc.record(
  {
    name: fc.oneof(fc.constant('x'), fc.string()),
    datatype: fc.oneof(fc.constantFrom(...DATATYPES), fc.anything()),
    shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 10 }), { maxLength: 4 }), fc.anything()),
    data: fc.oneof(
      fc.array(fc.oneof(fc.double(), fc.integer(), fc.boolean(), fc.string()), { maxLength: 40 }),
      fc.array(fc.array(fc.double(), { maxLength: 4 }), { maxLength: 10 }),
      fc.anything(),
    ),
    parameters: fc.oneof(
      fc.record(
        {
          binary_data_size: fc.oneof(fc.nat(64), fc.anything()),
          shared_memory_region: fc.string(),
          shared_memory_byte_size: fc.oneof(fc.nat(), fc.anything()),
          shared_memory_offset: fc.anything(),
        },
        { requiredKeys: [] },
      ),
      fc.anything(),
    ),
  },
  { requiredKeys: ['name'] },
);
const request = fc.record(
  {
    id: fc.oneof(fc.string(), fc.anything()),
    inputs: fc.oneof(fc.array(input, { maxLength: 3 }), fc.anything()),
    outputs: fc.oneof(
      fc.array(fc.record({ name: fc.string(), parameters: fc.anything() }), { maxLength: 2 }),
      fc.anything(),
    ),
    parameters: fc.oneof(
      fc.record({ binary_data_output: fc.boolean(), timeout: fc.anything() }),
      fc.anything(),
    ),
  },
  { requiredKeys: [] },
);
/** A body: JSON of such a request, optionally with binary bytes after it and a header length that may lie. */
const body = fc.oneof(
  request.map((r) => ({
    body: Buffer.from(JSON.stringify(r) ?? ''),
    length: undefined as string | undefined,
  })),
  fc
    .tuple(
      request,
      fc.uint8Array({ maxLength: 256 }),
      fc.oneof(fc.constant(0), fc.integer({ min: -3, max: 300 })),
    )
    .map(([r, bytes, lie]) => {
      const head = Buffer.from(JSON.stringify(r) ?? '');
      return { body: Buffer.concat([head, bytes]), length: String(head.length + lie) };
    }),
  fc.tuple(fc.uint8Array({ maxLength: 512 }), fc.option(fc.string({ maxLength: 8 }))).map(([b, l]) => ({
    body: Buffer.from(b),
    length: l ?? undefined,
  })),
);

describe('the protocol parser under fuzzing', () => {
  it('parses or refuses with a typed 4xx error, never anything else', () => {
    fc.assert(
      fc.property(body, ({ body, length }) => {
        try {
          parseInferRequest(body, length);
        } catch (e) {
          expect(e).toBeInstanceOf(YqpError);
          const status = statusOf(e);
          expect(status).toBeGreaterThanOrEqual(400);
          expect(status).toBeLessThan(500);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('whole requests under fuzzing', () => {
  let repo: string;
  let server: InferenceServer;
  beforeAll(async () => {
    repo = tempRepo('yqp-serve-fuzz-');
    await writeTiny(repo);
    server = await InferenceServer.create({ modelRepository: repo, port: 0, loadOptions: { warmup: false } });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(repo, { recursive: true, force: true });
  });

  it('answers 2xx or 4xx with error JSON, each within a second', async () => {
    await fc.assert(
      fc.asyncProperty(body, async ({ body, length }) => {
        const t = performance.now();
        const r = await server.app.inject({
          method: 'POST',
          url: '/v2/models/tiny/infer',
          payload: body,
          headers: {
            'content-type': 'application/octet-stream',
            ...(length !== undefined ? { 'inference-header-content-length': length } : {}),
          },
        });
        expect(performance.now() - t).toBeLessThan(1000);
        expect(r.statusCode, r.body).toBeLessThan(500);
        if (r.statusCode >= 400)
          expect(typeof (JSON.parse(r.body) as { error: unknown }).error).toBe('string');
      }),
      { numRuns: 400 },
    );
    // Still serving.
    const ok = await server.app.inject({
      method: 'POST',
      url: '/v2/models/tiny/infer',
      payload: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] },
    });
    expect(ok.statusCode).toBe(200);
  }, 120_000);
});
