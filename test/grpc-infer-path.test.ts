/**
 * ModelInfer's own path on grpc-js's HTTP/2 streams (src/serve/grpc/unary-infer.ts) against what grpc-js answers:
 * the same bytes for a plain call and a compressed one (which grpc-js still serves), the token, hand-made frames
 * grpc-js refuses (two messages, none, a cut one, a compressed flag without an encoding, garbage, over the limit),
 * grpc-timeout, the error trailers, and the load generator's node:http2 client.
 */
import { rmSync } from 'node:fs';
import { status, type Client } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcClient } from '../src/bench/grpc-client.js';
import { GrpcServer } from '../src/serve/grpc/grpc-server.js';
import { inferenceService, toInt, type Message } from '../src/serve/grpc/service.js';
import { MODEL_INFER_PATH } from '../src/serve/grpc/unary-infer.js';
import { InferenceServer } from '../src/serve/server.js';
import { tempRepo, writeTiny } from './serve-fixtures.js';
import { writeBlaze } from './triton-fixtures.js';
import { bearer, connect, failure, grpcFrame, rawCall, rawRequest, type Rpc } from './grpc-helpers.js';

const TOKEN = 'hot-path';
const LIMIT = 1024 * 1024;
const auth = { authorization: `Bearer ${TOKEN}` };
const encode = (m: Message) => inferenceService().ModelInfer.requestSerialize(m) as Buffer;

let repo: string;
let server: InferenceServer;
let address: string;
let plain: { rpc: Record<string, Rpc>; client: Client };
let gzip: { rpc: Record<string, Rpc>; client: Client };

beforeAll(async () => {
  repo = tempRepo('yqp-grpc-path-');
  writeBlaze(repo);
  await writeTiny(repo, 'tiny');
  server = await InferenceServer.create({
    modelRepository: repo,
    port: 0,
    authToken: TOKEN,
    loadOptions: { threadsPerContext: 1 },
  });
  await server.listen();
  const grpc = new GrpcServer(server.endpoint, { port: 0, authToken: TOKEN, maxMessageBytes: LIMIT });
  server.attach(grpc);
  address = await grpc.listen();
  plain = connect(address);
  // grpc-encoding: gzip on every call: grpc-js serves those (this path takes identity only).
  gzip = connect(address, { 'grpc.default_compression_algorithm': 2 });
}, 120_000);

afterAll(async () => {
  plain?.client.close();
  gzip?.client.close();
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

describe('ModelInfer on its own path', () => {
  it('answers what grpc-js answers for the same request compressed', async () => {
    const request = rawRequest('blaze', 2, { id: 'same' });
    const a = await plain.rpc.ModelInfer(request, bearer(TOKEN));
    const b = await gzip.rpc.ModelInfer(request, bearer(TOKEN));
    expect(a.id).toBe('same');
    expect(a.outputs.map((o: Message) => [o.name, o.datatype, o.shape.map(toInt)])).toEqual(
      b.outputs.map((o: Message) => [o.name, o.datatype, o.shape.map(toInt)]),
    );
    expect(a.raw_output_contents).toHaveLength(4);
    for (let i = 0; i < 4; i++)
      expect(Buffer.from(a.raw_output_contents[i]).equals(Buffer.from(b.raw_output_contents[i]))).toBe(true);
    // Typed contents, and an output asked for, take the same path.
    const tiny = await plain.rpc.ModelInfer(
      {
        model_name: 'tiny',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
        outputs: [{ name: 'y' }],
      },
      bearer(TOKEN),
    );
    expect(Array.from(new Float32Array(Uint8Array.from(tiny.raw_output_contents[0]).buffer))).toEqual([
      2, 4, 6, 8,
    ]);
  });

  it('refuses a call without the token, or with another, before reading it', async () => {
    for (const metadata of [undefined, bearer('nope')]) {
      const e = await failure(plain.rpc.ModelInfer(rawRequest('blaze', 1), metadata));
      expect([e.code, e.details]).toEqual([status.UNAUTHENTICATED, expect.stringMatching(/bearer token/)]);
    }
  });

  it('answers errors with the status, the message and the yqp error code in the trailers', async () => {
    const r = await rawCall(address, MODEL_INFER_PATH, grpcFrame(encode(rawRequest('nope', 1))), auth);
    expect([r.code, r.details]).toEqual([status.NOT_FOUND, 'Unknown model: "nope"']);
    expect(r.headers['yqp-error-code']).toBe('E_NOT_FOUND');
    const e = await failure(plain.rpc.ModelInfer(rawRequest('nope', 1), bearer(TOKEN)));
    expect(e.metadata.get('yqp-error-code')).toEqual(['E_NOT_FOUND']);
  });

  it('refuses frames grpc-js refuses, with its statuses, and keeps serving', async () => {
    const msg = encode(rawRequest('blaze', 1));
    const cases: [Buffer, status, RegExp][] = [
      [Buffer.concat([grpcFrame(msg), grpcFrame(msg)]), status.UNIMPLEMENTED, /second request message/],
      [Buffer.alloc(0), status.UNIMPLEMENTED, /no request message/],
      [grpcFrame(msg).subarray(0, 1000), status.INTERNAL, /Received 995 of the \d+ bytes/],
      [grpcFrame(msg, 1), status.INTERNAL, /compressed message but "grpc-encoding" header was identity/],
      [grpcFrame(Buffer.from([0x0a, 0xff, 0xff, 0xff])), status.INTERNAL, /Error deserializing request/],
      [
        grpcFrame(encode({ ...rawRequest('blaze', 1), raw_input_contents: [Buffer.alloc(LIMIT + 1)] })),
        status.RESOURCE_EXHAUSTED,
        /Received message larger than max \(\d+ vs 1048576\)/,
      ],
    ];
    for (const [body, code, why] of cases) {
      const r = await rawCall(address, MODEL_INFER_PATH, body, auth);
      expect([r.code, r.details, why]).toEqual([code, expect.stringMatching(why), why]);
    }
    expect(
      (await plain.rpc.ModelInfer(rawRequest('blaze', 1), bearer(TOKEN))).raw_output_contents,
    ).toHaveLength(4);
  });

  it('answers DEADLINE_EXCEEDED once grpc-timeout has passed', async () => {
    // Five frames (under the 1 MiB limit) take longer than 1 ms on any CPU.
    const body = grpcFrame(encode(rawRequest('blaze', 5)));
    const r = await rawCall(address, MODEL_INFER_PATH, body, { ...auth, 'grpc-timeout': '1m' });
    expect([r.code, r.details]).toEqual([status.DEADLINE_EXCEEDED, 'Deadline exceeded']);
    const inTime = await rawCall(address, MODEL_INFER_PATH, grpcFrame(encode(rawRequest('blaze', 1))), {
      ...auth,
      'grpc-timeout': '60S',
    });
    expect(inTime.code).toBe(status.OK);
    const framed = inTime.data;
    const decoded = inferenceService().ModelInfer.responseDeserialize(
      framed.subarray(5, 5 + framed.readUInt32BE(1)),
    ) as Message;
    expect(decoded.raw_output_contents).toHaveLength(4);
  });
});

describe("the load generator's gRPC client", () => {
  it('infers over node:http2 (answers checked), and fails with the status and the reason', async () => {
    const feeds = {
      'input:0': { dtype: 'float32' as const, dims: [1, 128, 128, 3], data: new Float32Array(49152) },
    };
    const ok = new GrpcClient({
      address,
      model: 'blaze',
      feeds,
      connections: 2,
      authToken: TOKEN,
      verify: true,
    });
    try {
      await Promise.all(Array.from({ length: 6 }, () => ok.infer()));
    } finally {
      await ok.close();
    }
    const unknown = new GrpcClient({ address, model: 'nope', feeds, connections: 1, authToken: TOKEN });
    await expect(unknown.infer()).rejects.toThrow(/gRPC NOT_FOUND: Unknown model: "nope"/);
    await unknown.close();
    const anonymous = new GrpcClient({ address: `grpc://${address}`, model: 'blaze', feeds, connections: 1 });
    await expect(anonymous.infer()).rejects.toThrow(/gRPC UNAUTHENTICATED: Missing or wrong bearer token/);
    await anonymous.close();
    const nobody = new GrpcClient({ address: '127.0.0.1:1', model: 'blaze', feeds, connections: 1 });
    await expect(nobody.infer()).rejects.toThrow(/gRPC UNAVAILABLE: .*ECONNREFUSED/);
    await nobody.close();
  });
});
