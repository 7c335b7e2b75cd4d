/** podman for the image tests: the runtime and configuration this kind of machine needs, said once. */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/data.js';

const run = promisify(execFile);

/**
 * Where crun fails on cgroups (the dev VMs), runc works: used when it is installed, unless YQP_PODMAN_RUNTIME
 * names another (empty: podman's default). The default ulimits fail there on RLIMIT_NOFILE, so unless
 * CONTAINERS_CONF is set, podman reads a containers.conf of ours with `default_ulimits = []`.
 */
export function podmanEnv(): NodeJS.ProcessEnv {
  if (process.env.CONTAINERS_CONF) return process.env;
  const dir = join(ROOT, '.cache', 'image');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'containers.conf');
  writeFileSync(conf, '[containers]\ndefault_ulimits = []\n');
  return { ...process.env, CONTAINERS_CONF: conf };
}

export function runtimeArgs(): string[] {
  const chosen = process.env.YQP_PODMAN_RUNTIME;
  if (chosen !== undefined) return chosen ? ['--runtime', chosen] : [];
  return spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).stdout.trim()
    ? ['--runtime', 'runc']
    : [];
}

export async function podman(...args: string[]): Promise<string> {
  const { stdout } = await run('podman', args, {
    env: podmanEnv(),
    maxBuffer: 64 * 1024 * 1024,
    timeout: 300_000,
  });
  return stdout.trim();
}

/** A container's output: the server writes its log to stderr, which `podman logs` passes through as stderr. */
export async function podmanLogs(name: string): Promise<string> {
  const { stdout, stderr } = await run('podman', ['logs', name], {
    env: podmanEnv(),
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout + stderr;
}

/** Missing tools are a failure naming the install, not a skip: this suite runs only when asked for. */
export function requireTools(): void {
  for (const tool of ['podman', 'mmdebstrap'])
    if (!spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim())
      throw new Error(`npm run test:image needs ${tool}: apt-get install podman mmdebstrap`);
}

/** npm run image [--cuda]: the image tags it printed. */
export async function buildImage(cuda: boolean): Promise<string[]> {
  const { stdout } = await run(
    'bash',
    [join(ROOT, 'scripts/image/build-image.sh'), ...(cuda ? ['--cuda'] : [])],
    {
      cwd: ROOT,
      env: podmanEnv(),
      maxBuffer: 16 * 1024 * 1024,
      timeout: 900_000,
    },
  );
  return stdout
    .trim()
    .split('\n')
    .filter((line) => /^localhost\/\S+:\S+$/.test(line));
}
