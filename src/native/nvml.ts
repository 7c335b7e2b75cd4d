/** What trt/core/nvml.cc puts on the addon as `nvml`. */

/** One GPU as NVML reports it; a field is absent when NVML does not support it on that GPU. */
export interface GpuSample {
  index: number;
  name?: string;
  /** Percent of the last sample period a kernel ran / device memory was read or written. */
  utilizationGpu?: number;
  utilizationMemory?: number;
  memoryUsed?: number;
  memoryTotal?: number;
  temperatureC?: number;
  powerW?: number;
  pcieTxBytesPerSec?: number;
  pcieRxBytesPerSec?: number;
  pcieLinkGeneration?: number;
  pcieLinkWidth?: number;
  error?: string;
}

export type NvmlSample =
  { available: true; driverVersion?: string; gpus: GpuSample[] } | { available: false; reason: string };

export interface NativeNvml {
  sample(options?: { pcie?: boolean }): NvmlSample;
}
