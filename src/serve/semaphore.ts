/** At most `slots` tasks at once; the rest wait in arrival order (image decodes: memory grows with each). */
export class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly slots: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.slots) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter, so `active` counts it still.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
