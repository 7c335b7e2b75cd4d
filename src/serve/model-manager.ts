/**
 * The models a server holds: loaded from one repository, one version each (the highest, Triton's default
 * "latest 1" policy, or the one asked for), loaded and unloaded at run time. A model that fails to load is
 * recorded UNAVAILABLE with its reason; the others keep serving.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { YqpError } from '../errors.js';
import { loadModel, type LoadModelOptions, type Model } from '../model.js';
import { entryPath, listEntries, listVersions, readEntry } from '../repository/repository.js';

export type ModelState = 'READY' | 'LOADING' | 'UNLOADING' | 'UNAVAILABLE';

export interface IndexEntry {
  name: string;
  version?: string;
  state: ModelState;
  reason?: string;
}

/** One line for the server's log: "model face version 1: READY", with the reason when it is not ready. */
export function describeIndexEntry(e: IndexEntry): string {
  return `model ${e.name}${e.version ? ` version ${e.version}` : ''}: ${e.state}${e.reason && e.state !== 'READY' ? ` (${e.reason})` : ''}`;
}

/** One log line on a loaded model's warm-up: "model face: warmed up batch 16..1 on 4 contexts (64 runs, 150 ms)". */
export function describeWarmup(m: Model): string {
  const w = m.warmup;
  if ('skipped' in w) return `model ${m.name}: no warm-up (${w.skipped})`;
  const sizes = w.batchSizes;
  const contiguous = sizes.every((b, i) => i === 0 || sizes[i - 1] - b === 1);
  const what =
    sizes.length === 0
      ? 'its fixed shape'
      : sizes.length > 2 && contiguous
        ? `batch ${sizes[0]}..${sizes.at(-1)}`
        : sizes.length <= 6
          ? `batch ${sizes.join(', ')}`
          : `${sizes.length} batch sizes from ${sizes[0]} to ${sizes.at(-1)}`;
  return `model ${m.name}: warmed up ${what} on ${w.contexts} context${w.contexts === 1 ? '' : 's'} (${w.runs} run${w.runs === 1 ? '' : 's'}, ${Math.round(w.ms)} ms)`;
}

interface Slot {
  name: string;
  state: ModelState;
  reason?: string;
  model?: Model;
  /** Serializes load/unload of one name. */
  pending?: Promise<void>;
}

export type ModelLoadOptions = Omit<LoadModelOptions, 'version'>;

/** This process's part of every model when several server processes share the machine (`serve --http-workers`). */
export interface ContextShare {
  /** 0-based index of this process. */
  index: number;
  /** Number of server processes. */
  of: number;
}

/**
 * The load options one of `share.of` server processes uses: the model's contexts (option or config instances)
 * dealt out among the processes, at least one each, and the defaults that depend on the machine (intra-op
 * threads, spinning) taken from the whole count, so N processes together use the cores one process would.
 */
export function shareOptions(
  options: LoadModelOptions,
  instances: number,
  share: ContextShare,
): LoadModelOptions {
  const total = options.contexts ?? instances;
  const contexts = Math.max(1, Math.floor(total / share.of) + (share.index < total % share.of ? 1 : 0));
  const cores = availableParallelism();
  const threadsPerContext =
    options.threadsPerContext ?? Math.max(1, Math.floor(cores / Math.max(total, share.of)));
  const spinWait = options.spinWait ?? Math.max(total, share.of) * threadsPerContext < cores;
  return { ...options, contexts, threadsPerContext, spinWait };
}

export interface ModelManagerEvents {
  loaded: [Model];
  unloaded: [Model];
}

export class ModelManager extends EventEmitter<ModelManagerEvents> {
  private readonly slots = new Map<string, Slot>();

  constructor(
    readonly repoDir: string,
    private readonly loadOptions: ModelLoadOptions = {},
    /** Per-model overrides (contexts, batching) keyed by name. */
    private readonly perModel: Record<string, ModelLoadOptions> = {},
    /** Set when this is one of several server processes: each loads its share of every model's contexts. */
    private readonly share?: ContextShare,
  ) {
    super();
  }

  /** Loads the given names (default: every entry); failures are recorded, never thrown. */
  async loadAll(names?: string[]): Promise<IndexEntry[]> {
    const list = names ?? listEntries(this.repoDir);
    // A name asked for at start that the repository lacks is a typo to say, not a ghost to keep. A folder without
    // config.json is still an entry (Triton's config.pbtxt, or auto-complete from its model): its load says why not.
    for (const n of list)
      if (!existsSync(entryPath(this.repoDir, n)))
        throw new YqpError(
          'E_NOT_FOUND',
          `Unknown model ${JSON.stringify(n)} in --load-model: the repository has ${
            listEntries(this.repoDir)
              .map((e) => JSON.stringify(e))
              .join(', ') || 'no entries'
          }`,
          { argument: '--load-model', received: n },
        );
    await Promise.all(list.map((n) => this.load(n).catch(() => undefined)));
    return this.index();
  }

  /** Loads (or reloads) a model; the old version keeps serving until the new one is ready. */
  async load(name: string, version?: number): Promise<Model> {
    const dir = entryPath(this.repoDir, name); // refuses names that leave the repository
    // A name with no entry leaves nothing behind (no slot in the index, no metrics series).
    // (A folder is an entry: config.json, Triton's config.pbtxt, or auto-complete; its load says what is missing.)
    if (!this.slots.has(name) && !existsSync(dir))
      throw new YqpError(
        'E_NOT_FOUND',
        `Unknown model: ${JSON.stringify(name)} (no such entry in the model repository)`,
        { argument: 'model', received: name },
      );
    const slot = this.slots.get(name) ?? { name, state: 'UNAVAILABLE' as ModelState };
    this.slots.set(name, slot);
    const previous = slot.pending ?? Promise.resolve();
    let result!: Model;
    const run = previous.then(async () => {
      const old = slot.model;
      if (!old) slot.state = 'LOADING';
      try {
        let options: LoadModelOptions = { ...this.loadOptions, ...this.perModel[name], version };
        if (this.share && this.share.of > 1)
          options = shareOptions(options, (await readEntry(dir, version)).config.instances, this.share);
        const model = await loadModel(dir, options);
        slot.model = model;
        slot.state = 'READY';
        slot.reason = undefined;
        result = model;
        this.emit('loaded', model);
      } catch (e) {
        if (!old) {
          slot.state = 'UNAVAILABLE';
          slot.reason = (e as Error).message;
        }
        throw e;
      }
      if (old) {
        this.emit('unloaded', old);
        await old.close();
      }
    });
    slot.pending = run.catch(() => undefined);
    await run;
    return result;
  }

  /** Stops the model taking requests, lets queued and running ones finish, then frees it. */
  async unload(name: string): Promise<void> {
    entryPath(this.repoDir, name);
    const slot = this.slots.get(name);
    if (!slot)
      throw new YqpError('E_NOT_FOUND', `Model ${JSON.stringify(name)} is not loaded`, { argument: 'model' });
    const run = (slot.pending ?? Promise.resolve()).then(async () => {
      const model = slot.model;
      slot.model = undefined;
      slot.state = model ? 'UNLOADING' : slot.state;
      if (model) {
        this.emit('unloaded', model);
        await model.close();
      }
      slot.state = 'UNAVAILABLE';
      slot.reason = 'unloaded';
    });
    slot.pending = run.catch(() => undefined);
    await run;
  }

  /**
   * The model serving `name` (and `version`, if given). Unknown names and versions are E_NOT_FOUND (404);
   * a known model that is not ready is E_CLOSED (503) with the reason.
   */
  get(name: string, version?: string): Model {
    const slot = this.slots.get(name);
    if (!slot)
      throw new YqpError('E_NOT_FOUND', `Unknown model: ${JSON.stringify(name)}`, {
        argument: 'model',
        received: name,
      });
    if (!slot.model)
      throw new YqpError(
        'E_CLOSED',
        `Model ${JSON.stringify(name)} is not ready (${slot.state.toLowerCase()}${slot.reason ? `: ${slot.reason}` : ''})`,
        { argument: 'model' },
      );
    if (version !== undefined && version !== '' && String(slot.model.version) !== version)
      throw new YqpError(
        'E_NOT_FOUND',
        `Model ${JSON.stringify(name)} has no version ${JSON.stringify(version)} loaded (loaded: ${slot.model.version})`,
        { argument: 'version', expected: String(slot.model.version), received: version },
      );
    return slot.model;
  }

  /** Whether `name` is known to the server (loaded, failed or unloaded). */
  has(name: string): boolean {
    return this.slots.has(name);
  }

  loaded(): Model[] {
    return [...this.slots.values()].flatMap((s) => (s.model ? [s.model] : []));
  }

  /** Every entry of the repository and every model ever loaded, with state (Triton's repository index). */
  index(readyOnly = false): IndexEntry[] {
    const names = new Set([...listEntries(this.repoDir), ...this.slots.keys()]);
    const out: IndexEntry[] = [];
    for (const name of [...names].sort()) {
      const slot = this.slots.get(name);
      if (slot?.model) out.push({ name, version: String(slot.model.version), state: slot.state });
      else if (!readyOnly) {
        const versions = listVersions(`${this.repoDir}/${name}`);
        out.push({
          name,
          ...(versions.length ? { version: String(versions[versions.length - 1]) } : {}),
          state: slot?.state ?? 'UNAVAILABLE',
          reason: slot?.reason ?? 'not loaded',
        });
      }
    }
    return out;
  }

  /** Every loaded model ready, and at least one. */
  ready(): boolean {
    const slots = [...this.slots.values()];
    return slots.some((s) => s.state === 'READY');
  }

  /** Drains every model: queued and running requests finish, then contexts are freed. */
  async closeAll(): Promise<void> {
    await Promise.all(
      [...this.slots.values()].map(async (slot) => {
        await slot.pending;
        const m = slot.model;
        slot.model = undefined;
        slot.state = 'UNAVAILABLE';
        slot.reason = 'server shutting down';
        if (m) await m.close();
      }),
    );
  }
}
