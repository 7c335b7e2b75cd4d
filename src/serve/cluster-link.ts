/**
 * A worker's side of `serve --http-workers N` (src/serve/cluster.ts is the primary's): the channel its server
 * broadcasts changes and gathers figures through, and the handler of what the primary asks of it.
 */
import { YqpError, type ErrorCode } from '../errors.js';
import type {
  ClusterChannel,
  ClusterMember,
  ReportKind,
  SharedOp,
  ToPrimary,
  ToWorker,
} from './cluster-messages.js';
import type { ContextShare } from './model-manager.js';

const primaryGone = () =>
  new YqpError('E_CLOSED', 'The server is shutting down (its primary process is gone)');

/** The primary's side as a worker's server sees it: broadcast a change, gather every process's figures. */
export class ClusterLink implements ClusterChannel {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (m: ToWorker) => void; reject: (e: Error) => void }
  >();
  private server?: ClusterMember;
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

  attach(server: ClusterMember): void {
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
