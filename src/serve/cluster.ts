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
import client from 'prom-client';
import { backendEntry } from '../backends/index.js';
import { YqpError, type ErrorCode } from '../errors.js';
import { describeIndexEntry, describeWarmup, type ContextShare, type IndexEntry } from './model-manager.js';
import type { InferenceServer, ServerOptions } from './server.js';

/** A change a client makes through the API that every server process must apply. */
export type SharedOp =
  | { op: 'load'; model: string }
  | { op: 'unload'; model: string }
  | { op: 'register'; kind: 'system' | 'cuda'; region: string; body: unknown }
  | { op: 'unregister'; kind: 'system' | 'cuda'; region?: string };

export type ReportKind = 'metrics' | 'stats';

interface OpError {
  worker: number;
  code?: string;
  message: string;
}

type ToPrimary =
  | { t: 'loaded'; index: number; models: IndexEntry[] }
  | { t: 'listening'; address: string }
  | { t: 'fatal'; message: string }
  | { t: 'broadcast'; id: number; op: SharedOp }
  | { t: 'gather'; id: number; what: ReportKind }
  | { t: 'applied'; id: number; error?: OpError }
  | { t: 'reported'; id: number; data: unknown };

type ToWorker =
  | { t: 'listen' }
  | { t: 'apply'; id: number; op: SharedOp }
  | { t: 'report'; id: number; what: ReportKind }
  | { t: 'broadcast-done'; id: number; errors: OpError[] }
  | { t: 'gathered'; id: number; data: unknown[] };

const WORKER_ENV = 'YQP_SERVE_WORKER';

const primaryGone = () =>
  new YqpError('E_CLOSED', 'The server is shutting down (its primary process is gone)');

/** The primary's side as a worker's server sees it: broadcast a change, gather every process's figures. */
export class ClusterLink {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (m: ToWorker) => void; reject: (e: Error) => void }
  >();
  private server?: InferenceServer;
  private listenAsked!: () => void;
  /** Settles once the primary says to listen (after replaying what the other processes already hold). */
  readonly listenTurn = new Promise<void>((resolve) => (this.listenAsked = resolve));

  constructor(readonly share: ContextShare) {
    process.on('message', (m: ToWorker) => this.onMessage(m));
    // No primary, no replies: a request waiting on one fails instead of holding the drain open.
    process.on('disconnect', () => {
      for (const { reject } of this.pending.values()) reject(primaryGone());
      this.pending.clear();
    });
  }

  attach(server: InferenceServer): void {
    this.server = server;
  }

  /** Applies `op` in every server process (this one included), in the order the primary received it. */
  async broadcast(op: SharedOp): Promise<void> {
    const reply = await this.ask({ t: 'broadcast', op });
    const errors = (reply as Extract<ToWorker, { t: 'broadcast-done' }>).errors;
    // This process's own error speaks for the request (the others will have failed the same way).
    const first = errors.find((e) => e.worker === this.share.index) ?? errors[0];
    if (first)
      throw new YqpError(
        (first.code ?? 'E_INTERNAL') as ErrorCode,
        first.worker === this.share.index ? first.message : `HTTP worker ${first.worker}: ${first.message}`,
      );
  }

  /** Every live server process's report (this one's included). */
  async gather(what: ReportKind): Promise<unknown[]> {
    const reply = await this.ask({ t: 'gather', what });
    return (reply as Extract<ToWorker, { t: 'gathered' }>).data;
  }

  send(m: ToPrimary): void {
    // With a callback a closed channel is reported there, not thrown: a primary that is gone is the
    // 'disconnect' handler's business.
    if (process.connected) process.send?.(m, undefined, {}, () => undefined);
  }

  private ask(m: { t: 'broadcast'; op: SharedOp } | { t: 'gather'; what: ReportKind }): Promise<ToWorker> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      if (!process.connected) return reject(primaryGone());
      this.pending.set(id, { resolve, reject });
      this.send({ ...m, id });
    });
  }

  private onMessage(m: ToWorker): void {
    switch (m.t) {
      case 'listen':
        this.listenAsked();
        return;
      case 'apply': {
        const server = this.server;
        if (!server) return;
        server.apply(m.op).then(
          () => this.send({ t: 'applied', id: m.id }),
          (e: unknown) =>
            this.send({
              t: 'applied',
              id: m.id,
              error: {
                worker: this.share.index,
                code: (e as { code?: string }).code,
                message: (e as Error).message ?? String(e),
              },
            }),
        );
        return;
      }
      case 'report':
        void this.server
          ?.report(m.what)
          .catch(() => undefined)
          .then((data) => this.send({ t: 'reported', id: m.id, data }));
        return;
      case 'broadcast-done':
      case 'gathered': {
        const waiter = this.pending.get(m.id);
        this.pending.delete(m.id);
        waiter?.resolve(m);
        return;
      }
    }
  }
}

/** Every process's prom-client JSON summed into one Prometheus text (gauges marked `first`/`min` excepted). */
export async function aggregateMetrics(reports: unknown[]): Promise<string> {
  const registry = client.AggregatorRegistry.aggregate(
    reports.filter((r) => Array.isArray(r)) as Parameters<typeof client.AggregatorRegistry.aggregate>[0],
  );
  return registry.metrics();
}

/** In a worker process: the server, started as the primary asks. Returns false when this is no worker. */
export async function runWorkerIfAsked(log: (line: string) => void): Promise<boolean> {
  const raw = process.env[WORKER_ENV];
  if (!cluster.isWorker || !raw) return false;
  const { options, index, of } = JSON.parse(raw) as { options: ServerOptions; index: number; of: number };
  const { InferenceServer, drainThenExit } = await import('./server.js');
  const link = new ClusterLink({ index, of });
  const server = await InferenceServer.create({ ...options, cluster: link });
  link.attach(server);
  if (index === 0)
    for (const m of server.manager.loaded()) {
      log(`HTTP worker 0: ${describeWarmup(m)}`);
      const backend = backendEntry(m.config.backend);
      if (backend.perProcessNote)
        log(
          `model ${m.name} runs on ${backend.displayName}: each of the ${of} HTTP workers ${backend.perProcessNote}`,
        );
    }
  link.send({ t: 'loaded', index, models: server.manager.index() });
  const stop = drainThenExit(server, (line) => log(`HTTP worker ${index}: ${line}`), false);
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // The primary went away: nobody hands out connections any more; drain and go.
  process.once('disconnect', () => stop('disconnect'));
  await link.listenTurn;
  const address = await server.listen();
  link.send({ t: 'listening', address });
  return true;
}

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
      for (const k of [...replay.keys()]) if (k.startsWith(`shm:${op.kind}:`)) replay.delete(k);
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
