import { existsSync, readFileSync } from 'node:fs';
import { arch } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { invalidParameter } from '../errors.js';

/**
 * Which of the onnxruntime INT8 form's two files a CPU runs. model.ort.onnx stores the GEMM convolutions' weights as
 * uint8 with zero point 128 (u8u8): exact on every CPU. model.ort.s8.onnx is the same model with int8 weights
 * (u8s8), MLAS's fast path where the CPU has VNNI (vpdpbusd sums in int32). Without VNNI, u8s8 multiplies with
 * vpmaddubsw, whose int16 pair sums saturate (qdq-ort.ts): there it would lose faces, so those CPUs run u8u8.
 * Both files compute the same integers where u8s8 does not saturate.
 */
export const ORT_MODEL_FILE = 'model.ort.onnx';
export const ORT_S8_MODEL_FILE = 'model.ort.s8.onnx';

/** Whether the CPU flags (from /proc/cpuinfo) include an 8-bit dot product that sums in int32. */
export function hasInt8DotProduct(flags: readonly string[]): boolean {
  return flags.some((f) => f === 'avx512_vnni' || f === 'avx_vnni' || f === 'amx_int8');
}

let cpuFlags: string[] | undefined;

/** This machine's x86 CPU flags; empty elsewhere (other CPUs keep u8u8). */
export function x86CpuFlags(): string[] {
  if (cpuFlags) return cpuFlags;
  cpuFlags = [];
  if (arch() === 'x64') {
    try {
      const line = readFileSync('/proc/cpuinfo', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('flags'));
      cpuFlags = line
        ? line
            .slice(line.indexOf(':') + 1)
            .trim()
            .split(/\s+/)
        : [];
    } catch {
      // no /proc: keep the exact form
    }
  }
  return cpuFlags;
}

/**
 * The file to load for `modelPath`: the u8s8 sibling of an INT8 onnxruntime form on a CPU with VNNI, else
 * modelPath. YQP_INT8_WEIGHTS=u8u8 or u8s8 forces one (for benchmarks).
 */
export function cpuInt8Form(modelPath: string, flags?: readonly string[]): string {
  if (basename(modelPath) !== ORT_MODEL_FILE) return modelPath;
  const s8 = join(dirname(modelPath), ORT_S8_MODEL_FILE);
  const forced = process.env.YQP_INT8_WEIGHTS;
  if (forced && forced !== 'u8u8' && forced !== 'u8s8')
    throw invalidParameter('YQP_INT8_WEIGHTS', "'u8u8' or 'u8s8'", forced);
  // The CPU's flags are read only for an INT8 onnxruntime form, not for every model the backend opens.
  const signed = forced ? forced === 'u8s8' : hasInt8DotProduct(flags ?? x86CpuFlags());
  return signed && existsSync(s8) ? s8 : modelPath;
}
