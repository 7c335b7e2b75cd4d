import { invalidParameter } from '../errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** A byte count as a person reads it: `64 MiB`, `512 KiB`, `1.5 GiB`, `100 bytes`. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const)
    if (bytes >= size) return `${+(bytes / size).toFixed(2)} ${unit}`;
  return `${bytes} bytes`;
}

/** Bytes from a number or a size with a unit (64MiB, 64 MiB, 512k, 1GB); a positive whole number of bytes. */
export function parseBytes(flag: string, value: number | string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(String(value));
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  const bytes = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
  if (!(Number.isInteger(bytes) && bytes >= 1))
    throw invalidParameter(flag, 'a positive size: bytes, or with a unit (512KiB, 64MiB, 1GiB)', value);
  return bytes;
}
