/**
 * A storage floor for `bench/many.ts`: a bare process that commits to an on-disk KV file at
 * the rate and shape the service was seen committing (commits per second, mutations per
 * commit, bytes per value), one check per mutation group as the service's transactions
 * carry, and nothing else. Its CPU is what KV alone costs for that work on this machine:
 * the part of the service's CPU that no code above KV can remove without writing less.
 *
 * Usage: `deno run -A bench/kv_floor.ts <commits/s> <mutations/commit> <bytes/value>
 * <seconds>`; prints `{"cpuPct":N,"commits":N}`.
 *
 * @module
 */
import process from "node:process";

/** Keys overwritten in turn (records) next to keys written once (event pages). */
const RECORDS = 4_000;

/** Options of {@link commitAtRate}. */
export interface FloorOptions {
  commitsPerSec: number;
  mutationsPerCommit: number;
  bytesPerValue: number;
  seconds: number;
}

/**
 * Commits at the given shape for `seconds` on `kv`: a third of each commit's mutations are
 * new keys (event pages), the rest overwrite records; one check per three mutations.
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const commits = await commitAtRate(kv, {
 *   commitsPerSec: 50, mutationsPerCommit: 6, bytesPerValue: 300, seconds: 1,
 * });
 * ```
 */
export async function commitAtRate(kv: Deno.Kv, o: FloorOptions): Promise<number> {
  const value = "x".repeat(Math.max(1, Math.round(o.bytesPerValue)));
  const perCommit = Math.max(1, Math.round(o.mutationsPerCommit));
  const started = performance.now();
  let commits = 0;
  let page = 0;
  while (performance.now() - started < o.seconds * 1000) {
    const op = kv.atomic();
    for (let m = 0; m < perCommit; m++) {
      if (m % 3 === 0) op.set(["page", page++], value);
      else op.set(["record", (commits * perCommit + m) % RECORDS], value);
      if (m % 3 === 0) op.check({ key: ["check", (commits + m) % RECORDS], versionstamp: null });
    }
    await op.commit();
    commits++;
    const wait = started + commits * 1000 / o.commitsPerSec - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  return commits;
}

if (import.meta.main) {
  const [commitsPerSec, mutationsPerCommit, bytesPerValue, seconds] = Deno.args.map(Number);
  const dir = await Deno.makeTempDir({ prefix: "tether-kv-floor-" });
  const kv = await Deno.openKv(`${dir}/floor.kv`);
  try {
    const before = process.cpuUsage();
    const t0 = performance.now();
    const commits = await commitAtRate(kv, {
      commitsPerSec,
      mutationsPerCommit,
      bytesPerValue,
      seconds,
    });
    const used = process.cpuUsage(before);
    const elapsed = (performance.now() - t0) / 1000;
    const cpuPct = (used.user + used.system) / 1e6 / elapsed * 100;
    console.log(JSON.stringify({ cpuPct, commits }));
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}
