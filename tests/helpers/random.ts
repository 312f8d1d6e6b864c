/**
 * A small seeded pseudo-random generator (mulberry32) for reproducible test schedules: the
 * chaos proxy's cuts and the fuzzers' inputs. The same seed gives the same sequence.
 *
 * @module
 */

/**
 * A seeded random source.
 *
 * @example
 * ```ts
 * const r = new Random(42);
 * r.int(1, 6); // the same on every run with seed 42
 * r.chance(0.1);
 * ```
 */
export class Random {
  #state: number;

  /** `seed` is any integer; it is folded to 32 bits. */
  constructor(readonly seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max] (both inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** A new generator whose sequence depends only on this one's next draw. */
  fork(): Random {
    return new Random(Math.floor(this.next() * 4294967296));
  }
}

/**
 * The seed from an environment variable, or a fresh one (printed by callers on failure).
 *
 * @example
 * ```ts
 * const seed = seedFrom("TETHER_FUZZ_SEED"); // replay a failure with TETHER_FUZZ_SEED=<seed>
 * ```
 */
export function seedFrom(envName: string): number {
  const text = Deno.env.get(envName);
  if (text !== undefined && /^\d+$/.test(text)) return Number(text);
  return Math.floor(Math.random() * 2 ** 31);
}

/**
 * A positive integer from an environment variable, or `fallback`.
 *
 * @example
 * ```ts
 * const events = countFrom("TETHER_CHAOS_EVENTS", 2500);
 * ```
 */
export function countFrom(envName: string, fallback: number): number {
  const n = Number(Deno.env.get(envName));
  return Number.isSafeInteger(n) && n > 0 ? n : fallback;
}
