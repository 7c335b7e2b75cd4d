import { loadBinding } from '../native/binding.js';

export type { GpuSample, NvmlSample } from '../native/nvml.js';
import type { NvmlSample } from '../native/nvml.js';

/**
 * Samples NVML (libnvidia-ml.so.1, opened at run time by the addon) for every GPU. Without the addon or NVML it
 * returns {available: false, reason}; never throws. `pcie: false` skips the PCIe counters (~20 ms each).
 */
export function sample(options: { pcie?: boolean } = {}): NvmlSample {
  const loaded = loadBinding();
  if (!loaded.binding)
    return { available: false, reason: `the native addon did not load: ${loaded.errors.join('; ')}` };
  const nvml = loaded.binding.nvml;
  if (!nvml) return { available: false, reason: 'the native addon has no NVML monitor' };
  try {
    return nvml.sample(options);
  } catch (e) {
    return { available: false, reason: `NVML sampling failed: ${(e as Error).message}` };
  }
}

/** Theoretical PCIe payload rate in bytes/s for a link (128b/130b encoding from Gen 3 on). */
export function pcieLinkBytesPerSec(generation: number, width: number): number {
  const gtPerLane = [0, 2.5, 5, 8, 16, 32, 64][generation] ?? 0;
  const encoding = generation <= 2 ? 8 / 10 : 128 / 130;
  return (gtPerLane * 1e9 * encoding * width) / 8;
}
