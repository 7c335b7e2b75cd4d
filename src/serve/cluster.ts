/**
 * `yqp-trt serve --http-workers N`: N server processes behind one port (node:cluster; the primary hands out
 * connections round-robin), each an InferenceServer with its share of every model's contexts. One event loop
 * tops out at a few thousand 196 KB request bodies a second while the contexts still wait for work; several
 * loops feed them (Triton's HTTP front end has several threads for the same reason).
 *
 * What a client changes must reach every process, so the repository and shared-memory endpoints are
 * broadcast through the primary, in one order, and kept there to replay into a process that replaces one that
 * died. /metrics and the statistics endpoint gather every process's figures and answer their sum.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { YqpError } from '../errors.js';
import {
  WORKER_ENV,
  type OpError,
  type ReportKind,
  type SharedOp,
  type ToPrimary,
  type ToWorker,
} from './cluster-messages.js';
import { describeIndexEntry } from './model-manager.js';
import type { ServerOptions } from './options.js';

interface Member {
  index: number;
  worker: Worker;
  /** Listening, and in every broadcast since its replay. */
  serving: boolean;
  /** Replies awaited from it, by message id. */
  waiting: Map<number, (m: ToPrimary | undefined) => void>;
}

/**
 * The primary: forks `workers` server processes, starts them listening on one port once each has loaded its
 * models, orders and fans out their broadcasts, replaces one that dies (replaying what the others hold), and on
 * SIGTERM/SIGINT lets every one drain, then exits 0.
 */
export async function serveCluster(
  options: ServerOptions,
  workers: number,
  log: (line: string) => void,
): Promise<void> {
  // Hooks for tests (functions) cannot cross to a worker; the CLI never sets them.
  const { cudaIpc: _c, nvmlSampler: _n, ...plain } = options;
  const execArgv = process.execArgv.some((a) => a.startsWith('--initial-old-space-size'))
    ? process.execArgv
    : [...process.execArgv, '--initial-old-space-size=128'];
  cluster.setupPrimary({ exec: fileURLToPath(new URL('./cluster-worker.js', import.meta.url)), execArgv });
  const members = new Map<number, Member>();
  // What clients changed, in order, keyed so a later change replaces an earlier one of the same thing.
  const replay = new Map<string, SharedOp>();
  let chain: Promise<unknown> = Promise.resolve();
  let nextId = 0;
  let stopping = false;
  let started = false;
  const restarts: number[] = [];

  const keyOf = (op: SharedOp): string =>
    op.op === 'load' || op.op === 'unload' ? `model:${op.model}` : `shm:${op.kind}:${op.region ?? '*'}`;
  const record = (op: SharedOp) => {
    if (op.op === 'unregister' && op.region === undefined)
      for (const [k, o] of [...replay.entries()])
        if (k.startsWith(`shm:${op.kind}:`) && o.op === 'register' && o.owner === op.owner) replay.delete(k);
    const key = keyOf(op);
    replay.delete(key);
    if (op.op !== 'unregister') replay.set(key, op);
  };

  // A worker may die between a message and its reply: sending to it then must not throw (or emit an
  // unhandled 'error'); what it owed is settled by its 'exit'.
  const post = (worker: Worker, msg: ToWorker): boolean => {
    if (!worker.isConnected()) return false;
    try {
      worker.send(msg, () => undefined);
      return true;
    } catch {
      return false;
    }
  };

  const request = (m: Member, msg: ToWorker & { id: number }): Promise<ToPrimary | undefined> =>
    new Promise((resolve) => {
      if (!post(m.worker, msg)) return resolve(undefined);
      m.waiting.set(msg.id, resolve);
    });

  const applyOn = async (targets: Member[], op: SharedOp): Promise<OpError[]> => {
    const id = ++nextId;
    const replies = await Promise.all(targets.map((m) => request(m, { t: 'apply', id, op })));
    return replies
      .map((r, i) =>
        r?.t === 'applied'
          ? r.error
          : { worker: targets[i].index, code: 'E_INTERNAL', message: 'the HTTP worker exited' },
      )
      .filter((e): e is OpError => e !== undefined);
  };

  const broadcast = (op: SharedOp): Promise<OpError[]> => {
    const run = chain.then(async () => {
      const targets = [...members.values()].filter((m) => m.serving);
      const errors = await applyOn(targets, op);
      if (errors.length < targets.length) record(op);
      return errors;
    });
    chain = run.catch(() => undefined);
    return run;
  };

  const gather = async (what: ReportKind): Promise<unknown[]> => {
    const id = ++nextId;
    const targets = [...members.values()].filter((m) => m.serving);
    // A process too busy to answer within 5 s is left out of this scrape rather than holding it.
    const replies = await Promise.all(
      targets.map((m) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<undefined>(
          (resolve) => (timer = setTimeout(() => resolve(undefined), 5000)),
        );
        return Promise.race([request(m, { t: 'report', id, what }), late]).finally(() => {
          clearTimeout(timer);
          m.waiting.delete(id);
        });
      }),
    );
    return replies.flatMap((r) => (r?.t === 'reported' ? [r.data] : []));
  };

  let startupFailure: ((e: Error) => void) | undefined;
  const listening = new Map<number, string>();
  let allListening: (() => void) | undefined;

  const fork = (index: number): Member => {
    const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify({ options: plain, index, of: workers }) });
    const m: Member = { index, worker, serving: false, waiting: new Map() };
    let fatal: string | undefined;
    members.set(index, m);
    worker.on('message', (msg: ToPrimary) => {
      switch (msg.t) {
        case 'loaded':
          if (index === 0 && !started) for (const e of msg.models) log(describeIndexEntry(e));
          // Replay in the broadcast order, so no change lands between the replay and the first broadcast.
          chain = chain
            .then(async () => {
              for (const op of replay.values()) await applyOn([m], op);
              m.serving = post(worker, { t: 'listen' });
            })
            .catch(() => undefined);
          return;
        case 'fatal':
          fatal = msg.message;
          return;
        case 'listening':
          listening.set(index, msg.address);
          if (started) log(`HTTP worker ${index} (pid ${worker.process.pid}) is serving again`);
          if (listening.size === workers) allListening?.();
          return;
        case 'broadcast':
          void broadcast(msg.op).then((errors) => post(worker, { t: 'broadcast-done', id: msg.id, errors }));
          return;
        case 'gather':
          void gather(msg.what).then((data) => post(worker, { t: 'gathered', id: msg.id, data }));
          return;
        case 'applied':
        case 'reported': {
          const resolve = m.waiting.get(msg.id);
          m.waiting.delete(msg.id);
          resolve?.(msg);
          return;
        }
      }
    });
    worker.on('error', (e) => log(`HTTP worker ${index}: ${e.message}`));
    worker.on('exit', (code, signal) => {
      members.delete(index);
      listening.delete(index);
      for (const resolve of m.waiting.values()) resolve(undefined);
      m.waiting.clear();
      if (stopping) return;
      const how = (signal ? `signal ${signal}` : `code ${code}`) + (fatal ? `: ${fatal}` : '');
      if (!started) {
        startupFailure?.(
          new YqpError('E_BACKEND', `HTTP worker ${index} exited (${how}) before it was serving`),
        );
        return;
      }
      const now = Date.now();
      while (restarts.length && restarts[0] < now - 60_000) restarts.shift();
      if (restarts.length >= 5) {
        log(`HTTP worker ${index} exited (${how}); not restarted (5 restarts within a minute)`);
        return;
      }
      restarts.push(now);
      log(`HTTP worker ${index} exited (${how}); starting a new one`);
      fork(index);
    });
    return m;
  };

  await new Promise<void>((resolve, reject) => {
    startupFailure = reject;
    allListening = resolve;
    for (let i = 0; i < workers; i++) fork(i);
  }).catch((e: unknown) => {
    stopping = true;
    for (const m of members.values()) m.worker.process.kill('SIGTERM');
    throw e;
  });
  started = true;
  log(`listening on ${listening.get(0)} (${workers} HTTP worker processes)`);

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining ${members.size} HTTP workers`);
    let failed = false;
    const exits = [...members.values()].map(
      (m) =>
        new Promise<void>((resolve) => {
          m.worker.once('exit', (code) => {
            if (code !== 0) failed = true;
            resolve();
          });
          m.worker.process.kill('SIGTERM');
        }),
    );
    void Promise.all(exits).then(() => {
      log(failed ? 'drained; a worker failed while draining' : 'drained, exiting');
      process.exit(failed ? 1 : 0);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
