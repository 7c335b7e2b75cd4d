import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv, { type ErrorObject } from 'ajv';
import { backendEntries, backendNames } from '../backends/index.js';
import { YqpError } from '../errors.js';
import { postprocessorFor } from '../postprocess/index.js';
import type { ModelConfig } from './config.js';
import { parseTritonConfig, type TritonModelConfig } from './triton-config.js';
import { chooseTritonVersion, fromTriton } from './triton-import.js';

export const SCHEMA_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'schemas',
  'config.schema.json',
);
const schema = JSON.parse(await readFile(SCHEMA_PATH, 'utf8')) as {
  $id: string;
  properties: Record<string, unknown>;
};
const ajv = new Ajv.default({ allErrors: true, strict: false });
ajv.addSchema(schema);
// The published schema lists the backends and postprocessors of this package for editors; what is valid here is
// what the registries hold, so the top level checks only the shapes, and each postprocessor checks its own spec.
const validateSchema = ajv.compile<ModelConfig>({
  ...schema,
  $id: schema.$id.replace(/\.json$/, '.runtime.json'),
  properties: {
    ...schema.properties,
    backend: { type: 'string' },
    postprocessing: { type: 'object', required: ['type'], properties: { type: { type: 'string' } } },
  },
});
const postprocessingValidators = new Map<string, ReturnType<typeof ajv.compile>>();

export interface RepositoryEntry {
  /** The entry folder: <repo>/<name>. */
  dir: string;
  name: string;
  config: ModelConfig;
  version: number;
  versionDir: string;
  /** The model file of that version (its backend's BackendEntry.modelFile, or config.pbtxt's default_model_filename). */
  modelPath: string;
  versions: number[];
  /** Which file configured it: yqp-trt's config.json, or Triton's config.pbtxt (or none: Triton's auto-complete). */
  format: 'config.json' | 'config.pbtxt' | 'auto-complete';
  /** What the configuration asks for that is not done here (Triton fields without a counterpart). */
  warnings: string[];
  /** Triton entries: the configuration as Triton reports it, auto-completed fields filled in. */
  triton?: TritonModelConfig;
  /** GPU the entry asks for (a Triton GPU instance group). */
  device?: number;
}

function formatAjvError(e: ErrorObject, prefix = ''): string {
  const inner = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const path = prefix ? (inner ? `${prefix}.${inner}` : prefix) : inner || '(root)';
  if (e.keyword === 'additionalProperties')
    return `${path}: unknown field ${JSON.stringify((e.params as { additionalProperty: string }).additionalProperty)}`;
  if (e.keyword === 'enum')
    return `${path}: expected one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
  return `${path}: ${e.message}`;
}

/** Checks a config against the published schema and the cross-field rules a schema cannot say. */
export function validateConfig(config: unknown, where = 'config.json'): ModelConfig {
  if (!validateSchema(config)) {
    const errors = validateSchema.errors ?? [];
    const first = errors[0];
    const field = first?.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)';
    throw new YqpError('E_CONFIG', `Invalid ${where}: ${errors.map((e) => formatAjvError(e)).join('; ')}`, {
      argument: field,
      expected: first?.message,
    });
  }
  const backends = backendNames();
  if (!backends.includes(config.backend))
    throw new YqpError('E_CONFIG', `Invalid ${where}: backend: expected one of ${backends.join(', ')}`, {
      argument: 'backend',
      expected: backends.join(', '),
      received: String(config.backend),
    });
  const inputNames = new Set(config.inputs.map((i) => i.name));
  for (const [p, profile] of config.profiles.entries()) {
    for (const [name, range] of Object.entries(profile)) {
      const spec = config.inputs.find((i) => i.name === name);
      if (!spec)
        throw new YqpError('E_CONFIG', `Invalid ${where}: profiles.${p} names unknown input ${name}`, {
          argument: `profiles.${p}.${name}`,
        });
      for (const key of ['min', 'opt', 'max'] as const) {
        if (range[key].length !== spec.dims.length)
          throw new YqpError(
            'E_CONFIG',
            `Invalid ${where}: profiles.${p}.${name}.${key} has rank ${range[key].length}, input has rank ${spec.dims.length}`,
            { argument: `profiles.${p}.${name}.${key}` },
          );
      }
    }
  }
  const warmupSizes = typeof config.warmup === 'object' ? (config.warmup.batchSizes ?? []) : [];
  for (const [i, b] of warmupSizes.entries())
    if (b > config.maxBatchSize)
      throw new YqpError(
        'E_CONFIG',
        `Invalid ${where}: warmup.batchSizes.${i} is ${b}, above maxBatchSize ${config.maxBatchSize}`,
        { argument: `warmup.batchSizes.${i}`, expected: `at most ${config.maxBatchSize}` },
      );
  const pre = config.preprocessing;
  if (pre && !inputNames.has(pre.input))
    throw new YqpError('E_CONFIG', `Invalid ${where}: preprocessing.input names unknown input ${pre.input}`, {
      argument: 'preprocessing.input',
    });
  const post = config.postprocessing;
  if (post) {
    const postprocessor = postprocessorFor(post.type, where);
    let check = postprocessingValidators.get(postprocessor.name);
    if (!check) postprocessingValidators.set(postprocessor.name, (check = ajv.compile(postprocessor.schema)));
    if (!check(post)) {
      const errors = check.errors ?? [];
      const first = errors[0];
      const inner = first?.instancePath.replace(/^\//, '').replace(/\//g, '.');
      throw new YqpError(
        'E_CONFIG',
        `Invalid ${where}: ${errors.map((e) => formatAjvError(e, 'postprocessing')).join('; ')}`,
        { argument: inner ? `postprocessing.${inner}` : 'postprocessing', expected: first?.message },
      );
    }
    postprocessor.validate(post, config, where);
  }
  return config;
}

/** Version folders are positive integers, as in Triton. */
export function listVersions(entryDir: string): number[] {
  if (!existsSync(entryDir)) return [];
  return readdirSync(entryDir)
    .filter((d) => /^[1-9][0-9]*$/.test(d) && statSync(join(entryDir, d)).isDirectory())
    .map(Number)
    .sort((a, b) => a - b);
}

export async function readEntry(entryDir: string, version?: number): Promise<RepositoryEntry> {
  const dir = resolve(entryDir);
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) return readTritonEntry(entryDir, version);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (e) {
    throw new YqpError('E_CONFIG', `Invalid ${configPath}: not JSON (${(e as Error).message})`, {
      argument: 'config.json',
      cause: e,
    });
  }
  const config = validateConfig(raw, configPath);
  const versions = listVersions(dir);
  if (versions.length === 0)
    throw new YqpError('E_NOT_FOUND', `Repository entry ${entryDir} has no version folder (1/, 2/, ...)`, {
      argument: 'model',
    });
  const chosen = version ?? versions[versions.length - 1];
  if (!versions.includes(chosen))
    throw new YqpError(
      'E_NOT_FOUND',
      `Repository entry ${entryDir} has no version ${chosen} (has ${versions.join(', ')})`,
      {
        argument: 'version',
        expected: versions.join(', '),
        received: String(chosen),
      },
    );
  const versionDir = join(dir, String(chosen));
  const modelPath = join(versionDir, config.modelFile);
  if (!existsSync(modelPath))
    throw new YqpError(
      'E_NOT_FOUND',
      `Repository entry ${entryDir} version ${chosen} lacks ${config.modelFile}`,
      { argument: 'model' },
    );
  return {
    dir,
    name: basename(dir),
    config,
    version: chosen,
    versionDir,
    modelPath,
    versions,
    format: 'config.json',
    warnings: [],
  };
}

/**
 * A Triton model folder: config.pbtxt mapped onto the entry (triton-import.ts); without one, Triton's
 * auto-complete from the version folder's model file (a backend's modelFile). A folder with neither a config nor a
 * model is E_NOT_FOUND.
 */
async function readTritonEntry(entryDir: string, version?: number): Promise<RepositoryEntry> {
  const dir = resolve(entryDir);
  const pbtxtPath = join(dir, 'config.pbtxt');
  const hasPbtxt = existsSync(pbtxtPath);
  const versions = listVersions(dir);
  const modelFiles = backendEntries().map((b) => b.modelFile);
  const autoModel = versions.some((v) => modelFiles.some((f) => existsSync(join(dir, String(v), f))));
  if (!hasPbtxt && !autoModel)
    throw new YqpError(
      'E_NOT_FOUND',
      existsSync(dir)
        ? `Repository entry ${entryDir} has no config.json or config.pbtxt (and no version folder holding ${modelFiles.join(' or ')} to auto-complete one from)`
        : `Repository entry ${entryDir} not found`,
      { argument: 'model', expected: '<repo>/<name> with config.json or config.pbtxt', received: entryDir },
    );
  const triton = hasPbtxt ? parseTritonConfig(await readFile(pbtxtPath, 'utf8'), pbtxtPath) : {};
  const warnings: string[] = [];
  const where = hasPbtxt ? pbtxtPath : dir;
  if (!hasPbtxt) warnings.push('no config.pbtxt: the configuration is auto-completed from the model file');
  const chosen = chooseTritonVersion(triton, versions, version, where, warnings);
  const versionDir = join(dir, String(chosen));
  const mapped = await fromTriton(triton, basename(dir), versionDir, chosen, where, warnings);
  const config = validateConfig(mapped.config, where);
  return {
    dir,
    name: basename(dir),
    config,
    version: chosen,
    versionDir,
    modelPath: join(versionDir, config.modelFile),
    versions,
    format: hasPbtxt ? 'config.pbtxt' : 'auto-complete',
    warnings: mapped.warnings,
    triton: mapped.triton,
    ...(mapped.device !== undefined ? { device: mapped.device } : {}),
  };
}

/**
 * Names of the entries of a repository: every folder but hidden ones, as in Triton, so a folder that holds no
 * usable configuration is listed (and fails its load with the reason) instead of being skipped.
 */
export function listEntries(repoDir: string): string[] {
  if (!existsSync(repoDir)) return [];
  return readdirSync(repoDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort();
}

/** Resolves <repo>/<name> and refuses names that would leave the repository. */
export function entryPath(repoDir: string, name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) || name.includes('..'))
    throw new YqpError(
      'E_ARGUMENT',
      `Expected a model name of letters, digits, '_', '.', '-' but received ${JSON.stringify(name)}`,
      {
        argument: 'name',
      },
    );
  const root = resolve(repoDir);
  const dir = resolve(root, name);
  if (!dir.startsWith(root + sep))
    throw new YqpError('E_ARGUMENT', `Model name ${name} leaves the repository`, { argument: 'name' });
  return dir;
}

/**
 * Writes a new version of an entry: files into <repo>/<name>/<version>/, then config.json (atomically,
 * through a temporary file) so a reader never sees a config that names files not yet written.
 */
export async function writeEntry(
  repoDir: string,
  config: ModelConfig,
  files: Record<string, Uint8Array | string>,
  version?: number,
): Promise<RepositoryEntry> {
  validateConfig(config, `config of ${config.name}`);
  const dir = entryPath(repoDir, config.name);
  const versions = listVersions(dir);
  const chosen = version ?? 1;
  const versionDir = join(dir, String(chosen));
  await mkdir(versionDir, { recursive: true });
  for (const [name, data] of Object.entries(files)) await writeFile(join(versionDir, name), data);
  const tmp = join(dir, `.config.json.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(config, null, 2) + '\n');
  await rename(tmp, join(dir, 'config.json'));
  return {
    dir,
    name: config.name,
    config,
    version: chosen,
    versionDir,
    modelPath: join(versionDir, config.modelFile),
    versions: [...new Set([...versions, chosen])].sort((a, b) => a - b),
    format: 'config.json',
    warnings: [],
  };
}
