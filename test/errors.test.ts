import { describe, expect, it } from 'vitest';
import { YqpError, expectOneOf, expectPositiveInteger, invalidParameter } from '../src/errors.js';
import { exitCodeFor } from '../src/cli/run-command.js';

describe('error factory', () => {
  it('names the argument, the expectation and what came, sharp style', () => {
    const e = invalidParameter('maxBatchSize', 'positive integer', -1);
    expect(e).toBeInstanceOf(YqpError);
    expect(e.message).toBe('Expected positive integer for maxBatchSize but received -1 of type number');
    expect(e.code).toBe('E_ARGUMENT');
    expect(e.argument).toBe('maxBatchSize');
  });
  it('validators throw through the factory', () => {
    expect(() => expectPositiveInteger('contexts', 0)).toThrow(
      'Expected positive integer for contexts but received 0 of type number',
    );
    expect(() => expectPositiveInteger('contexts', 1.5)).toThrow(/contexts/);
    expect(expectPositiveInteger('contexts', 3)).toBe(3);
    expect(() => expectOneOf('backend', 'cuda', ['onnxruntime', 'tensorrt'])).toThrow(
      'Expected one of onnxruntime, tensorrt for backend but received "cuda" of type string',
    );
  });
  it('maps codes to exit codes', () => {
    expect(exitCodeFor(new YqpError('E_PROFILE', 'x'))).toBe(2);
    expect(exitCodeFor(new YqpError('E_BACKEND_UNAVAILABLE', 'x'))).toBe(3);
    expect(exitCodeFor(new Error('boom'))).toBe(4);
  });
});
