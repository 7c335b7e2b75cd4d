import { YqpError, expectOneOf } from '../errors.js';
import type { DoctorCheck } from '../doctor-check.js';
import type { ModelConfig, TensorSpec } from '../repository/config.js';
import type { Backend, BackendAvailability } from './backend.js';

/** Backend names are the registry's keys; the registry, not a union type, says which exist. */
export type BackendName = string;

/** What a backend's build step gets: the ONNX model to turn into the backend's model file. */
export interface BackendBuildContext {
  /** The ONNX model (FP32, or the Q/DQ model after INT8 calibration). */
  onnxPath: string;
  /** The entry's config as written so far (profiles, precision, pre/postprocessing). */
  config: ModelConfig;
  /** Options for this backend's builder: BuildOptions[<backend name>] (e.g. the TensorRT builder flags). */
  options: Record<string, unknown>;
  progress: (message: string, fraction?: number) => void;
}

export interface BackendBuildResult {
  /** The bytes of the entry's model file (BackendEntry.modelFile). */
  model: Uint8Array;
  /** Merged into config.metadata (e.g. { tensorrt: plan metadata }). */
  metadata?: Record<string, unknown>;
  notes?: string[];
}

/** A backend's part of `yqp-trt doctor`: its checks, and the report fields it owns. */
export interface BackendDoctor {
  checks: DoctorCheck[];
  /** Fields merged into DoctorReport (kept for the `doctor --json` readers: embeddedBackendWorks, ...). */
  report?: Record<string, unknown>;
  /** Its clause of the summary line, e.g. "tensorrt backend: available". */
  summary: string;
}

/** What a backend is in Triton's model configuration (config.pbtxt read in, and derived from config.json). */
export interface BackendTriton {
  /** Triton's `backend` field (onnxruntime, tensorrt); its `platform` is BackendEntry.platform. */
  readonly backend: string;
  /**
   * Where Triton's instance groups put it. 'gpu': only on a GPU (KIND_CPU is refused, KIND_AUTO is KIND_GPU on
   * the entry's GPU, instance_group gpus choose that GPU). 'any': the CPU unless a group is KIND_GPU, which puts the
   * model on a CUDA device (config.json `device` 'cuda:<gpus[0]>'; optimization.cuda.graphs is its `cudaGraph`).
   * 'cpu': a Triton folder runs on the CPU here (KIND_GPU is warned about, gpus are ignored).
   */
  readonly instanceKind: 'gpu' | 'any' | 'cpu';
  /**
   * Present when it captures CUDA graphs (config.metadata.runtime.cudaGraphs, which optimization.cuda.graphs maps
   * onto); the value is what it does when the entry does not say.
   */
  readonly cudaGraphsDefault?: boolean;
  /** Triton execution accelerators (optimization.execution_accelerators) this backend is the way to here. */
  readonly replacesAccelerators?: readonly string[];
}

/**
 * One backend, one entry. Everything outside src/backends/ that needs to know about backends (build, doctor, the
 * repository, loadModel, serve) asks these fields instead of comparing names.
 */
export interface BackendEntry {
  readonly name: BackendName;
  /** How log lines name it ("TensorRT"). */
  readonly displayName: string;
  /** The file inside each version folder this backend runs (model.onnx, model.plan). */
  readonly modelFile: string;
  /** Triton's platform string for the model metadata endpoint and config.pbtxt (onnxruntime_onnx, tensorrt_plan). */
  readonly platform: string;
  readonly triton: BackendTriton;
  /** What its build step writes, as hints name it ("a TensorRT engine"); absent without a build step. */
  readonly builtModel?: string;
  /**
   * The embedded backend: works wherever the package installs, runs the build's own proofs (dynamic batch) and is
   * what `auto` falls back to. Exactly one entry has it.
   */
  readonly embedded?: boolean;
  /** `auto` takes the available entry of highest priority (the embedded one has 0). */
  readonly autoPriority: number;
  /** What a machine needs for this backend, for the error when it is unavailable. */
  readonly requires?: string;
  /** What every HTTP worker process of `serve --http-workers N` pays for this backend, said once at load. */
  readonly perProcessNote?: string;
  /** The backend itself, loaded on first use (TensorRT's needs the native addon, onnxruntime's never does). */
  load(): Promise<Backend>;
  /** Never throws: unavailable with a reason instead. */
  availability(): Promise<BackendAvailability>;
  /**
   * The model file's own inputs and outputs, where the file can be read without the backend's hardware (ONNX);
   * absent when it cannot (a TensorRT plan needs TensorRT). Triton's auto-complete fills configs from it.
   */
  modelIo?(modelPath: string): Promise<{ inputs: TensorSpec[]; outputs: TensorSpec[] }>;
  /** ONNX to this backend's model file; absent when the backend runs the ONNX model itself. */
  build?(context: BackendBuildContext): Promise<BackendBuildResult>;
  doctor?(): Promise<BackendDoctor>;
}

const entries = new Map<BackendName, BackendEntry>();

/** Adds a backend. Names are unique; a second entry of one name is refused, not silently replaced. */
export function registerBackend(entry: BackendEntry): void {
  if (entries.has(entry.name))
    throw new YqpError('E_INTERNAL', `A backend named ${entry.name} is already registered`, {
      argument: 'backend',
    });
  if (entry.embedded && [...entries.values()].some((e) => e.embedded))
    throw new YqpError('E_INTERNAL', `Backend ${entry.name} is marked embedded, but one already is`);
  entries.set(entry.name, entry);
}

/** Registered names, in registration order (the embedded backend first). */
export function backendNames(): BackendName[] {
  return [...entries.keys()];
}

export function backendEntries(): BackendEntry[] {
  return [...entries.values()];
}

/** The entry of a name; an unknown name is an E_ARGUMENT naming the field and the known names. */
export function backendEntry(name: unknown, argument = 'backend'): BackendEntry {
  const known = expectOneOf(argument, name, backendNames());
  return entries.get(known)!;
}

/** The entry of Triton's `platform` string (onnxruntime_onnx), if one is registered. */
export function backendForTritonPlatform(platform: string): BackendEntry | undefined {
  return [...entries.values()].find((e) => e.platform === platform);
}

/** The entry of Triton's `backend` field (onnxruntime), if one is registered. */
export function backendForTritonBackend(backend: string): BackendEntry | undefined {
  return [...entries.values()].find((e) => e.triton.backend === backend);
}

/** The entry whose model file has this file's extension (face.plan: the one running model.plan), if any. */
export function backendForModelFile(file: string): BackendEntry | undefined {
  const extension = (name: string) => name.slice(name.indexOf('.'));
  return [...entries.values()].find((e) => file.endsWith(extension(e.modelFile)));
}

export function embeddedBackend(): BackendEntry {
  const e = [...entries.values()].find((x) => x.embedded);
  if (!e) throw new YqpError('E_INTERNAL', 'No embedded backend is registered');
  return e;
}

/** The backend of a name, loaded and checked: an unavailable one is refused with what is missing. */
export async function getBackend(name: BackendName): Promise<Backend> {
  const entry = backendEntry(name);
  if (entry.embedded) return entry.load();
  const availability = await entry.availability();
  if (!availability.available)
    throw new YqpError(
      'E_BACKEND_UNAVAILABLE',
      `The ${entry.name} backend is unavailable: ${availability.reason}`,
      {
        argument: 'backend',
        expected: entry.requires ?? `a machine where the ${entry.name} backend runs`,
        received: availability.reason,
        solutions: ['run `yqp-trt doctor` to see what is missing', `use --backend ${embeddedBackend().name}`],
      },
    );
  return entry.load();
}

export async function backendAvailability(name: BackendName): Promise<BackendAvailability> {
  return backendEntry(name).availability();
}

/** auto: the available backend of highest priority (a GPU backend where it runs), else the embedded one. */
export async function resolveBackend(choice: 'auto' | BackendName): Promise<BackendName> {
  if (choice !== 'auto') return backendEntry(choice).name;
  const ranked = backendEntries()
    .filter((e) => !e.embedded)
    .sort((a, b) => b.autoPriority - a.autoPriority);
  for (const e of ranked) if ((await e.availability()).available) return e.name;
  return embeddedBackend().name;
}
