/**
 * The serve command's process around the server: the port checked before any model loads, a pid file, and an
 * end when the npm that started it goes (npx / npm run put `sh -c` between npm and us; npm passes SIGTERM to
 * that sh, which dies without passing it on, and the server would keep running under PID 1).
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { YqpError } from '../errors.js';

/** Refuses a port another process holds, before minutes of model loading and warm-up (port 0 is any). */
export async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      if (e.code === 'EADDRINUSE')
        reject(
          new YqpError(
            'E_ARGUMENT',
            `Port ${port} on ${host} is in use (--port ${port}): another server holds ${where}`,
            {
              argument: '--port',
              expected: 'a free port',
              received: String(port),
              solutions: [
                `stop the process on ${where} (\`ss -ltnp 'sport = :${port}'\` names it)`,
                'pick another with --port, or --port 0 for any free one',
              ],
            },
          ),
        );
      else if (e.code === 'EACCES')
        reject(
          new YqpError(
            'E_ARGUMENT',
            `Port ${port} on ${host} needs privileges this process lacks (--port ${port})`,
            {
              argument: '--port',
              solutions: ['use a port above 1023'],
            },
          ),
        );
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND')
        reject(
          new YqpError(
            'E_ARGUMENT',
            `Expected an address of this machine for --host but received ${host} (${e.code})`,
            {
              argument: '--host',
            },
          ),
        );
      else reject(e);
    });
    // exclusive: a cluster primary's shared handle must not make the probe succeed where listen would not.
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** Writes the server's pid to `path` and removes the file when the process exits. */
export function writePidFile(path: string): void {
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (e) {
    throw new YqpError(
      'E_ARGUMENT',
      `Cannot write the pid file ${path} (--pid-file): ${(e as Error).message}`,
      {
        argument: '--pid-file',
        received: path,
      },
    );
  }
  process.once('exit', () => {
    try {
      // Only our own file: another server may have taken the path since.
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch {
      // Already gone.
    }
  });
}

/** The parent of a process, from /proc (Linux); undefined elsewhere or when it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so split after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether a process is npm (its title: `npm exec ...`, `npm run ...`, or node running npm-cli.js). */
function isNpm(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    return /^npm(\s|$)|npm-cli\.js/.test(cmdline);
  } catch {
    return false;
  }
}

/** The npm that started us: the parent, or the parent's parent past a `sh -c`; undefined when not found. */
function startingNpm(): number | undefined {
  if (isNpm(process.ppid)) return process.ppid;
  const grandparent = parentOf(process.ppid);
  return grandparent !== undefined && isNpm(grandparent) ? grandparent : undefined;
}

/**
 * Started through npm (npx, npm exec, npm run): when that npm is gone, or our parent is, calls `stop` (the
 * server's SIGTERM path: drain, exit 0). A server started otherwise (node dist/cli/main.js, systemd, exec) is
 * left alone: going on without its parent may be intended.
 */
export function stopWithNpm(stop: () => void, log: (line: string) => void, intervalMs = 500): void {
  if (!process.env.npm_command) return;
  const npm = startingNpm();
  if (npm === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent && alive(npm)) return;
    clearInterval(timer);
    log(`npm (pid ${npm}) that started this server is gone: stopping`);
    stop();
  }, intervalMs);
  timer.unref();
}
