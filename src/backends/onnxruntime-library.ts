import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** The libonnxruntime shipped inside onnxruntime-node, which its own binding loads too (so one copy runs). */
export function onnxruntimeLibraryPath(): string | undefined {
  let root: string;
  try {
    root = join(dirname(require.resolve('onnxruntime-node')), '..');
  } catch {
    return undefined;
  }
  const bin = join(root, 'bin');
  if (!existsSync(bin)) return undefined;
  for (const napi of readdirSync(bin).filter((d) => d.startsWith('napi-v'))) {
    const dir = join(bin, napi, process.platform, process.arch);
    if (!existsSync(dir)) continue;
    const lib = readdirSync(dir).find((f) =>
      /^libonnxruntime\.so\.\d+$|^libonnxruntime\.\d+\.dylib$/.test(f),
    );
    if (lib) return join(dir, lib);
  }
  return undefined;
}
