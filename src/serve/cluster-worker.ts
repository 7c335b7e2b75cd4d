/** Entry of one `yqp-trt serve --http-workers N` server process (forked by the primary, src/serve/cluster.ts). */
import { backendEntry } from '../backends/index.js';
import cluster from 'node:cluster';
import { ClusterLink } from './cluster-link.js';
import { WORKER_ENV } from './cluster-messages.js';
import { describeWarmup } from './model-manager.js';
import type { ServerOptions } from './options.js';
import { InferenceServer, drainThenExit } from './server.js';

/** In a worker process: the server, started as the primary asks. Returns false when this is no worker. */
async function runWorkerIfAsked(log: (line: string) => void): Promise<boolean> {
  const raw = process.env[WORKER_ENV];
  if (!cluster.isWorker || !raw) return false;
  const { options, index, of } = JSON.parse(raw) as { options: ServerOptions; index: number; of: number };
  const link = new ClusterLink({ index, of });
  const server = await InferenceServer.create({ ...options, cluster: link });
  link.attach(server.endpoint);
  if (index === 0)
    for (const m of server.manager.loaded()) {
      log(`HTTP worker 0: ${describeWarmup(m)}`);
      for (const w of m.entry.warnings) log(`model ${m.name}: ${w}`);
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

const log = (line: string) => process.stderr.write(`yqp-trt serve: ${line}\n`);
runWorkerIfAsked(log).then(
  (ran) => {
    if (!ran) {
      log('this file is started by `yqp-trt serve --http-workers N`, not by hand');
      process.exit(2);
    }
  },
  (e: unknown) => {
    // The primary names the cause in its own error; exit once the message is out.
    const message = (e as Error).message ?? String(e);
    if (process.send) process.send({ t: 'fatal', message }, () => process.exit(1));
    else {
      log(`HTTP worker failed: ${message}`);
      process.exit(1);
    }
  },
);
