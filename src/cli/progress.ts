/** A one-line progress bar on stderr: done/total, rate and time left. Silent when stderr is not a TTY, except every 10%. */
export class ProgressBar {
  private readonly start = performance.now();
  private lastPrinted = -1;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'frames',
  ) {}

  update(done: number): void {
    const fraction = this.total > 0 ? done / this.total : 1;
    const step = Math.floor(fraction * 10);
    if (!this.tty && step === this.lastPrinted && done !== this.total) return;
    this.lastPrinted = step;
    const seconds = (performance.now() - this.start) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? (this.total - done) / rate : 0;
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    const line = `${this.label} [${bar}] ${done}/${this.total} ${this.unit} ${rate.toFixed(1)}/s eta ${eta.toFixed(0)}s`;
    process.stderr.write(this.tty ? `\r${line}` : `${line}\n`);
  }

  finish(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
