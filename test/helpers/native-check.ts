import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './data.js';

/** The Node-API headers a standalone test addon is built against (npm packages, no Node download). */
export const NAPI_INCLUDE = join(ROOT, 'node_modules', 'node-api-headers', 'include');
export const ADDON_API_INCLUDE = join(ROOT, 'node_modules', 'node-addon-api');
export const HAVE_NAPI_HEADERS =
  existsSync(join(NAPI_INCLUDE, 'node_api.h')) && existsSync(join(ADDON_API_INCLUDE, 'napi.h'));

/**
 * Compiles `sources` (paths under trt/) into a test addon with the project's warning flags (-Werror), the extra
 * system include folders given and the Node-API headers, loads it and returns its exports. The compiler's
 * output is the failure message.
 */
export function compileCheckAddon<T>(name: string, sources: string[], systemIncludes: string[] = []): T {
  const out = join(mkdtempSync(join(tmpdir(), `yqp-${name}-`)), `${name}.node`);
  const r = spawnSync(
    process.env.CXX || 'g++',
    [
      '-std=c++17',
      '-shared',
      '-fPIC',
      '-O1',
      '-Wall',
      '-Wextra',
      '-Werror',
      '-DNAPI_VERSION=8',
      '-DNAPI_CPP_EXCEPTIONS',
      ...[...systemIncludes, NAPI_INCLUDE, ADDON_API_INCLUDE].map((d) => `-isystem${d}`),
      `-I${join(ROOT, 'trt')}`,
      ...sources.map((s) => join(ROOT, 'trt', s)),
      '-o',
      out,
      '-lpthread',
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`${name} did not compile:\n${r.stderr || r.error?.message}`);
  return createRequire(import.meta.url)(out) as T;
}
