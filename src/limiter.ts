/**
 * A concurrency limit for async tasks.
 *
 * @module
 */

/**
 * Runs at most `max` tasks at once; the rest wait their turn in order.
 *
 * @example
 * ```ts
 * const limit = new Limiter(2);
 * await Promise.all([1, 2, 3].map((n) => limit.run(() => n * 2))); // two at a time
 * ```
 */
export class Limiter {
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  /** Runs `task` when a slot is free. */
  async run<T>(task: () => Promise<T> | T): Promise<T> {
    // A finishing task hands its slot straight to the next waiter.
    if (this.#active < this.max) this.#active++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
