/**
 * What the processes of `serve --http-workers N` say to each other (src/serve/cluster.ts, the primary;
 * src/serve/cluster-link.ts, a worker's side), and what a server process offers and needs of that link. Types
 * only, so the server and the cluster code import this and not each other.
 */
import type { ContextShare, IndexEntry } from './model-manager.js';

/** A change a client makes through the API that every server process must apply. */
export type SharedOp =
  | { op: 'load'; model: string }
  | { op: 'unload'; model: string }
  | { op: 'register'; kind: 'system' | 'cuda'; region: string; body: unknown; owner: string }
  | { op: 'unregister'; kind: 'system' | 'cuda'; region?: string; owner: string };

export type ReportKind = 'metrics' | 'stats';

export interface OpError {
  worker: number;
  code?: string;
  message: string;
}

export type ToPrimary =
  | { t: 'loaded'; index: number; models: IndexEntry[] }
  | { t: 'listening'; address: string }
  | { t: 'fatal'; message: string }
  | { t: 'broadcast'; id: number; op: SharedOp }
  | { t: 'gather'; id: number; what: ReportKind }
  | { t: 'applied'; id: number; error?: OpError }
  | { t: 'reported'; id: number; data: unknown };

export type ToWorker =
  | { t: 'listen' }
  | { t: 'apply'; id: number; op: SharedOp }
  | { t: 'report'; id: number; what: ReportKind }
  | { t: 'broadcast-done'; id: number; errors: OpError[] }
  | { t: 'gathered'; id: number; data: unknown[] };

/** The environment variable that carries a worker's options, index and count from the primary. */
export const WORKER_ENV = 'YQP_SERVE_WORKER';

/** The primary as one server process sees it: broadcast a change, gather every process's figures. */
export interface ClusterChannel {
  readonly share: ContextShare;
  broadcast(op: SharedOp): Promise<void>;
  gather(what: ReportKind): Promise<unknown[]>;
}

/** What a server process does for the primary: apply another process's change, report its figures. */
export interface ClusterMember {
  apply(op: SharedOp): Promise<void>;
  report(what: ReportKind): Promise<unknown>;
}
