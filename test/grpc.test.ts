/**
 * The gRPC transport from a grpc-js client: every RPC of inference.GRPCInferenceService we serve, on a Triton-layout
 * repository (served as written) and config.json entries, and the hostile-client cases over gRPC.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, status, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeInferRequest, parseInferResponse } from '../src/serve/client-codec.js';
import { GrpcServer } from '../src/serve/grpc/grpc-server.js';
import { toInt, type Message } from '../src/serve/grpc/service.js';
import { InferenceServer } from '../src/serve/server.js';
import { MEDIA_DIR } from './helpers/data.js';
import { tempRepo, writeBlazeFace, writeBroken, writeTiny } from './serve-fixtures.js';
import { writeBlaze } from './triton-fixtures.js';
import { connect, failure, faceInput, rawRequest, type Rpc } from './grpc-helpers.js';

const floats = (b: Uint8Array) => Array.from(new Float32Array(Uint8Array.from(b).buffer));

let repo: string;
let server: InferenceServer;
let grpc: GrpcServer;
let rpc: Record<string, Rpc>;
let client: Client;
let httpUrl: string;
const LIMIT = 8 * 1024 * 1024;

beforeAll(async () => {
  repo = tempRepo('yqp-grpc-');
  writeBlaze(repo);
  await writeBlazeFace(repo, 'face');
  await writeTiny(repo, 'tiny');
  writeBroken(repo);
  server = await InferenceServer.create({
    modelRepository: repo,
    port: 0,
    loadOptions: { threadsPerContext: 1 },
    // Shared memory is opt-in since the hostile-clients fixes (#13).
    sharedMemory: ['system', 'cuda'],
  });
  httpUrl = await server.listen();
  grpc = new GrpcServer(server.endpoint, { port: 0, maxMessageBytes: LIMIT });
  server.attach(grpc);
  ({ rpc, client } = connect(await grpc.listen()));
}, 120_000);

afterAll(async () => {
  client?.close();
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

describe('gRPC: server and model RPCs', () => {
  it('answers ServerLive, ServerReady, ServerMetadata', async () => {
    expect(await rpc.ServerLive({})).toEqual({ live: true });
    expect(await rpc.ServerReady({})).toEqual({ ready: true });
    const meta = await rpc.ServerMetadata({});
    expect(meta.name).toBe('yqp-trt');
    expect(meta.extensions).toEqual(
      expect.arrayContaining(['model_repository', 'statistics', 'system_shared_memory']),
    );
  });

  it('answers ModelReady: ready, broken and unknown models', async () => {
    expect((await rpc.ModelReady({ name: 'blaze' })).ready).toBe(true);
    expect((await rpc.ModelReady({ name: 'blaze', version: '1' })).ready).toBe(true);
    expect((await rpc.ModelReady({ name: 'broken' })).ready).toBeFalsy();
    expect((await rpc.ModelReady({ name: 'nope' })).ready).toBeFalsy();
  });

  it('answers ModelMetadata with the batch dimension as -1; NOT_FOUND for an unknown model', async () => {
    const m = await rpc.ModelMetadata({ name: 'blaze' });
    expect(m.platform).toBe('onnxruntime_onnx');
    expect(m.versions).toEqual(['1']);
    expect(m.inputs[0]).toMatchObject({ name: 'input:0', datatype: 'FP32' });
    expect(m.inputs[0].shape.map(toInt)).toEqual([-1, 128, 128, 3]);
    expect(m.outputs.map((o: Message) => o.name)).toEqual([
      'Identity:0',
      'Identity_1:0',
      'Identity_2:0',
      'Identity_3:0',
    ]);
    const e = await failure(rpc.ModelMetadata({ name: 'nope' }));
    expect(e.code).toBe(status.NOT_FOUND);
    expect(e.details).toMatch(/Unknown model: "nope"/);
    expect((await failure(rpc.ModelMetadata({ name: 'blaze', version: '7' }))).code).toBe(status.NOT_FOUND);
  });

  it("answers ModelConfig with Triton's configuration of both kinds of entry", async () => {
    const { config } = await rpc.ModelConfig({ name: 'blaze' });
    expect(config.name).toBe('blaze');
    expect(config.platform).toBe('onnxruntime_onnx');
    expect(config.max_batch_size).toBe(16);
    expect(config.input[0].dims.map(toInt)).toEqual([128, 128, 3]);
    expect(config.input[0].data_type).toBe(11); // TYPE_FP32 on the wire
    expect(config.output).toHaveLength(4);
    expect(config.dynamic_batching.preferred_batch_size).toEqual([4, 8]);
    expect(config.instance_group[0].count).toBe(2);
    const face = (await rpc.ModelConfig({ name: 'face' })).config;
    expect(face.max_batch_size).toBe(16);
    expect(face.output.map((o: Message) => o.name)).toEqual(config.output.map((o: Message) => o.name));
  });
});

describe('gRPC: inference', () => {
  it('runs raw_input_contents and answers raw_output_contents equal to the HTTP answer', async () => {
    const res = await rpc.ModelInfer(rawRequest('blaze', 2, { id: 'r1' }));
    expect(res.model_name).toBe('blaze');
    expect(res.model_version).toBe('1');
    expect(res.id).toBe('r1');
    expect(res.outputs.map((o: Message) => o.name)).toEqual([
      'Identity:0',
      'Identity_1:0',
      'Identity_2:0',
      'Identity_3:0',
    ]);
    expect(res.outputs[2].shape.map(toInt)).toEqual([2, 512, 16]);
    expect(res.raw_output_contents).toHaveLength(4);
    const { body, headerLength } = encodeInferRequest([
      { name: 'input:0', tensor: { dtype: 'float32', dims: [2, 128, 128, 3], data: faceInput(2) } },
    ]);
    const http = await fetch(`${httpUrl}/v2/models/blaze/infer`, {
      method: 'POST',
      body,
      headers: { 'Inference-Header-Content-Length': String(headerLength) },
    });
    const parsed = parseInferResponse(
      Buffer.from(await http.arrayBuffer()),
      Number(http.headers.get('inference-header-content-length')),
    );
    for (const [i, o] of (res.outputs as Message[]).entries())
      expect(floats(res.raw_output_contents[i])).toEqual(
        Array.from(parsed.outputs[o.name].data as Float32Array),
      );
  });

  it('runs typed contents, the outputs asked for, and encoded images as BYTES', async () => {
    const res = await rpc.ModelInfer({
      model_name: 'tiny',
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [2, 4], contents: { fp32_contents: [1, 2, 3, 4, 5, 6, 7, 8] } },
      ],
      outputs: [{ name: 'y' }],
    });
    expect(res.outputs[0].name).toBe('y');
    expect(floats(res.raw_output_contents[0])).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    const jpeg = readFileSync(join(MEDIA_DIR, 'franck_02159.jpg'));
    const faces = await rpc.ModelInfer({
      model_name: 'face',
      inputs: [
        { name: 'input:0', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [jpeg, jpeg] } },
      ],
    });
    expect(faces.outputs[0].shape.map(toInt)[0]).toBe(2);
  });

  it('streams: ModelStreamInfer answers every request on the stream, failures as error_message', async () => {
    const call = (
      client as unknown as { ModelStreamInfer(): ClientDuplexStream<Message, Message> }
    ).ModelStreamInfer();
    const answers: Message[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: Message) => answers.push(m));
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    for (let i = 0; i < 3; i++) call.write(rawRequest('blaze', 1, { id: `s${i}` }));
    call.write({ model_name: 'nope', id: 'bad', inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }] });
    call.end();
    await done;
    expect(answers).toHaveLength(4);
    const byId = Object.fromEntries(answers.map((a) => [a.infer_response.id, a]));
    for (let i = 0; i < 3; i++) {
      expect(byId[`s${i}`].error_message).toBe('');
      expect(byId[`s${i}`].infer_response.raw_output_contents).toHaveLength(4);
    }
    expect(byId.bad.error_message).toMatch(/Unknown model: "nope"/);
  });

  it('refuses hostile requests with the status and the reason, and keeps serving', async () => {
    const cases: [Message, status, RegExp][] = [
      [rawRequest('nope', 1), status.NOT_FOUND, /Unknown model: "nope"/],
      [rawRequest('broken', 1), status.UNAVAILABLE, /not ready/],
      [rawRequest('blaze', 17), status.INVALID_ARGUMENT, /fits no optimization profile/],
      [
        {
          ...rawRequest('blaze', 1),
          inputs: [{ name: 'input:0', datatype: 'FP32', shape: [1, 128, 128, 4] }],
        },
        status.INVALID_ARGUMENT,
        /needs 262144 bytes but received 196608/,
      ],
      [
        {
          ...rawRequest('blaze', 1),
          inputs: [{ name: 'input:0', datatype: 'FP32', shape: [1, 64, 128, 3] }],
          raw_input_contents: [Buffer.alloc(98304)],
        },
        status.INVALID_ARGUMENT,
        /expects shape \[-1,128,128,3\] but received \[1,64,128,3\]/,
      ],
      [
        { ...rawRequest('blaze', 1), inputs: [{ name: 'input:0', datatype: 'FP99', shape: [1] }] },
        status.INVALID_ARGUMENT,
        /Expected a datatype of/,
      ],
      [
        { ...rawRequest('blaze', 1), raw_input_contents: [Buffer.alloc(196608), Buffer.alloc(4)] },
        status.INVALID_ARGUMENT,
        /2 raw_input_contents but only 1 inputs take raw contents/,
      ],
      [{ model_name: 'blaze', inputs: [] }, status.INVALID_ARGUMENT, /at least one input/],
      [
        {
          model_name: 'tiny',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3] } }],
        },
        status.INVALID_ARGUMENT,
        /\(4 elements\) but its contents hold 3/,
      ],
      [
        {
          model_name: 'tiny',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { int_contents: [1, 2, 3, 4] } }],
        },
        status.INVALID_ARGUMENT,
        /carries int_contents, expected fp32_contents/,
      ],
      [
        {
          model_name: 'tiny',
          inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
        },
        status.INVALID_ARGUMENT,
        /must be sent in raw_input_contents/,
      ],
      [
        { ...rawRequest('blaze', 1), outputs: [{ name: 'nope' }] },
        status.INVALID_ARGUMENT,
        /Unknown output "nope"/,
      ],
      [
        { ...rawRequest('blaze', 1), parameters: { timeout: { string_param: 'soon' } } },
        status.INVALID_ARGUMENT,
        /parameters.timeout/,
      ],
    ];
    for (const [request, code, why] of cases) {
      const e = await failure(rpc.ModelInfer(request));
      expect([e.code, e.details, why]).toEqual([code, expect.stringMatching(why), why]);
    }
    // Over the message limit: grpc-js refuses it before it is decoded.
    const big = await failure(
      rpc.ModelInfer({ ...rawRequest('blaze', 1), raw_input_contents: [Buffer.alloc(LIMIT + 1)] }),
    );
    expect(big.code).toBe(status.RESOURCE_EXHAUSTED);
    expect((await rpc.ModelInfer(rawRequest('blaze', 1))).raw_output_contents).toHaveLength(4);
  });
});

describe('gRPC: statistics, repository, shared memory', () => {
  it('answers ModelStatistics per model and for all', async () => {
    const { model_stats } = await rpc.ModelStatistics({ name: 'blaze' });
    expect(model_stats).toHaveLength(1);
    expect(model_stats[0].name).toBe('blaze');
    expect(toInt(model_stats[0].inference_count)).toBeGreaterThanOrEqual(2);
    expect(toInt(model_stats[0].inference_stats.success.count)).toBeGreaterThanOrEqual(1);
    expect(toInt(model_stats[0].inference_stats.fail.count)).toBeGreaterThanOrEqual(1);
    expect((await rpc.ModelStatistics({})).model_stats.map((s: Message) => s.name).sort()).toEqual([
      'blaze',
      'face',
      'tiny',
    ]);
    expect((await failure(rpc.ModelStatistics({ name: 'nope' }))).code).toBe(status.NOT_FOUND);
  });

  it('answers RepositoryIndex, RepositoryModelUnload and RepositoryModelLoad', async () => {
    const { models } = await rpc.RepositoryIndex({});
    expect(models.find((m: Message) => m.name === 'broken')).toMatchObject({
      state: 'UNAVAILABLE',
      reason: expect.stringMatching(/Protobuf parsing failed/),
    });
    expect((await rpc.RepositoryIndex({ ready: true })).models.map((m: Message) => m.name)).toEqual([
      'blaze',
      'face',
      'tiny',
    ]);
    await rpc.RepositoryModelUnload({ model_name: 'tiny' });
    expect((await rpc.ModelReady({ name: 'tiny' })).ready).toBeFalsy();
    await rpc.RepositoryModelLoad({ model_name: 'tiny' });
    expect((await rpc.ModelReady({ name: 'tiny' })).ready).toBe(true);
    const e = await failure(
      rpc.RepositoryModelLoad({ model_name: 'tiny', parameters: { config: { string_param: '{}' } } }),
    );
    expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/override config/)]);
    expect((await failure(rpc.RepositoryModelLoad({ model_name: '../etc' }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
  });

  const shm = existsSync('/dev/shm');
  it.skipIf(!shm)(
    `registers system shared memory, infers through it, unregisters${shm ? '' : ' (skipped: no /dev/shm)'}`,
    async () => {
      const key = `/yqp-grpc-${process.pid}`;
      const file = `/dev/shm${key}`;
      writeFileSync(file, Buffer.alloc(64), { mode: 0o600 }); // owner-only, as the server requires
      try {
        writeFileSync(
          file,
          Buffer.concat([Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), Buffer.alloc(48)]),
        );
        await rpc.SystemSharedMemoryRegister({ name: 'io', key, offset: 0, byte_size: 64 });
        const st = await rpc.SystemSharedMemoryStatus({});
        expect(Object.keys(st.regions)).toEqual(['io']);
        expect(toInt(st.regions.io.byte_size)).toBe(64);
        const p = (s: string | number) => (typeof s === 'string' ? { string_param: s } : { int64_param: s });
        const res = await rpc.ModelInfer({
          model_name: 'tiny',
          inputs: [
            {
              name: 'x',
              datatype: 'FP32',
              shape: [1, 4],
              parameters: { shared_memory_region: p('io'), shared_memory_byte_size: p(16) },
            },
          ],
          outputs: [
            {
              name: 'y',
              parameters: {
                shared_memory_region: p('io'),
                shared_memory_byte_size: p(16),
                shared_memory_offset: p(32),
              },
            },
          ],
        });
        expect(res.outputs[0].parameters.shared_memory_region.string_param).toBe('io');
        expect(res.raw_output_contents[0]).toHaveLength(0);
        expect(floats(readFileSync(file).subarray(32, 48))).toEqual([2, 4, 6, 8]);
        const e = await failure(rpc.SystemSharedMemoryStatus({ name: 'other' }));
        expect(e.code).toBe(status.NOT_FOUND);
        await rpc.SystemSharedMemoryUnregister({});
        expect((await rpc.SystemSharedMemoryStatus({})).regions).toEqual({});
      } finally {
        rmSync(file, { force: true });
      }
    },
  );

  it('answers the CUDA shared-memory RPCs: status, and UNIMPLEMENTED with the reason where CUDA IPC is missing', async () => {
    expect((await rpc.CudaSharedMemoryStatus({})).regions).toEqual({});
    const e = await failure(
      rpc.CudaSharedMemoryRegister({ name: 'g', raw_handle: Buffer.alloc(64), device_id: 0, byte_size: 64 }),
    );
    if (server.cudaSharedMemoryUnavailable)
      expect([e.code, e.details]).toEqual([status.UNIMPLEMENTED, expect.any(String)]);
    else expect(e.code).not.toBe(status.OK);
    await rpc.CudaSharedMemoryUnregister({});
  });
});

describe('gRPC: token and drain', () => {
  it('requires the bearer token in the authorization metadata, except for ServerLive/ServerReady', async () => {
    const s = await InferenceServer.create({
      modelRepository: repo,
      models: ['tiny'],
      port: 0,
      authToken: 's3cret',
    });
    const g = new GrpcServer(s.endpoint, { port: 0, authToken: 's3cret' });
    s.attach(g);
    const c = connect(await g.listen());
    try {
      expect((await c.rpc.ServerLive({})).live).toBe(true);
      const e = await failure(c.rpc.ModelMetadata({ name: 'tiny' }));
      expect([e.code, e.details]).toEqual([status.UNAUTHENTICATED, expect.stringMatching(/bearer token/)]);
      const wrong = new Metadata();
      wrong.set('authorization', 'Bearer nope');
      expect((await failure(c.rpc.ModelMetadata({ name: 'tiny' }, wrong))).code).toBe(status.UNAUTHENTICATED);
      const right = new Metadata();
      right.set('authorization', 'Bearer s3cret');
      expect((await c.rpc.ModelMetadata({ name: 'tiny' }, right)).name).toBe('tiny');
    } finally {
      c.client.close();
      await s.close();
    }
  });

  it('drains: calls in flight are answered, the server then stops', async () => {
    const s = await InferenceServer.create({
      modelRepository: repo,
      models: ['blaze'],
      port: 0,
      loadOptions: { threadsPerContext: 1 },
    });
    const g = new GrpcServer(s.endpoint, { port: 0 });
    s.attach(g);
    const c = connect(await g.listen());
    try {
      expect((await c.rpc.ServerLive({})).live).toBe(true); // connected before the drain begins
      const inflight = Array.from({ length: 8 }, () => c.rpc.ModelInfer(rawRequest('blaze', 16)));
      // Drain while the server holds calls (received, queued or running): on a loaded machine the eight may never
      // all be held at once (the first batches finish while the last arrive), so the drain starts at the first.
      const held = async () => (await s.metrics.inFlight.get()).values.reduce((n, v) => n + v.value, 0);
      for (let i = 0; i < 2500 && (await held()) < 1; i++) await new Promise((r) => setTimeout(r, 2));
      const heldAtClose = await held();
      const closed = s.close();
      expect(heldAtClose).toBeGreaterThan(0);
      const answers = await Promise.allSettled(inflight);
      await closed;
      expect(answers.map((a) => a.status)).toEqual(Array(8).fill('fulfilled'));
      const after = await failure(c.rpc.ServerLive({}));
      expect(after.code).toBe(status.UNAVAILABLE);
    } finally {
      c.client.close();
    }
  }, 60_000);
});
