/** Entry of one `yqp-trt serve --http-workers N` server process (forked by the primary, src/serve/cluster.ts). */
import { runWorkerIfAsked } from './cluster.js';

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
