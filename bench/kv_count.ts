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
  commits: number;
  reads: number;
  /** Commits by the names of the key families they write (`conn+execution`, …). */
  byKeys: Record<string, number>;
}

const counts: KvCounts = { commits: 0, reads: 0, byKeys: {} };
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
