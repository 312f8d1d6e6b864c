/**
 * The few async helpers Tether needs (JSR's `@std/async` is not reachable from our
 * machines): an abortable delay and the reconnect backoff schedule.
 *
 * @module
 */

/**
 * Resolves after `ms` milliseconds, or rejects with the signal's reason when it aborts.
 *
 * @example
 * ```ts
 * const ac = new AbortController();
 * setTimeout(() => ac.abort(), 10);
 * await delay(1000, { signal: ac.signal }).catch(() => "aborted");
 * ```
 */
export function delay(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Options of {@link backoffDelay}. */
export interface BackoffOptions {
  /** Delay of the first attempt, in ms. */
  baseMs: number;
  /** Upper bound before jitter, in ms. */
  maxMs: number;
  /** Relative jitter: the delay is multiplied by a factor in [1 - jitter, 1 + jitter]. Default 0.2. */
  jitter?: number;
  /** Source of randomness in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/**
 * The wait before attempt `n` (1, 2, …): `min(max, base·2^(n-1))` times a random factor in
 * `[1 - jitter, 1 + jitter]`.
 *
 * @example
 * ```ts
 * backoffDelay(3, { baseMs: 1000, maxMs: 5000, random: () => 0.5 }); // 4000
 * ```
 */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const { baseMs, maxMs, jitter = 0.2, random = Math.random } = options;
  const exponent = Math.max(0, attempt - 1);
  const raw = Math.min(maxMs, baseMs * 2 ** Math.min(exponent, 52));
  return Math.round(raw * (1 - jitter + 2 * jitter * random()));
}
