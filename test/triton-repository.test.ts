import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEntry } from '../src/repository/repository.js';
import { modelConfigType, parseTritonConfig, tritonConfigJson } from '../src/repository/triton-config.js';
import { parseTextProto } from '../src/repository/pbtxt.js';
import { encodeInferRequest, parseInferResponse } from '../src/serve/client-codec.js';
import { InferenceServer } from '../src/serve/server.js';
import { tempRepo, writeBlazeFace } from './serve-fixtures.js';
import { writeBlaze, writeTinyTriton, writeTritonEntry } from './triton-fixtures.js';

const TINY = `name: "NAME" platform: "onnxruntime_onnx" max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
`;
const tiny = (name: string, extra = '') => TINY.replace('NAME', name) + extra;

describe('protobuf text format', () => {
  const type = modelConfigType();
  it('reads fields, lists, repeated fields, maps, enums, comments, both brackets and joined strings', () => {
    const c = parseTextProto(
      `name: 'a' "b" # comment
       input { name: "x" data_type: TYPE_FP32 dims: [1, -1] } input < name: "y" dims: 2 dims: 3 >
       parameters { key: "k" value { string_value: "v\\n\\x41\\101" } }
       optimization { cuda { graphs: true } };
       max_batch_size: 0x10`,
      type,
      'c.pbtxt',
    );
    expect(c).toEqual({
      name: 'ab',
      input: [
        { name: 'x', data_type: 'TYPE_FP32', dims: [1, -1] },
        { name: 'y', dims: [2, 3] },
      ],
      parameters: { k: { string_value: 'v\nAA' } },
      optimization: { cuda: { graphs: true } },
      max_batch_size: 16,
    });
  });

  it('refuses what protobuf refuses, naming the line and column', () => {
    const cases: [string, RegExp][] = [
      ['foo: 1', /line 1 column 1: Message type "inference.ModelConfig" has no field named "foo"/],
      ['name: "a"\nmax_batch_size: "8"', /line 2 column 17: Expected integer, got: 8/],
      ['name: "a" name: "b"', /Non-repeated field "name" is specified multiple times/],
      ['input { data_type: TYPE_F32 }', /Unknown enumeration value of "TYPE_F32" for field "data_type"/],
      ['max_batch_size: 3000000000', /Integer out of range/],
      ['version_policy { latest {} all {} }', /another member of oneof "policy_choice"/],
      ['input [ { name: "a" ', /Expected "}"/],
      ['name: "a', /String literals cannot cross line boundaries/],
      ['max_batch_size 8', /Expected ":", found "8"/],
      ['name: "a" @', /Unexpected character "@"/],
    ];
    for (const [text, message] of cases) expect(() => parseTextProto(text, type, 'c.pbtxt')).toThrow(message);
  });

  it("prints Triton's JSON: defaults present, unset messages left out, enums by name", () => {
    const json = tritonConfigJson(parseTritonConfig(tiny('t'), 't.pbtxt'));
    expect(json.max_batch_size).toBe(8);
    expect(json.input).toEqual([
      expect.objectContaining({ name: 'x', data_type: 'TYPE_FP32', format: 'FORMAT_NONE', dims: [4] }),
    ]);
    expect(json.batch_input).toEqual([]);
    expect(json.parameters).toEqual({});
    expect(json).not.toHaveProperty('dynamic_batching');
    expect(json).not.toHaveProperty('version_policy');
  });
});

describe('Triton model folders as repository entries', () => {
  let repo: string;
  beforeAll(() => {
    repo = tempRepo('yqp-triton-');
    writeBlaze(repo);
  });

  it('maps BlazeFace config.pbtxt: batch dim added, outputs auto-completed, batching, instances, warm-up', async () => {
    const e = await readEntry(join(repo, 'blaze'));
    expect(e.format).toBe('config.pbtxt');
    expect(e.warnings).toEqual([]);
    const c = e.config;
    expect(c.backend).toBe('onnxruntime');
    expect(c.maxBatchSize).toBe(16);
    expect(c.inputs).toEqual([{ name: 'input:0', dtype: 'float32', dims: [-1, 128, 128, 3] }]);
    expect(c.outputs.map((o) => o.name)).toEqual([
      'Identity:0',
      'Identity_1:0',
      'Identity_2:0',
      'Identity_3:0',
    ]);
    expect(c.outputs[0].dims).toEqual([-1, 512, 1]);
    expect(c.profiles).toEqual([
      { 'input:0': { min: [1, 128, 128, 3], opt: [1, 128, 128, 3], max: [16, 128, 128, 3] } },
    ]);
    expect(c.instances).toBe(2);
    expect(c.dynamicBatching).toEqual({ preferredBatchSizes: [4, 8], maxQueueDelayMicroseconds: 500 });
    expect(c.scheduler).toEqual({ maxQueueSize: 256 });
    expect(c.warmup).toEqual({ batchSizes: [4] });
    // What Triton reports: the outputs it completed, without the batch dimension.
    expect(e.triton?.output?.[2]).toMatchObject({
      name: 'Identity_2:0',
      data_type: 'TYPE_FP32',
      dims: [512, 16],
    });
    expect(e.triton?.instance_group).toEqual([{ name: 'blaze', kind: 'KIND_CPU', count: 2 }]);
  });

  it('names fields it does not support in warnings, and refuses what would answer differently', async () => {
    writeTinyTriton(
      repo,
      'warned',
      tiny(
        'warned',
        `parameters { key: "intra_op_thread_count" value { string_value: "2" } }
         optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" } ] } }
         dynamic_batching { priority_levels: 2 }
         response_cache { enable: true }`,
      ),
    );
    const e = await readEntry(join(repo, 'warned'));
    expect(e.warnings).toEqual([
      'config.pbtxt: dynamic_batching.priority_levels: not supported here (ignored)',
      expect.stringMatching(
        /^config.pbtxt: optimization.execution_accelerators.gpu_execution_accelerator: tensorrt is not supported here \(ignored\); build a TensorRT engine/,
      ),
      'config.pbtxt: parameters.intra_op_thread_count: not supported here (ignored)',
      'config.pbtxt: response_cache: not supported here (ignored)',
    ]);
    const refused: [string, RegExp][] = [
      ['sequence_batching { }', /sequence_batching is not supported here/],
      ['model_transaction_policy { decoupled: true }', /decoupled models are not supported/],
    ];
    for (const [extra, why] of refused) {
      writeTinyTriton(repo, 'refused', tiny('refused', extra));
      await expect(readEntry(join(repo, 'refused'))).rejects.toThrow(why);
    }
  });

  it('checks the configuration against the model as Triton does', async () => {
    const cases: [string, RegExp][] = [
      [
        tiny('m').replace('dims: [ 4 ]', 'dims: [ 5 ]'),
        /the model expects 2 dimensions \(shape \[-1,4\]\) but the model configuration specifies 2 dimensions .*making complete shape \[-1,5\]/,
      ],
      [
        tiny('m').replace('TYPE_FP32', 'TYPE_INT32'),
        /unexpected datatype TYPE_INT32 for inference input 'x', expecting TYPE_FP32/,
      ],
      [tiny('m').replace('name: "x"', 'name: "z"'), /unexpected inference input 'z', allowed inputs are: x/],
      [
        tiny('m').replace('TYPE_FP32', 'TYPE_STRING'),
        /input\[0\].data_type: TYPE_STRING is not supported here/,
      ],
      [tiny('m').replace('name: "m"', 'name: "other"'), /name: "other" does not match the folder name "m"/],
      [
        tiny('m').replace('onnxruntime_onnx', 'pytorch_libtorch'),
        /platform: "pytorch_libtorch" is not served here/,
      ],
      [tiny('m', 'dynamic_batching { preferred_batch_size: 32 }'), /32 is outside 1..max_batch_size \(8\)/],
    ];
    for (const [text, why] of cases) {
      writeTinyTriton(repo, 'm', text);
      await expect(readEntry(join(repo, 'm'))).rejects.toThrow(why);
    }
    // A fixed batch of 1 in the model cannot be batched by max_batch_size.
    writeTritonEntry(repo, 'fixed', 'max_batch_size: 4', (await import('./serve-fixtures.js')).tinyOnnx());
    const { readFileSync } = await import('node:fs');
    const { BLAZEFACE_ONNX } = await import('./helpers/data.js');
    writeTritonEntry(repo, 'fixed', 'max_batch_size: 4', readFileSync(BLAZEFACE_ONNX));
    await expect(readEntry(join(repo, 'fixed'))).rejects.toThrow(
      /for the model to support batching .* the first dimension must be -1; but shape expected by the model is \[1,128,128,3\]/,
    );
  });

  it('auto-completes a folder with no config as Triton does: batch 4 and the dynamic batcher', async () => {
    writeTinyTriton(repo, 'bare', undefined);
    const e = await readEntry(join(repo, 'bare'));
    expect(e.format).toBe('auto-complete');
    expect(e.config.maxBatchSize).toBe(4);
    expect(e.config.dynamicBatching).toEqual({ maxQueueDelayMicroseconds: 0 });
    expect(e.config.outputs).toEqual([{ name: 'y', dtype: 'float32', dims: [-1, 4] }]);
    expect(e.triton?.dynamic_batching).toEqual({});
  });

  it('serves the version its version_policy names', async () => {
    const policy = tiny('pol', 'version_policy: { specific: { versions: [ 1 ] } }');
    writeTinyTriton(repo, 'pol', policy, 1);
    writeTinyTriton(repo, 'pol', policy, 2);
    expect((await readEntry(join(repo, 'pol'))).version).toBe(1);
    writeTinyTriton(repo, 'pol', tiny('pol'), 2);
    expect((await readEntry(join(repo, 'pol'))).version).toBe(2);
    writeTinyTriton(repo, 'pol', tiny('pol', 'version_policy: { specific: { versions: [ 3 ] } }'), 2);
    await expect(readEntry(join(repo, 'pol'))).rejects.toThrow(/version 3 has no folder \(found 1, 2\)/);
  });
});

describe('a Triton repository served as written', () => {
  let repo: string;
  let server: InferenceServer;
  let url: string;
  beforeAll(async () => {
    repo = tempRepo('yqp-triton-serve-');
    writeBlaze(repo);
    await writeBlazeFace(repo, 'face');
    writeTinyTriton(
      repo,
      'broken',
      'max_batch_size: 8\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] ]',
    );
    mkdirSync(join(repo, 'empty'));
    server = await InferenceServer.create({
      modelRepository: repo,
      port: 0,
      loadOptions: { threadsPerContext: 1 },
    });
    url = await server.listen();
  }, 120_000);
  afterAll(async () => {
    await server?.close();
  });

  it('lists every folder: ready ones, an invalid config.pbtxt and an empty folder with their reasons', async () => {
    const res = await fetch(`${url}/v2/repository/index`, { method: 'POST' });
    const index = (await res.json()) as { name: string; state: string; reason?: string }[];
    expect(index.find((e) => e.name === 'blaze')).toMatchObject({ state: 'READY', version: '1' });
    expect(index.find((e) => e.name === 'face')).toMatchObject({ state: 'READY' });
    expect(index.find((e) => e.name === 'broken')).toMatchObject({
      state: 'UNAVAILABLE',
      reason: expect.stringMatching(/config.pbtxt: line 2 column \d+: Expected identifier, got: \]/),
    });
    expect(index.find((e) => e.name === 'empty')).toMatchObject({
      state: 'UNAVAILABLE',
      reason: expect.stringMatching(/has no config.json or config.pbtxt/),
    });
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
  });

  it('answers the same outputs as the config.json entry of the same model, batched', async () => {
    const x = new Float32Array(3 * 128 * 128 * 3).map((_, i) => Math.sin(i * 0.001));
    const results = [];
    for (const model of ['blaze', 'face']) {
      const { body, headerLength } = encodeInferRequest([
        { name: 'input:0', tensor: { dtype: 'float32', dims: [3, 128, 128, 3], data: x } },
      ]);
      const res = await fetch(`${url}/v2/models/${model}/infer`, {
        method: 'POST',
        body,
        headers: { 'Inference-Header-Content-Length': String(headerLength) },
      });
      expect(res.status).toBe(200);
      results.push(
        parseInferResponse(
          Buffer.from(await res.arrayBuffer()),
          Number(res.headers.get('inference-header-content-length')),
        ),
      );
    }
    const [blaze, face] = results;
    expect(Object.keys(blaze.outputs).sort()).toEqual(Object.keys(face.outputs).sort());
    for (const name of Object.keys(face.outputs)) {
      expect(blaze.outputs[name].dims).toEqual(face.outputs[name].dims);
      expect(Array.from(blaze.outputs[name].data as Float32Array)).toEqual(
        Array.from(face.outputs[name].data as Float32Array),
      );
    }
  });

  it("answers Triton's model configuration for both kinds of entry", async () => {
    const blaze = (await (await fetch(`${url}/v2/models/blaze/config`)).json()) as Record<string, any>;
    expect(blaze).toMatchObject({
      name: 'blaze',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      max_batch_size: 16,
      version_policy: { latest: { num_versions: 1 } },
      default_model_filename: 'model.onnx',
      dynamic_batching: { preferred_batch_size: [4, 8], max_queue_delay_microseconds: 500 },
      instance_group: [{ name: 'blaze', kind: 'KIND_CPU', count: 2, gpus: [] }],
    });
    expect(blaze.input[0]).toMatchObject({
      name: 'input:0',
      data_type: 'TYPE_FP32',
      format: 'FORMAT_NHWC',
      dims: [128, 128, 3],
    });
    expect(blaze.output.map((o: { name: string }) => o.name)).toEqual([
      'Identity:0',
      'Identity_1:0',
      'Identity_2:0',
      'Identity_3:0',
    ]);
    const face = (await (await fetch(`${url}/v2/models/face/config`)).json()) as Record<string, any>;
    expect(face).toMatchObject({ name: 'face', platform: 'onnxruntime_onnx', max_batch_size: 16 });
    expect(face.input[0]).toMatchObject({ name: 'input:0', data_type: 'TYPE_FP32', dims: [128, 128, 3] });
    // The same model, configured either way, reads the same to a Triton client.
    expect(face.output).toEqual(blaze.output);
  });
});
