/**
 * The `--idle-timeout-ms` watch (PROTOCOL.md 9.1): fires when the agent has produced
 * nothing for a whole period of connected time. It is paused while the connection is down,
 * so a network outage never looks like a stuck agent.
 *
 * @module
 */

/**
 * A restartable one-shot timer. `timeoutMs` 0 turns it off.
 *
 * @example
 * ```ts
 * const idle = new IdleWatch(60_000, () => console.log("agent idle"));
 * idle.restart(); // connected: the period starts
 * idle.touch(); // output seen: the period starts again
 * idle.pause(); // disconnected, or the run ends: nothing fires
 * ```
 */
export class IdleWatch {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;

  /** Not running until {@link IdleWatch.restart}; `onIdle` runs at most once per period. */
  constructor(readonly timeoutMs: number, readonly onIdle: () => void) {}

  /** Starts a full period now (after a `hello`). */
  restart(): void {
    this.pause();
    if (this.timeoutMs <= 0) return;
    this.#running = true;
    this.#timer = setTimeout(() => {
      this.#running = false;
      this.onIdle();
    }, this.timeoutMs);
  }

  /** Activity: starts a full period again, unless paused. */
  touch(): void {
    if (this.#running) this.restart();
  }

  /** Stops counting until the next {@link IdleWatch.restart}. */
  pause(): void {
    clearTimeout(this.#timer);
    this.#running = false;
  }
}
