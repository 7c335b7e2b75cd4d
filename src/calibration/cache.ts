import { YqpError } from '../errors.js';
import type { CalibrationMethod } from './calibrators.js';

/**
 * TensorRT's calibration cache text format: a header line `TRT-<version>-<calibrator>`, then one
 * `<tensor name>: <hex>` line per tensor, the hex being the big-endian bits of the float32 scale amax/127.
 * <version> is NV_TENSORRT_VERSION as TensorRT writes it (major*10000 + minor*100 + patch; 10.16.0 -> 101600).
 */
export const DEFAULT_TRT_VERSION = 101600;

export function calibratorName(method: CalibrationMethod): string {
  // TensorRT has no percentile calibrator; a percentile amax is a clipped max, so it takes the MinMax name, as
  // does auto (a per-tensor mix): TensorRT applies the scales as written whatever the header names.
  return method === 'entropy' ? 'EntropyCalibration2' : 'MinMaxCalibration';
}

export function floatToHex(value: number): string {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value, false);
  return view.getUint32(0, false).toString(16).padStart(8, '0');
}

export function hexToFloat(hex: string): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, parseInt(hex, 16), false);
  return view.getFloat32(0, false);
}

export function formatCalibrationCache(
  amax: ReadonlyMap<string, number>,
  method: CalibrationMethod,
  version = DEFAULT_TRT_VERSION,
): string {
  const lines = [`TRT-${version}-${calibratorName(method)}`];
  for (const [name, a] of amax) lines.push(`${name}: ${floatToHex(a / 127)}`);
  return lines.join('\n') + '\n';
}

export interface ParsedCache {
  version: number;
  calibrator: string;
  /** Scale (amax/127) per tensor. */
  scales: Map<string, number>;
}

export function parseCalibrationCache(text: string): ParsedCache {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  const header = /^TRT-(\d+)-(\w+)$/.exec(lines[0] ?? '');
  if (!header)
    throw new YqpError(
      'E_CALIBRATION',
      `Calibration cache header ${JSON.stringify(lines[0] ?? '')} is not TRT-<version>-<calibrator>`,
      {
        argument: 'calibration.cache',
      },
    );
  const scales = new Map<string, number>();
  for (const line of lines.slice(1)) {
    // Tensor names may hold ':' themselves (Identity:0), so the hex is what follows the last ': '.
    const at = line.lastIndexOf(': ');
    const hex = at >= 0 ? line.slice(at + 2) : '';
    if (!/^[0-9a-f]{8}$/i.test(hex))
      throw new YqpError(
        'E_CALIBRATION',
        `Calibration cache line ${JSON.stringify(line)} is not <tensor>: <8 hex digits>`,
        {
          argument: 'calibration.cache',
        },
      );
    scales.set(line.slice(0, at), hexToFloat(hex));
  }
  return { version: Number(header[1]), calibrator: header[2], scales };
}
