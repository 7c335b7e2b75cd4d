// Child process of test/gpu/serve-cuda.test.ts, a capture process's stand-in: exports a CUDA IPC region of
// argv[2] bytes, writes the file argv[3] into it at offset argv[4], prints {"handle": hex} and holds the region
// until its stdin closes (CUDA opens an IPC handle only in another process than the one that exported it). A line
// `read <offset> <length>` on stdin prints {"b64": ...} of those bytes of the region (what a client reads back).
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { exportIpcMemory } from '../../dist/gpu/ipc-memory.js';

const [size, file, offset] = process.argv.slice(2);
const region = exportIpcMemory(Number(size));
region.write(Number(offset), new Uint8Array(readFileSync(file)));
process.stdout.write(`${JSON.stringify({ handle: Buffer.from(region.handle).toString('hex') })}\n`);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [op, at, length] = line.trim().split(/\s+/);
  if (op !== 'read') return;
  const bytes = region.read(Number(at), Number(length));
  process.stdout.write(`${JSON.stringify({ b64: Buffer.from(bytes).toString('base64') })}\n`);
});
lines.on('close', () => {
  region.close();
  process.exit(0);
});
