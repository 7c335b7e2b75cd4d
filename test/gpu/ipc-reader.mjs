// Child process of test/gpu/ipc-memory.test.ts: opens a raw CUDA IPC region by its handle (hex), checks the
// bytes the parent wrote (value i & 255 at byte i), then writes 255 - (i & 255) back.
import { openIpcMemHandle } from '../../dist/gpu/ipc-memory.js';

const [hex, size] = process.argv.slice(2);
const region = openIpcMemHandle(Buffer.from(hex, 'hex'), 0, Number(size));
const bytes = region.read(0, Number(size));
let wrong = 0;
for (let i = 0; i < bytes.length; i++) if (bytes[i] !== (i & 255)) wrong++;
const back = new Uint8Array(bytes.length).map((_, i) => 255 - (i & 255));
region.write(0, back);
region.close();
process.stdout.write(JSON.stringify({ read: bytes.length, wrong }));
