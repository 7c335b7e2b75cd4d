/**
 * A streaming check of JSON text, fed as bytes arrive: nesting depth and the number of values (commas and
 * containers, outside strings) against limits, with no allocation. It runs before JSON.parse, so a body of
 * millions of tiny values or a 100k-deep nesting is refused as it streams in, never built (issue #13).
 * It checks only what limits need; JSON.parse still decides what is well-formed.
 */
import { YqpError } from '../errors.js';

export interface JsonLimits {
  /** Deepest nesting of arrays and objects (default DEFAULT_MAX_DEPTH). */
  maxDepth?: number;
  /** Most values (roughly: commas plus containers) in the text. */
  maxValues?: number;
}

/** Triton's nested `data` is as deep as the shape's rank, three more levels hold it: 32 is generous. */
export const DEFAULT_MAX_DEPTH = 32;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

export class JsonScanner {
  private inString = false;
  private escaped = false;
  private depth = 0;
  private values = 0;
  private readonly maxDepth: number;
  private readonly maxValues: number;

  constructor(limits: JsonLimits = {}) {
    this.maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.maxValues = limits.maxValues ?? Infinity;
  }

  /** Scans the next bytes; throws a 400-class YqpError once a limit is passed. */
  push(bytes: Uint8Array): void {
    let { inString, escaped, depth, values } = this;
    const n = bytes.length;
    for (let i = 0; i < n; i++) {
      const c = bytes[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) inString = false;
        continue;
      }
      if (c === QUOTE) inString = true;
      else if (c === COMMA) values++;
      else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
        values++;
        if (++depth > this.maxDepth) throw this.tooDeep();
      } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
      else continue;
      if (values > this.maxValues) throw this.tooMany();
    }
    this.inString = inString;
    this.escaped = escaped;
    this.depth = depth;
    this.values = values;
  }

  private tooDeep(): YqpError {
    return new YqpError(
      'E_ARGUMENT',
      `The request's JSON nests deeper than ${this.maxDepth} levels (a tensor's data nests as deep as its shape)`,
      { argument: 'body', expected: `at most ${this.maxDepth} levels` },
    );
  }

  private tooMany(): YqpError {
    return new YqpError(
      'E_SHAPE',
      `The request's JSON holds more than ${this.maxValues} values, more than the model's inputs take at their largest`,
      { argument: 'body', expected: `at most ${this.maxValues} values` },
    );
  }
}

/** Checks a whole JSON text at once (a transport without streaming, tests). */
export function scanJson(bytes: Uint8Array, limits: JsonLimits = {}): void {
  new JsonScanner(limits).push(bytes);
}
