/** What trt/kernels/kernels_binding.cc puts on the addon as `kernels` (and the kernels-only addon exports). */

export interface NativeOutputSpec {
  width: number;
  height: number;
  nchw: boolean;
  fp16: boolean;
  bgr: boolean;
  filter: 0 | 1;
  border: 0 | 1;
  a: number[];
  b: number[];
  padValue: number;
}

export interface NativeItem {
  frame: number;
  width: number;
  height: number;
  format: number;
  pitch: number;
  uvOffset: number;
  uvPitch: number;
  outIndex: number;
  /** source (x, y) = (m0 u + m1 v + m2, m3 u + m4 v + m5) for the output pixel centre (u, v). */
  m: number[];
  /** Output pixels outside [x0, x1) x [y0, y1) are padding. */
  rect: [number, number, number, number];
}

export interface NativeJob<F, O> {
  spec: NativeOutputSpec;
  frames: F[];
  items: NativeItem[];
  out: O;
  outBytes?: number;
  stream?: bigint;
}

export type DeviceJob = NativeJob<bigint, bigint>;
export type HostJob = NativeJob<Uint8Array, Float32Array | Uint16Array>;

/** Where a host-path run spent its time: copy into pinned staging (host clock), H2D, kernel, D2H (CUDA events). */
export interface KernelTimings {
  stagingMs: number;
  uploadMs: number;
  kernelMs: number;
  downloadMs: number;
}

export interface NativeKernelSession {
  readonly stream: bigint;
  run(job: HostJob): Promise<KernelTimings>;
  close(): void;
}

export interface NativeKernels {
  maxItemsPerLaunch: number;
  deviceInfo(device?: number): {
    available: boolean;
    reason?: string;
    count?: number;
    name?: string;
    sm?: string;
    multiprocessors?: number;
    totalMemory?: number;
    runtimeVersion?: number;
    driverVersion?: number;
  };
  malloc(bytes: number): bigint;
  free(ptr: bigint): void;
  upload(ptr: bigint, data: ArrayBufferView): void;
  download(ptr: bigint, data: ArrayBufferView): void;
  memset(ptr: bigint, value: number, bytes: number): void;
  streamCreate(): bigint;
  streamDestroy(stream: bigint): void;
  streamSynchronize(stream: bigint): void;
  sample(job: DeviceJob): void;
  sampleOnHost(job: HostJob): void;
  done(stream: bigint): Promise<void>;
  timeSample(job: DeviceJob, options?: { iterations?: number; warmup?: number }): Promise<number[]>;
  benchChain(
    job: DeviceJob,
    options?: { stages?: number; iterations?: number },
  ): Promise<{
    eagerLaunchUs: number;
    eagerTotalUs: number;
    graphLaunchUs: number;
    graphTotalUs: number;
    graphNodes: number;
    sameResult: boolean;
    decodeCount: number;
  }>;
  Session: new (device?: number) => NativeKernelSession;
}
