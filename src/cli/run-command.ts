import { YqpError } from '../errors.js';

/** Exit codes: 1 for a failed check (compare tolerance), 2 for bad input, 3 for an unavailable part, 4 internal. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3, internal: 4 } as const;

export function exitCodeFor(e: unknown): number {
  if (!(e instanceof YqpError)) return EXIT.internal;
  switch (e.code) {
    case 'E_BACKEND_UNAVAILABLE':
    case 'E_NATIVE':
    case 'E_UNREACHABLE':
      return EXIT.unavailable;
    case 'E_ACCURACY':
      return EXIT.failed;
    case 'E_INTERNAL':
    case 'E_BACKEND':
      return EXIT.internal;
    default:
      return EXIT.usage;
  }
}

/** One line on stderr (plus "Possible solutions" and the stack only with --verbose), and the exit code. */
export function reportError(command: string, e: unknown, verbose: boolean): number {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`yqp-trt ${command}: ${message}\n`);
  if (e instanceof YqpError && e.solutions.length > 0)
    process.stderr.write(`Possible solutions:\n${e.solutions.map((s) => `- ${s}\n`).join('')}`);
  if (verbose && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  return exitCodeFor(e);
}

/** Wraps a command handler: errors become one line and a non-zero exit, never an unhandled stack trace. */
export function runCommand<A extends { verbose?: boolean }>(
  command: string,
  handler: (argv: A) => Promise<number | void>,
): (argv: A) => Promise<void> {
  return async (argv: A) => {
    try {
      const code = await handler(argv);
      process.exitCode = code ?? EXIT.ok;
    } catch (e) {
      process.exitCode = reportError(command, e, Boolean(argv.verbose));
    }
  };
}

/**
 * One name per concept: an old flag name keeps working, says once on stderr which name to use, and may not be
 * given together with the new one.
 */
export function deprecatedAlias<A extends object, O extends keyof A & string, N extends keyof A & string>(
  argv: A,
  old: O,
  current: N,
): A[N] | undefined {
  const was = argv[old] as unknown as A[N] | undefined;
  if (was === undefined) return argv[current];
  if (argv[current] !== undefined)
    throw new YqpError('E_ARGUMENT', `Expected one of --${current} and --${old} but received both`, {
      argument: `--${current}`,
    });
  process.stderr.write(`yqp-trt: --${old} is deprecated, use --${current}\n`);
  return was;
}
