/**
 * Errors are typed once: a code, the argument or field they concern, what was expected and what came.
 * The CLI maps them to one line plus an exit code, the HTTP layer to Triton's error JSON plus a status.
 */
export type ErrorCode =
  | 'E_ARGUMENT' // a bad argument or option
  | 'E_MODEL_FILE' // model file missing, not ONNX, truncated
  | 'E_PROFILE' // optimization profile does not fit the model
  | 'E_CONFIG' // repository entry config invalid
  | 'E_NOT_FOUND' // repository entry, version, file missing
  | 'E_IMAGE' // image missing or not an image
  | 'E_INPUT_MISSING'
  | 'E_INPUT_UNKNOWN'
  | 'E_SHAPE'
  | 'E_DTYPE'
  | 'E_QUEUE_FULL'
  | 'E_TIMEOUT'
  | 'E_CANCELLED'
  | 'E_CLOSED'
  | 'E_BACKEND_UNAVAILABLE'
  | 'E_BACKEND' // the backend failed while running
  | 'E_CALIBRATION'
  | 'E_ACCURACY' // a built model misses its accuracy target (INT8 validation)
  | 'E_NATIVE' // the native addon or CUDA reported an error
  | 'E_UNREACHABLE' // a server the command talks to does not answer (refused, no such host, timed out)
  | 'E_INTERNAL';

export interface YqpErrorDetails {
  /** The argument, option, config field path or tensor name the error is about. */
  argument?: string;
  expected?: string;
  received?: string;
  /** Extra hints, printed as "Possible solutions". */
  solutions?: string[];
  cause?: unknown;
}

export class YqpError extends Error {
  readonly code: ErrorCode;
  readonly argument?: string;
  readonly expected?: string;
  readonly received?: string;
  readonly solutions: string[];

  constructor(code: ErrorCode, message: string, details: YqpErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'YqpError';
    this.code = code;
    this.argument = details.argument;
    this.expected = details.expected;
    this.received = details.received;
    this.solutions = details.solutions ?? [];
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      argument: this.argument,
      expected: this.expected,
      received: this.received,
    };
  }
}

/** Describes a received value the way sharp does: "-1 of type number". */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `${JSON.stringify(value)} of type string`;
  if (Array.isArray(value)) return `${JSON.stringify(value)} of type array`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name} of length ${(value as Uint8Array).length}`;
  if (typeof value === 'object') return `object ${JSON.stringify(value)?.slice(0, 120)}`;
  return `${String(value)} of type ${typeof value}`;
}

/** The one factory for argument errors: "Expected positive integer for maxBatchSize but received -1 of type number". */
export function invalidParameter(
  name: string,
  expected: string,
  value: unknown,
  code: ErrorCode = 'E_ARGUMENT',
): YqpError {
  const received = describeValue(value);
  return new YqpError(code, `Expected ${expected} for ${name} but received ${received}`, {
    argument: name,
    expected,
    received,
  });
}

export function isYqpError(e: unknown): e is YqpError {
  return e instanceof YqpError;
}

// Small validators shared by the library, the CLI and the server; each throws through invalidParameter.
export function expectPositiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw invalidParameter(name, 'positive integer', value);
  return value;
}

export function expectNonNegativeInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw invalidParameter(name, 'non-negative integer', value);
  return value;
}

export function expectNonNegativeNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw invalidParameter(name, 'non-negative number', value);
  return value;
}

export function expectOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T))
    throw invalidParameter(name, `one of ${allowed.join(', ')}`, value);
  return value as T;
}
