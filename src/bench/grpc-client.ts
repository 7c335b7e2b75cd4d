/**
 * The load generator's gRPC client: ModelInfer with raw_input_contents (what Triton's clients send), the request
 * encoded once, answers taken as bytes (decoded only with `verify`), over several HTTP/2 connections.
 */
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

/** A ModelInfer client whose requests are pre-encoded Buffers and answers raw Buffers. */
function rawClient(target: string, index: number): Client & { ModelInfer: Unary } {
  const def = inferenceService().ModelInfer;
  const Ctor = makeGenericClientConstructor(
    {
      ModelInfer: {
        ...def,
        requestSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    'GRPCInferenceService',
  );
  // A channel option of its own per client: grpc-js then opens a connection per client instead of sharing one.
  return new Ctor(target, credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
    'yqp.connection': index,
    // Past HTTP/2's 64 KiB default window: responses arrive without waiting for acknowledgements.
    'grpc-node.flow_control_window': 16 * 1024 * 1024,
  }) as unknown as Client & { ModelInfer: Unary };
}

export class GrpcClient implements BenchClient {
  readonly description: string;
  private readonly clients: (Client & { ModelInfer: Unary })[];
  private next = 0;
  private readonly body: Buffer;
  private readonly metadata = new Metadata();

  constructor(private readonly options: GrpcClientOptions) {
    const target = grpcTarget(options.address);
    this.clients = Array.from({ length: Math.max(1, options.connections) }, (_, i) => rawClient(target, i));
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
    this.body = inferenceService().ModelInfer.requestSerialize(request) as Buffer;
    if (options.authToken) this.metadata.set('authorization', `Bearer ${options.authToken}`);
    this.description = `gRPC ${target} ${options.model}`;
  }

  infer(): Promise<void> {
    const client = this.clients[this.next++ % this.clients.length];
    return new Promise((resolve, reject) =>
      client.ModelInfer(this.body, this.metadata, (e, res) => {
        if (e) {
          const err = e as Error & { code?: number; details?: string };
          reject(
            new YqpError(
              'E_BACKEND',
              `gRPC ${status[err.code ?? 2] ?? err.code}: ${err.details ?? err.message}`,
            ),
          );
          return;
        }
        if (this.options.verify) inferenceService().ModelInfer.responseDeserialize(res as Buffer);
        resolve();
      }),
    );
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.close();
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
