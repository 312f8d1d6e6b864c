/**
 * A test-only KV handle that behaves like a remote KV (Deno Deploy, KV Connect): every read
 * (`get`, `getMany`, each batch of a `list`) and every commit (`atomic().commit()`, `set`,
 * `delete`) costs `delayMs`, half on the way there and half on the way back, so a read's
 * snapshot and a commit's effect land in the middle of the round trip as they would over a
 * network. Everything else (`watch`, queues, `close`) passes through unchanged.
 *
 * Benchmarks and chaos runs use it through `tests/helpers/slow_main.ts`.
 *
 * @module
 */
import { delay } from "../../src/async.ts";

/** Options of {@link slowKv}. */
export interface SlowKvOptions {
  /** Round-trip time added to every read and commit, in ms. Default 20. */
  delayMs?: number;
}

/** Default round trip of {@link slowKv} (ms): a same-region remote KV. */
export const DEFAULT_SLOW_KV_DELAY_MS = 20;

/** Deno's default `list` batch size: one round trip per this many entries. */
const LIST_BATCH = 100;

/**
 * Wraps `kv` so every read and commit takes `delayMs` longer.
 *
 * @example
 * ```ts
 * const kv = slowKv(await Deno.openKv(":memory:"), { delayMs: 20 });
 * await kv.set(["a"], 1); // ~20 ms
 * ```
 */
export function slowKv(kv: Deno.Kv, options: SlowKvOptions = {}): Deno.Kv {
  const roundTrip = roundTripOf(options.delayMs ?? DEFAULT_SLOW_KV_DELAY_MS);
  const slow: Partial<Record<keyof Deno.Kv, unknown>> = {
    get: (...args: Parameters<Deno.Kv["get"]>) => roundTrip(() => kv.get(...args)),
    getMany: (...args: Parameters<Deno.Kv["getMany"]>) => roundTrip(() => kv.getMany(...args)),
    set: (...args: Parameters<Deno.Kv["set"]>) => roundTrip(() => kv.set(...args)),
    delete: (...args: Parameters<Deno.Kv["delete"]>) => roundTrip(() => kv.delete(...args)),
    list: (...args: Parameters<Deno.Kv["list"]>) =>
      slowList(kv.list(...args), roundTrip, args[1]?.batchSize ?? LIST_BATCH),
    atomic: () => slowAtomic(kv.atomic(), roundTrip),
  };
  return new Proxy(kv, {
    get(target, prop) {
      if (typeof prop === "string" && prop in slow) return slow[prop as keyof Deno.Kv];
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

type RoundTrip = <T>(op: () => Promise<T>) => Promise<T>;

function roundTripOf(delayMs: number): RoundTrip {
  const half = delayMs / 2;
  return async (op) => {
    await delay(half);
    const result = await op();
    await delay(half);
    return result;
  };
}

/** An atomic operation whose `commit` pays a round trip; the builder methods chain on it. */
function slowAtomic(op: Deno.AtomicOperation, roundTrip: RoundTrip): Deno.AtomicOperation {
  const proxy: Deno.AtomicOperation = new Proxy(op, {
    get(target, prop) {
      if (prop === "commit") return () => roundTrip(() => target.commit());
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const result = value.apply(target, args);
        return result === target ? proxy : result;
      };
    },
  });
  return proxy;
}

/** A list iterator that pays a round trip before its first entry and every `batch` entries. */
function slowList<T>(
  inner: Deno.KvListIterator<T>,
  roundTrip: RoundTrip,
  batch: number,
): Deno.KvListIterator<T> {
  let served = 0;
  const next = () => {
    const read = () => inner.next();
    return served++ % batch === 0 ? roundTrip(read) : read();
  };
  const iterator = {
    get cursor() {
      return inner.cursor;
    },
    next,
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator as unknown as Deno.KvListIterator<T>;
}
