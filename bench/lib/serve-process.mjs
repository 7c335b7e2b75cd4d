// `yqp-trt serve` as a process of its own for the serving benchmarks (serve, grpc, serve-shm): started with
// `--port 0` (and `--grpc-port 0` where asked), resolved once it says where it listens.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/**
 * Starts `node [nodeArgs] dist/cli/main.js serve --port 0 [--grpc-port 0] ...args`; resolves with the child, its
 * HTTP URL (and gRPC address with `grpc`), its stderr so far, and stop() (SIGTERM, resolved once it has drained and
 * exited). Rejects with its stderr if it exits first.
 */
export function spawnServe(args, { grpc = false, nodeArgs = [] } = {}) {
  const child = spawn(
    process.execPath,
    [...nodeArgs, CLI, 'serve', '--port', '0', ...(grpc ? ['--grpc-port', '0'] : []), ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let log = '';
    child.stderr.on('data', (d) => {
      log += d;
      const url = /listening on (http:\/\/\S+)/.exec(log)?.[1];
      const grpcAddress = /gRPC listening on (\S+)/.exec(log)?.[1];
      if (url && (!grpc || grpcAddress))
        resolve({
          child,
          url,
          grpc: grpcAddress,
          log: () => log,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', done);
              child.kill('SIGTERM');
            }),
        });
    });
    child.once('exit', (code) => reject(new Error(`yqp-trt serve exited with ${code}:\n${log}`)));
  });
}
