/**
 * inference.GRPCInferenceService as a grpc-js service definition, its messages encoded and decoded by protobufjs
 * from our .proto files (schemas/triton/). Messages are plain objects with the .proto field names; bytes fields
 * decode as views of the received buffer (no copy), 64-bit integers as Long or number (see `toInt`).
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { tritonProtos } from '../../repository/triton-config.js';

export const SERVICE_NAME = 'inference.GRPCInferenceService';

/** A 64-bit integer field as protobufjs gives it (Long where the long package is present) as a number. */
export function toInt(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v === undefined || v === null) return 0;
  if (typeof (v as { toNumber?: unknown }).toNumber === 'function')
    return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

export type Message = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function codec(type: protobuf.Type) {
  return {
    serialize: (value: Message): Buffer => {
      const bytes = type.encode(value as protobuf.Message).finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    deserialize: (bytes: Buffer): Message => type.decode(bytes) as unknown as Message,
  };
}

/** A message type of our .proto files by its full name (inference.ModelInferResponse). */
export function messageType(name: string): protobuf.Type {
  return tritonProtos().lookupType(name);
}

let definition: ServiceDefinition | undefined;

/** The service's methods, path /inference.GRPCInferenceService/<Method>, as grpc-js wants them (server and client). */
export function inferenceService(): ServiceDefinition {
  if (definition) return definition;
  const service = tritonProtos().lookupService(SERVICE_NAME);
  const methods: Record<string, MethodDefinition<Message, Message>> = {};
  for (const m of service.methodsArray) {
    m.resolve();
    const req = codec(m.resolvedRequestType!);
    const res = codec(m.resolvedResponseType!);
    methods[m.name] = {
      path: `/${SERVICE_NAME}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: req.serialize,
      requestDeserialize: req.deserialize,
      responseSerialize: res.serialize,
      responseDeserialize: res.deserialize,
      originalName: m.name,
    } as MethodDefinition<Message, Message>;
  }
  definition = methods;
  return definition;
}
