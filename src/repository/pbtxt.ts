/**
 * Protocol Buffers text format (the format of Triton's config.pbtxt), read against a message type so the result
 * is a plain object with the .proto field names: repeated fields as arrays, maps as objects, enums by name,
 * 64-bit integers as numbers. Only fields the text sets are present, so a reader can tell "absent" from "0".
 * Errors name the line and column and use protobuf's own wording where it has one.
 */
import protobuf from 'protobufjs';
import { YqpError } from '../errors.js';

type Token =
  | { kind: 'ident'; text: string; line: number; col: number }
  | { kind: 'number'; text: string; line: number; col: number }
  | { kind: 'string'; text: string; line: number; col: number }
  | { kind: 'symbol'; text: string; line: number; col: number }
  | { kind: 'end'; text: ''; line: number; col: number };

export type TextValue = string | number | boolean | TextObject | TextValue[];
export interface TextObject {
  [field: string]: TextValue;
}

const ESCAPES: Record<string, string> = {
  n: '\n',
  t: '\t',
  r: '\r',
  a: '\x07',
  b: '\b',
  f: '\f',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
  '?': '?',
};

function tokenize(text: string, fail: (line: number, col: number, message: string) => never): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  while (i < text.length) {
    const c = text[i];
    const col = i - lineStart + 1;
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
    } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') i++;
    else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))!;
      tokens.push({ kind: 'ident', text: m[0], line, col });
      i += m[0].length;
    } else if (/[0-9.-]/.test(c) && /^-?\.?[0-9]/.test(text.slice(i, i + 3))) {
      const m = /^-?(0[xX][0-9A-Fa-f]+|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[fF]?)/.exec(
        text.slice(i),
      )!;
      tokens.push({ kind: 'number', text: m[0], line, col });
      i += m[0].length;
    } else if (c === '-' && /^-[A-Za-z]/.test(text.slice(i, i + 2))) {
      // -inf, -nan: a sign and an identifier, joined
      const m = /^-[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))!;
      tokens.push({ kind: 'ident', text: m[0], line, col });
      i += m[0].length;
    } else if (c === '"' || c === "'") {
      let out = '';
      let j = i + 1;
      for (;;) {
        if (j >= text.length || text[j] === '\n')
          fail(line, col, 'String literals cannot cross line boundaries.');
        const d = text[j];
        if (d === c) break;
        if (d !== '\\') {
          out += d;
          j++;
          continue;
        }
        const e = text[j + 1];
        if (e in ESCAPES) {
          out += ESCAPES[e];
          j += 2;
        } else if (/[0-7]/.test(e)) {
          const m = /^[0-7]{1,3}/.exec(text.slice(j + 1))!;
          out += String.fromCharCode(parseInt(m[0], 8));
          j += 1 + m[0].length;
        } else if (e === 'x' || e === 'X') {
          const m = /^[0-9A-Fa-f]{1,2}/.exec(text.slice(j + 2));
          if (!m) fail(line, j - lineStart + 1, 'Expected hex digits for escape sequence.');
          out += String.fromCharCode(parseInt(m[0], 16));
          j += 2 + m[0].length;
        } else fail(line, j - lineStart + 1, 'Invalid escape sequence in string literal.');
      }
      tokens.push({ kind: 'string', text: out, line, col });
      i = j + 1;
      continue;
    } else if ('{}<>[]:,;'.includes(c)) {
      tokens.push({ kind: 'symbol', text: c, line, col });
      i++;
    } else fail(line, col, `Unexpected character ${JSON.stringify(c)}.`);
  }
  const col = i - lineStart + 1;
  tokens.push({ kind: 'end', text: '', line, col });
  // Adjacent string literals are one string, as in C.
  const joined: Token[] = [];
  for (const t of tokens) {
    const last = joined.at(-1);
    if (t.kind === 'string' && last?.kind === 'string') last.text += t.text;
    else joined.push(t);
  }
  return joined;
}

const INT_RANGE: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

/** Parses `text` as a `type` message. `where` names the file in errors. */
export function parseTextProto(text: string, type: protobuf.Type, where: string): TextObject {
  const fail = (line: number, col: number, message: string): never => {
    throw new YqpError('E_CONFIG', `Invalid ${where}: line ${line} column ${col}: ${message}`, {
      argument: where,
    });
  };
  const tokens = tokenize(text, fail);
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => tokens[pos++];
  const at = (t: Token, message: string): never => fail(t.line, t.col, message);
  const isSymbol = (t: Token, s: string) => t.kind === 'symbol' && t.text === s;
  const expectSymbol = (s: string) => {
    const t = next();
    if (!isSymbol(t, s)) at(t, `Expected "${s}", found "${t.text}".`);
  };

  const scalar = (field: protobuf.Field, t: Token): TextValue => {
    const resolved = field.resolvedType;
    const name = field.name;
    if (resolved instanceof protobuf.Enum) {
      if (t.kind === 'ident') {
        if (!(t.text in resolved.values))
          at(t, `Unknown enumeration value of "${t.text}" for field "${name}".`);
        return t.text;
      }
      if (t.kind === 'number' && /^-?[0-9]+$/.test(t.text)) {
        const byNumber = Object.entries(resolved.values).find(([, v]) => v === Number(t.text));
        if (!byNumber) at(t, `Unknown enumeration value of "${t.text}" for field "${name}".`);
        return byNumber![0];
      }
      return at(t, `Expected integer or identifier, got: ${t.text}`);
    }
    switch (field.type) {
      case 'string':
      case 'bytes':
        if (t.kind !== 'string') at(t, `Expected string, got: ${t.text}`);
        return t.text;
      case 'bool':
        if (['true', 'True', 't', '1'].includes(t.text)) return true;
        if (['false', 'False', 'f', '0'].includes(t.text)) return false;
        return at(t, `Invalid value for boolean field "${name}". Value: "${t.text}".`);
      case 'float':
      case 'double': {
        if (t.kind === 'ident') {
          const lower = t.text.toLowerCase();
          if (lower === 'inf' || lower === 'infinity') return Infinity;
          if (lower === '-inf' || lower === '-infinity') return -Infinity;
          if (lower === 'nan' || lower === '-nan') return NaN;
        }
        if (t.kind !== 'number') at(t, `Expected double, got: ${t.text}`);
        const v = /^-?0[xX]/.test(t.text)
          ? Number(BigInt(t.text.replace('-', '')))
          : Number(t.text.replace(/[fF]$/, ''));
        return t.text.startsWith('-') && /^-?0[xX]/.test(t.text) ? -v : v;
      }
      default: {
        const range = INT_RANGE[field.type];
        if (!range) return at(t, `Field "${name}" has type ${field.type}, which this reader does not know.`);
        if (t.kind !== 'number' || !/^-?(0[xX][0-9A-Fa-f]+|[0-9]+)$/.test(t.text))
          at(t, `Expected integer, got: ${t.text}`);
        const negative = t.text.startsWith('-');
        const magnitude = BigInt(negative ? t.text.slice(1) : t.text);
        const v = negative ? -magnitude : magnitude;
        if (v < range[0] || v > range[1]) at(t, `Integer out of range (${t.text})`);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))
          at(t, `Integer ${t.text} is beyond what this reader holds exactly (2^53)`);
        return Number(v);
      }
    }
  };

  const messageBody = (type: protobuf.Type, close: string | undefined): TextObject => {
    const out: TextObject = {};
    const oneofSet = new Map<string, string>();
    for (;;) {
      const t = peek();
      if (close === undefined ? t.kind === 'end' : isSymbol(t, close)) {
        next();
        return out;
      }
      if (t.kind === 'end') at(t, `Expected "${close}".`);
      if (isSymbol(t, '[')) at(t, 'Extensions and Any fields are not supported in this file.');
      if (t.kind !== 'ident') at(t, `Expected identifier, got: ${t.text}`);
      next();
      const field = type.fields[t.text];
      if (!field) at(t, `Message type "${type.fullName.replace(/^\./, '')}" has no field named "${t.text}".`);
      if (!(field as { resolved?: boolean }).resolved) field.resolve();
      const isMessage = field.resolvedType instanceof protobuf.Type || field instanceof protobuf.MapField;
      const hasColon = isSymbol(peek(), ':');
      if (hasColon) next();
      else if (!isMessage) at(peek(), `Expected ":", found "${peek().text}".`);
      const one = (): TextValue => {
        const v = peek();
        if (isMessage) {
          if (!isSymbol(v, '{') && !isSymbol(v, '<')) at(v, `Expected "{", found "${v.text}".`);
          next();
          const end = v.text === '{' ? '}' : '>';
          if (field instanceof protobuf.MapField) return messageBody(mapEntryType(field), end);
          return messageBody(field.resolvedType as protobuf.Type, end);
        }
        next();
        return scalar(field, v);
      };
      const values: TextValue[] = [];
      if (isSymbol(peek(), '[')) {
        const open = next();
        if (!field.repeated && !(field instanceof protobuf.MapField))
          at(open, `Non-repeated field "${field.name}" cannot be given a list.`);
        if (!isSymbol(peek(), ']'))
          for (;;) {
            values.push(one());
            if (isSymbol(peek(), ',')) {
              next();
              continue;
            }
            expectSymbol(']');
            break;
          }
        else next();
      } else values.push(one());
      if (field instanceof protobuf.MapField) {
        const map = (out[field.name] ??= {}) as TextObject;
        for (const entry of values as TextObject[]) {
          const key = entry.key ?? (field.keyType === 'string' ? '' : 0);
          map[String(key)] = entry.value ?? defaultOf(field);
        }
      } else if (field.repeated) ((out[field.name] ??= []) as TextValue[]).push(...values);
      else {
        if (field.name in out) at(t, `Non-repeated field "${field.name}" is specified multiple times.`);
        if (field.partOf) {
          const other = oneofSet.get(field.partOf.name);
          if (other)
            at(
              t,
              `Field "${field.name}" is specified along with field "${other}", another member of oneof "${field.partOf.name}".`,
            );
          oneofSet.set(field.partOf.name, field.name);
        }
        out[field.name] = values[0];
      }
      if (isSymbol(peek(), ',') || isSymbol(peek(), ';')) next();
    }
  };

  return messageBody(type, undefined);
}

/** A map field's entries as a message type of their own (key = 1, value = 2), cached on the field. */
function mapEntryType(field: protobuf.MapField): protobuf.Type {
  const cached = (field as { entryType?: protobuf.Type }).entryType;
  if (cached) return cached;
  field.resolve();
  const entry = new protobuf.Type(`${field.name}Entry`);
  entry.add(new protobuf.Field('key', 1, field.keyType));
  const value = new protobuf.Field('value', 2, field.type);
  entry.add(value);
  // The value's type is the map's: set, not looked up (the entry type belongs to no namespace).
  for (const f of entry.fieldsArray) {
    (f as { resolved: boolean }).resolved = true;
    f.typeDefault = undefined as never;
  }
  value.resolvedType = field.resolvedType;
  (field as { entryType?: protobuf.Type }).entryType = entry;
  return entry;
}

function defaultOf(field: protobuf.MapField): TextValue {
  field.resolve();
  if (field.resolvedType instanceof protobuf.Type) return {};
  if (field.resolvedType instanceof protobuf.Enum) return Object.keys(field.resolvedType.values)[0];
  if (field.type === 'string' || field.type === 'bytes') return '';
  if (field.type === 'bool') return false;
  return 0;
}
