/** Tensors wrap TypedArray memory without copies (as onnxruntime-node does). Dims include the batch dimension. */
export type DType =
  'float32' | 'float16' | 'int8' | 'uint8' | 'int32' | 'int64' | 'bool' | 'float64' | 'int16';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | BigInt64Array;

/** Device memory holding a tensor on the GPU a CUDA session runs on (a DeviceBuffer, a ring slot, an IPC region). */
export interface DeviceMemory {
  readonly ptr: bigint;
  /** Bytes available from ptr, when known (checked against the tensor's size). */
  readonly size?: number;
  /**
   * The CUDA stream (cudaStream_t) whose enqueued work writes this memory, e.g. the preprocessing kernel's: the run
   * waits for that work on the device, so the producer hands the memory over without waiting on the host first.
   */
  readonly after?: bigint;
}

export interface Tensor {
  readonly dtype: DType;
  readonly dims: readonly number[];
  /** The elements in host memory; empty for a tensor in device memory. */
  readonly data: TypedArray;
  /** Where the tensor lies in device memory instead (CUDA sessions only; `data` is then empty). */
  readonly device?: DeviceMemory;
}

export type TensorMap = Record<string, Tensor>;

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4,
  float16: 2,
  int8: 1,
  uint8: 1,
  int32: 4,
  int64: 8,
  bool: 1,
  float64: 8,
  int16: 2,
};

/** The TypedArray constructor that holds each dtype (float16 as raw Uint16 bits, bool as Uint8). */
export const DTYPE_ARRAY = {
  float32: Float32Array,
  float16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
  float64: Float64Array,
  int16: Int16Array,
} as const;

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Bytes of a tensor's elements, in host memory or on the device. */
export function byteLengthOf(t: Tensor): number {
  return t.device ? elementCount(t.dims) * DTYPE_BYTES[t.dtype] : t.data.byteLength;
}

export function tensor(dtype: DType, data: TypedArray, dims: readonly number[]): Tensor {
  return { dtype, data, dims: [...dims] };
}

/** A tensor in device memory (no host copy): a CUDA session reads it on its GPU. */
export function deviceTensor(dtype: DType, memory: DeviceMemory, dims: readonly number[]): Tensor {
  return {
    dtype,
    data: new DTYPE_ARRAY[dtype](0),
    dims: [...dims],
    device: {
      ptr: memory.ptr,
      size: memory.size,
      ...(memory.after !== undefined ? { after: memory.after } : {}),
    },
  };
}

/** dtype of a TypedArray as the backends see it (Uint16Array is float16 bits). */
export function dtypeOfArray(data: TypedArray): DType | undefined {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Int16Array) return 'int16';
  return undefined;
}

export function allocate(dtype: DType, dims: readonly number[]): Tensor {
  const Ctor = DTYPE_ARRAY[dtype];
  return tensor(dtype, new Ctor(elementCount(dims)), dims);
}
