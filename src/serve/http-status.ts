/** The HTTP status of an error, the way Triton answers each case (a gRPC transport maps the same codes its way). */
import { YqpError } from '../errors.js';

/** The HTTP status of a typed error, the way Triton answers each case. */
export function statusOf(e: unknown): number {
  if (!(e instanceof YqpError)) {
    const s = (e as { statusCode?: number } | undefined)?.statusCode;
    return typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
  }
  switch (e.code) {
    case 'E_NOT_FOUND':
      return 404;
    case 'E_QUEUE_FULL':
    case 'E_CLOSED':
      return 503;
    case 'E_TIMEOUT':
      return 504;
    case 'E_CANCELLED':
      return 499;
    case 'E_BACKEND_UNAVAILABLE':
      return 501;
    case 'E_BACKEND':
    case 'E_NATIVE':
    case 'E_INTERNAL':
      return 500;
    default:
      return 400;
  }
}
