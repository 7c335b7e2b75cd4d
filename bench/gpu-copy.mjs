// `npm run bench -- gpu-copy [--total-mib N] [--no-peer]`
// Host -> device (and device -> host) copies through the runtime core: pinned pool memory against pageable
// JS memory (Uint8Array), at 1, 8, 64 and 256 MiB, as GB/s and as a fraction of the bus peak of this run:
// the PCIe link's payload rate from NVML (generation x width, 128b/130b) and the best pinned rate measured
// here. Peer: PyTorch pinned tensor .to('cuda', non_blocking=True) in the same run (ratio ours / PyTorch).
// Target (issue 5): pinned >= 80% of the bus peak.
import { spawnSync } from 'node:child_process';
import { allocDevice, allocPinned, copy, createStreamPool, loadRuntime } from '../dist/gpu/runtime.js';
import { pcieLinkBytesPerSec, sample } from '../dist/gpu/nvml.js';

const arg = (args, name, fallback) =>
  args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback;
const GB = 1e9;
const MiB = 1 << 20;

async function rate(dst, src, stream, size, totalBytes) {
  const reps = Math.max(3, Math.ceil(totalBytes / size));
  await copy(dst, src, stream); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const pending = [];
  for (let i = 0; i < reps; i++) pending.push(copy(dst, src, stream));
  await Promise.all(pending);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return {
    bytesPerSec: (reps * size) / seconds,
    cpuMsPerGB: (cpu.user + cpu.system) / 1e3 / ((reps * size) / GB),
  };
}

const TORCH_PEER = `
import json, sys, time, torch
out = {}
for mib in [int(a) for a in sys.argv[1:]]:
    n = mib << 20
    h = torch.empty(n, dtype=torch.uint8, pin_memory=True); d = torch.empty(n, dtype=torch.uint8, device='cuda')
    reps = max(3, (4096 << 20) // n)
    d.copy_(h, non_blocking=True); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps): d.copy_(h, non_blocking=True)
    torch.cuda.synchronize(); out[mib] = reps * n / (time.perf_counter() - t)
print(json.dumps({"torch": torch.__version__, "rates": out}))
`;

export default async function main(args) {
  const { runtime, reason } = loadRuntime();
  if (!runtime) {
    console.log(`gpu-copy: skipped: ${reason}`);
    return;
  }
  const total = Number(arg(args, 'total-mib', '4096')) * MiB;
  const sizes = [1, 8, 64, 256];
  const streams = createStreamPool(1);
  const s = streams.handle(0);
  const nv = sample();
  const g = nv.available ? nv.gpus[0] : undefined;
  const link = g?.pcieLinkGeneration ? pcieLinkBytesPerSec(g.pcieLinkGeneration, g.pcieLinkWidth) : undefined;
  console.log(
    `GPU: ${g?.name ?? 'unknown'}; PCIe Gen${g?.pcieLinkGeneration ?? '?'} x${g?.pcieLinkWidth ?? '?'} ` +
      (link ? `(link payload peak ${(link / GB).toFixed(1)} GB/s)` : '(NVML unavailable: no link peak)'),
  );
  let peer;
  if (!args.includes('--no-peer')) {
    const r = spawnSync('python3', ['-c', TORCH_PEER, ...sizes.map(String)], { encoding: 'utf8' });
    peer = r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop()) : undefined;
    if (!peer) console.log(`PyTorch peer unavailable: ${r.stderr.trim().split('\n').pop()}`);
  }
  const rows = [];
  for (const mib of sizes) {
    const size = mib * MiB;
    const dev = allocDevice(size);
    const pinned = allocPinned(size);
    pinned.array.fill(1);
    const pageable = new Uint8Array(size).fill(1);
    const h2dPinned = await rate(dev, pinned, s, size, total);
    const h2dPageable = await rate(dev, pageable, s, size, Math.min(total, 1024 * MiB));
    const d2hPinned = await rate(pinned, dev, s, size, total);
    const d2hPageable = await rate(pageable, dev, s, size, Math.min(total, 1024 * MiB));
    rows.push({ mib, h2dPinned, h2dPageable, d2hPinned, d2hPageable, torch: peer?.rates?.[mib] });
    dev.dispose();
    pinned.dispose();
  }
  const measuredPeak = Math.max(
    ...rows.map((r) => Math.max(r.h2dPinned.bytesPerSec, r.d2hPinned.bytesPerSec)),
  );
  console.log(
    `measured bus peak (best pinned copy, either direction): ${(measuredPeak / GB).toFixed(1)} GB/s`,
  );
  console.log(
    'size MiB | H2D pinned GB/s | H2D pageable GB/s | pinned/pageable | pinned/link | pinned/measured peak | D2H pinned | D2H pageable | PyTorch H2D pinned | ours/PyTorch | CPU ms/GB pinned | CPU ms/GB pageable',
  );
  for (const r of rows) {
    const f = (x) => (x / GB).toFixed(2);
    console.log(
      [
        r.mib,
        f(r.h2dPinned.bytesPerSec),
        f(r.h2dPageable.bytesPerSec),
        (r.h2dPinned.bytesPerSec / r.h2dPageable.bytesPerSec).toFixed(2) + 'x',
        link ? ((100 * r.h2dPinned.bytesPerSec) / link).toFixed(1) + '%' : 'n/a',
        ((100 * r.h2dPinned.bytesPerSec) / measuredPeak).toFixed(1) + '%',
        f(r.d2hPinned.bytesPerSec),
        f(r.d2hPageable.bytesPerSec),
        r.torch ? f(r.torch) : 'n/a',
        r.torch ? (r.h2dPinned.bytesPerSec / r.torch).toFixed(2) + 'x' : 'n/a',
        r.h2dPinned.cpuMsPerGB.toFixed(1),
        r.h2dPageable.cpuMsPerGB.toFixed(1),
      ].join(' | '),
    );
  }
  streams.dispose();
}
