/** Edit distance (insert, delete, substitute, swap of neighbours): `--iamge` is one swap from `--image`. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** The known name closest to `name`, when it is close enough to be a typo of it. */
export function closest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const distance = editDistance(name, k);
    if (distance < bestDistance) [best, bestDistance] = [k, distance];
  }
  return bestDistance <= Math.max(1, Math.floor(name.length / 3)) ? best : undefined;
}

/** The `--flags` of a command line that the command does not know (`--no-x` counts as `--x`). */
export function unknownFlags(args: readonly string[], known: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (a === '--') break;
    if (!a.startsWith('--')) continue;
    const name = a.slice(2).split('=')[0];
    const plain = name.startsWith('no-') && known.has(name.slice(3)) ? name.slice(3) : name;
    if (!known.has(plain)) out.push(name);
  }
  return out;
}

/**
 * One line for a usage error: a mistyped flag is named with the closest known one first (yargs would report
 * the required flag it hides as missing, or only "Unknown argument").
 */
export function usageMessage(message: string, args: readonly string[], known: ReadonlySet<string>): string {
  const unknown = unknownFlags(args, known);
  if (unknown.length === 0) return message;
  const [first] = unknown;
  const guess = closest(first, known);
  return `Unknown option --${first}${guess ? `: did you mean --${guess}?` : ''}${
    unknown.length > 1
      ? ` (unknown too: ${unknown
          .slice(1)
          .map((u) => `--${u}`)
          .join(', ')})`
      : ''
  }`;
}
