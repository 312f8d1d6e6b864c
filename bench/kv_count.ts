/**
 * A `--preload` module for benchmarks: counts the KV commits and reads of the process it is
 * loaded into and writes the totals as JSON to `BENCH_KV_COUNT_FILE` every 200 ms, so
 * `bench/many.ts` can print commits per stored event. It changes no behaviour.
 *
 * @example
 * ```sh
 * BENCH_KV_COUNT_FILE=/tmp/kv.json deno run -A --preload bench/kv_count.ts main.ts
 * ```
 *
 * @module
 */

/** What the file holds. */
export interface KvCounts {
  /** Atomic commits attempted (a failed check counts too). */
  commits: number;
  /** Calls of `get` and `getMany`. */
  reads: number;
  /** Sets, deletes and enqueues committed. */
  mutations: number;
  /** Approximate bytes of the values set (strings by length, objects by sampled JSON). */
  valueBytes: number;
  /** Commits by the names of the key families they write (`conn+execution`, …). */
  byKeys: Record<string, number>;
}

const counts: KvCounts = { commits: 0, reads: 0, mutations: 0, valueBytes: 0, byKeys: {} };
/** One object value in this many is measured as JSON (measuring each would cost CPU). */
const SAMPLE_EVERY = 8;
let objectValues = 0;

/** A value's approximate stored size. */
function approxBytes(value: unknown): number {
  if (typeof value === "string") return value.length;
  if (value instanceof Uint8Array) return value.byteLength;
  if (typeof value !== "object" || value === null) return 8;
  if (objectValues++ % SAMPLE_EVERY !== 0) return lastObjectBytes;
  return lastObjectBytes = JSON.stringify(value)?.length ?? 8;
}
let lastObjectBytes = 0;
const families = new WeakMap<Deno.AtomicOperation, Set<string>>();
const file = Deno.env.get("BENCH_KV_COUNT_FILE");

if (file) {
  const atomic = Deno.AtomicOperation.prototype;
  const commit = atomic.commit;
  atomic.commit = function (this: Deno.AtomicOperation) {
    counts.commits++;
    const names = [...families.get(this) ?? []].sort().join("+") || "(checks only)";
    counts.byKeys[names] = (counts.byKeys[names] ?? 0) + 1;
    return commit.call(this);
  };
  for (const method of ["set", "delete", "enqueue"] as const) {
    const original = atomic[method] as (...args: unknown[]) => Deno.AtomicOperation;
    (atomic as unknown as Record<string, unknown>)[method] = function (
      this: Deno.AtomicOperation,
      ...args: unknown[]
    ) {
      counts.mutations++;
      if (method !== "delete") counts.valueBytes += approxBytes(args[method === "set" ? 1 : 0]);
      const name = method === "enqueue" ? "(queue)" : String((args[0] as Deno.KvKey)[0]);
      const set = families.get(this) ?? new Set();
      set.add(name);
      families.set(this, set);
      return original.apply(this, args);
    };
  }
  const kv = Deno.Kv.prototype;
  const get = kv.get;
  const getMany = kv.getMany;
  kv.get = function (this: Deno.Kv, ...args: Parameters<Deno.Kv["get"]>) {
    counts.reads++;
    return get.apply(this, args);
  } as Deno.Kv["get"];
  kv.getMany = function (this: Deno.Kv, ...args: Parameters<Deno.Kv["getMany"]>) {
    counts.reads++;
    return getMany.apply(this, args);
  } as Deno.Kv["getMany"];
  // Written aside and renamed, so a reader never sees half a file.
  const timer = setInterval(() => {
    Deno.writeTextFile(`${file}.new`, JSON.stringify(counts))
      .then(() => Deno.rename(`${file}.new`, file)).catch(() => {});
  }, 200);
  Deno.unrefTimer(timer);
}
