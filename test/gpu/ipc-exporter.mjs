// Child process of test/gpu/serve-cuda.test.ts, a capture process's stand-in: exports a CUDA IPC region of
// argv[2] bytes, writes the file argv[3] into it at offset argv[4], prints {"handle": hex} and holds the region
// until its stdin closes (CUDA opens an IPC handle only in another process than the one that exported it).
import { readFileSync } from 'node:fs';
import { exportIpcMemory } from '../../dist/gpu/ipc-memory.js';

const [size, file, offset] = process.argv.slice(2);
const region = exportIpcMemory(Number(size));
region.write(Number(offset), new Uint8Array(readFileSync(file)));
process.stdout.write(`${JSON.stringify({ handle: Buffer.from(region.handle).toString('hex') })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  region.close();
  process.exit(0);
});
