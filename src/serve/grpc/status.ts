/** Typed errors (src/errors.ts) as gRPC statuses, the way Triton's gRPC endpoint answers each case. */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { YqpError } from '../../errors.js';

export function grpcCodeOf(e: unknown): status {
  if (!(e instanceof YqpError)) return status.INTERNAL;
  switch (e.code) {
    case 'E_NOT_FOUND':
      return status.NOT_FOUND;
    case 'E_QUEUE_FULL':
    case 'E_CLOSED':
      return status.UNAVAILABLE;
    case 'E_TIMEOUT':
      return status.DEADLINE_EXCEEDED;
    case 'E_CANCELLED':
      return status.CANCELLED;
    case 'E_BACKEND_UNAVAILABLE':
      return status.UNIMPLEMENTED;
    case 'E_BACKEND':
    case 'E_NATIVE':
    case 'E_INTERNAL':
      return status.INTERNAL;
    default:
      return status.INVALID_ARGUMENT;
  }
}

/** The error a handler answers with: code, the error's message, and its yqp code in the trailers. */
export function toServiceError(e: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  const code = (e as { code?: unknown }).code;
  if (e instanceof YqpError && typeof code === 'string') metadata.set('yqp-error-code', code);
  return {
    code: grpcCodeOf(e),
    details: e instanceof Error ? e.message : String(e),
    metadata,
  };
}
