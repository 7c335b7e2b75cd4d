/**
 * Clients the load generator drives: in-process (Model.infer) or HTTP (KServe v2 JSON or Triton's binary
 * tensor extension) over keep-alive connections, one request in flight per connection.
 */
import http from 'node:http';
import { invalidParameter, YqpError } from '../errors.js';
import type { Model } from '../model.js';
import { DTYPE_ARRAY, elementCount, type DType, type Tensor, type TensorMap } from '../tensor.js';
import { encodeInferRequest, parseInferResponse } from '../serve/client-codec.js';
import { DATATYPE_TO_DTYPE, DTYPE_TO_DATATYPE, jsonFromTyped } from '../serve/tensor-codec.js';

export interface BenchClient {
  readonly description: string;
  /** Sends one request and resolves when its full response is in. */
  infer(): Promise<void>;
  close(): Promise<void>;
}

export interface InputSpec {
  name: string;
  dtype: DType;
  dims: number[];
}

/** Deterministic pseudo-random data in a range sensible for each dtype (floats in [-1, 1]). */
export function syntheticInputs(specs: InputSpec[], seed = 1): TensorMap {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const out: TensorMap = {};
  for (const spec of specs) {
    const n = elementCount(spec.dims);
    const data = new DTYPE_ARRAY[spec.dtype](n);
    for (let i = 0; i < n; i++) {
      const r = next();
      if (spec.dtype === 'float32' || spec.dtype === 'float64') data[i] = r * 2 - 1;
      else if (spec.dtype === 'int64') (data as BigInt64Array)[i] = BigInt(Math.floor(r * 100));
      else if (spec.dtype === 'float16')
        data[i] = 0x3c00; // 1.0
      else if (spec.dtype === 'bool') data[i] = r < 0.5 ? 0 : 1;
      else data[i] = Math.floor(r * 100);
    }
    out[spec.name] = { dtype: spec.dtype, dims: spec.dims, data };
  }
  return out;
}

/** Fills dynamic dimensions: dimension 0 with the batch, others from `shapes` (name -> dims). */
export function resolveShapes(
  inputs: { name: string; dtype: DType; dims: number[] }[],
  batch: number,
  shapes: Record<string, number[]> = {},
): InputSpec[] {
  return inputs.map((i) => {
    const given = shapes[i.name];
    if (given) return { name: i.name, dtype: i.dtype, dims: given };
    const dims = i.dims.map((d, k) => (d === -1 && k === 0 ? batch : d));
    if (dims.some((d) => d < 0))
      throw new YqpError(
        'E_SHAPE',
        `Input ${JSON.stringify(i.name)} has dynamic dimensions [${i.dims.join(',')}]: give its shape with --shape ${i.name}:${dims.map((d) => (d < 0 ? 'N' : d)).join(',')}`,
        { argument: 'shape', expected: 'a concrete shape', received: `[${i.dims.join(',')}]` },
      );
    return { name: i.name, dtype: i.dtype, dims };
  });
}

export class InProcessClient implements BenchClient {
  readonly description: string;
  constructor(
    private readonly model: Model,
    private readonly feeds: TensorMap,
  ) {
    this.description = `in-process ${model.name} v${model.version}`;
  }
  async infer(): Promise<void> {
    await this.model.infer(this.feeds);
  }
  async close(): Promise<void> {}
}

export interface HttpClientOptions {
  url: string;
  model: string;
  version?: string;
  protocol: 'json' | 'binary';
  feeds: TensorMap;
  connections: number;
  /**
   * Send as this many independent clients, each with its own keep-alive connection, taking requests in turn
   * (cameras, each streaming to the server); a client's request waits behind its previous one. Default: one
   * pool of `connections`, where Node reuses the most recently freed connection, so a few connections carry
   * most requests (and, behind several server processes, most of them reach the same few processes).
   */
  clients?: number;
  authToken?: string;
  /** Check every response parses (costs client CPU; off for throughput runs). */
  verify?: boolean;
  /**
   * JSON request bodies sent in turn instead of the feeds (shared-memory requests: tensors in registered regions,
   * one body per output slot; see shared-memory-client.ts).
   */
  requestBodies?: Buffer[];
}

export class HttpClient implements BenchClient {
  readonly description: string;
  private readonly agents: http.Agent[];
  private nextAgent = 0;
  private readonly bodies: Buffer[];
  private nextBody = 0;
  private readonly headers: Record<string, string>;
  private readonly path: string;
  private readonly target: URL;

  constructor(private readonly options: HttpClientOptions) {
    this.target = new URL(options.url);
    if (this.target.protocol !== 'http:')
      throw new YqpError(
        'E_ARGUMENT',
        `Expected an http:// URL for url but received ${JSON.stringify(options.url)}`,
        {
          argument: 'url',
        },
      );
    this.agents =
      options.clients === undefined
        ? [new http.Agent({ keepAlive: true, maxSockets: options.connections })]
        : Array.from({ length: options.clients }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    this.path = `/v2/models/${encodeURIComponent(options.model)}${options.version ? `/versions/${encodeURIComponent(options.version)}` : ''}/infer`;
    this.headers = {};
    if (options.authToken) this.headers.authorization = `Bearer ${options.authToken}`;
    const inputs = Object.entries(options.feeds).map(([name, tensor]) => ({ name, tensor }));
    if (options.requestBodies) {
      if (options.requestBodies.length === 0)
        throw invalidParameter('requestBodies', 'at least one request body', options.requestBodies);
      this.bodies = options.requestBodies;
      this.headers['content-type'] = 'application/json';
    } else if (options.protocol === 'binary') {
      const { body, headerLength } = encodeInferRequest(inputs, { binaryOutput: true });
      this.bodies = [body];
      this.headers['content-type'] = 'application/octet-stream';
      this.headers['inference-header-content-length'] = String(headerLength);
    } else {
      this.bodies = [
        Buffer.from(
          JSON.stringify({
            inputs: inputs.map(({ name, tensor }) => ({
              name,
              datatype: DTYPE_TO_DATATYPE[tensor.dtype],
              shape: tensor.dims,
              data: jsonFromTyped(tensor),
            })),
          }),
        ),
      ];
      this.headers['content-type'] = 'application/json';
    }
    this.description = `HTTP ${options.requestBodies ? 'shared memory' : options.protocol} ${options.url} ${options.model}`;
  }

  infer(): Promise<void> {
    const body = this.bodies[this.nextBody++ % this.bodies.length];
    return new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: this.target.hostname,
          port: this.target.port || 80,
          method: 'POST',
          path: this.path,
          agent: this.agents[this.nextAgent++ % this.agents.length],
          headers: { ...this.headers, 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const body = Buffer.concat(chunks);
            if (res.statusCode !== 200) {
              let message = body.toString('utf8');
              try {
                message = (JSON.parse(message) as { error: string }).error;
              } catch {
                // not Triton's error JSON: keep the text
              }
              reject(new YqpError('E_BACKEND', `HTTP ${res.statusCode}: ${message}`));
              return;
            }
            if (this.options.verify) {
              const h = res.headers['inference-header-content-length'];
              parseInferResponse(body, h === undefined ? undefined : Number(h));
            }
            resolve();
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async close(): Promise<void> {
    for (const agent of this.agents) agent.destroy();
  }
}

/** GET /v2/models/<m>: the inputs a bench over HTTP must fill. */
export async function fetchModelInputs(
  url: string,
  model: string,
  authToken?: string,
): Promise<{ name: string; dtype: DType; dims: number[] }[]> {
  return (await fetchModelMetadata(url, model, authToken)).inputs;
}

/** GET /v2/models/<m>: its inputs and outputs with their types and shapes (-1: dynamic). */
export async function fetchModelMetadata(
  url: string,
  model: string,
  authToken?: string,
): Promise<{ inputs: InputSpec[]; outputs: InputSpec[] }> {
  const res = await fetch(new URL(`/v2/models/${encodeURIComponent(model)}`, url), {
    headers: authToken ? { authorization: `Bearer ${authToken}` } : {},
  });
  type Io = { name: string; datatype: string; shape: number[] };
  const body = (await res.json()) as { error?: string; inputs?: Io[]; outputs?: Io[] };
  if (!res.ok || !body.inputs)
    throw new YqpError('E_NOT_FOUND', `Model ${model} at ${url}: ${body.error ?? `HTTP ${res.status}`}`, {
      argument: 'model',
    });
  const typed = (what: string, list: Io[]) =>
    list.map((i) => {
      const dtype = DATATYPE_TO_DTYPE[i.datatype];
      if (!dtype)
        throw new YqpError(
          'E_DTYPE',
          `${what} ${i.name} has datatype ${i.datatype}, which bench cannot ${what === 'Input' ? 'synthesize' : 'size'}`,
          { argument: i.name },
        );
      return { name: i.name, dtype, dims: i.shape };
    });
  return { inputs: typed('Input', body.inputs), outputs: typed('Output', body.outputs ?? []) };
}

export type { Tensor };
