import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv, { type ErrorObject } from 'ajv';
import { YqpError } from '../errors.js';
import type { ModelConfig } from './config.js';

export const SCHEMA_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'schemas',
  'config.schema.json',
);
const schema = JSON.parse(await readFile(SCHEMA_PATH, 'utf8')) as object;
const ajv = new Ajv.default({ allErrors: true, strict: false });
const validateSchema = ajv.compile<ModelConfig>(schema);

export interface RepositoryEntry {
  /** The entry folder: <repo>/<name>. */
  dir: string;
  name: string;
  config: ModelConfig;
  version: number;
  versionDir: string;
  /** The model file of that version (model.onnx or model.plan). */
  modelPath: string;
  versions: number[];
}

function formatAjvError(e: ErrorObject): string {
  const path = e.instancePath ? e.instancePath.replace(/^\//, '').replace(/\//g, '.') : '(root)';
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
    throw new YqpError('E_CONFIG', `Invalid ${where}: ${errors.map(formatAjvError).join('; ')}`, {
      argument: field,
      expected: first?.message,
    });
  }
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
  const outputNames = new Set(config.outputs.map((o) => o.name));
  const post = config.postprocessing;
  if (post) {
    for (const name of post.type === 'blazeface'
      ? [...post.scores, ...post.boxes]
      : [post.landmarks, post.presence])
      if (!outputNames.has(name))
        throw new YqpError('E_CONFIG', `Invalid ${where}: postprocessing names unknown output ${name}`, {
          argument: 'postprocessing',
        });
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
  if (!existsSync(configPath)) {
    throw new YqpError('E_NOT_FOUND', `Repository entry ${entryDir} not found (no config.json)`, {
      argument: 'model',
      expected: '<repo>/<name> with config.json',
      received: entryDir,
    });
  }
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
  return { dir, name: basename(dir), config, version: chosen, versionDir, modelPath, versions };
}

/** Names of the entries of a repository (folders holding a config.json). */
export function listEntries(repoDir: string): string[] {
  if (!existsSync(repoDir)) return [];
  return readdirSync(repoDir)
    .filter((d) => existsSync(join(repoDir, d, 'config.json')))
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
  };
}
