/**
 * A storage floor for `bench/many.ts`: a bare process that commits to an on-disk KV file at
 * the rate and shape the service was seen committing (commits per second, mutations per
 * commit, bytes per value), laid out as the service's commits are, and nothing else. Its CPU
 * is what KV alone costs for that work on this machine: the part of the service's CPU that
 * no code above KV can remove without committing less.
 *
 * The layout matters as much as the counts: SQLite rewrites every B-tree page a commit
 * touches, so a commit of records scattered over thousands of runs costs about twice one
 * of the same size whose keys sit together. Each commit is made of works as the service's
 * shared commits are: per run, a new event page in its session's range, its head and its
 * execution record overwritten, and three checks (execution and head at the versionstamps
 * last written, the connection record unchanged), over a database holding `runs` runs.
 *
 * Usage: `deno run -A bench/kv_floor.ts <commits/s> <mutations/commit> <bytes/value>
 * <seconds> [runs]` (runs default 2,000); prints `{"cpuPct":N,"commits":N}`.
 *
 * @module
 */
import process from "node:process";

/** Options of {@link commitAtRate}. */
export interface FloorOptions {
  /** Commits to make per second. */
  commitsPerSec: number;
  /** Mutations in each commit (three per run touched). */
  mutationsPerCommit: number;
  /** Size of each value set (bytes). */
  bytesPerValue: number;
  /** How long the timed commits last. */
  seconds: number;
  /** Runs the commits are spread over (and the database holds). Default 2,000. */
  runs?: number;
  /** Called once the database is filled, right before the timed commits start. */
  onStart?: () => void;
}

/** Event pages each run already holds before the timed part. */
const PAGES_BEFORE = 5;

/**
 * Fills `kv` with `runs` runs (execution, connection, head and a few event pages each), as a
 * service holding that many running executions has.
 */
async function prefill(kv: Deno.Kv, runs: number, value: string): Promise<string[]> {
  const versionstamps: string[] = new Array(runs);
  for (let first = 0; first < runs; first += 50) {
    const op = kv.atomic();
    const last = Math.min(runs, first + 50);
    for (let run = first; run < last; run++) {
      for (let page = 1; page <= PAGES_BEFORE; page++) {
        op.set(["session", `s${run}`, "event", page], value);
      }
      op.set(["head", `s${run}`], { lastEventId: PAGES_BEFORE, lastEventAt: Date.now() });
      op.set(["exec", `e${run}`], value);
      op.set(["conn", `e${run}`], { connectionId: `c${run}` });
    }
    const result = await op.commit();
    if (!result.ok) throw new Error("prefill failed");
    versionstamps.fill(result.versionstamp, first, last);
  }
  return versionstamps;
}

/**
 * Commits at the given shape for `seconds` on `kv` and returns how many commits it made.
 * Each commit holds `mutationsPerCommit / 3` works of distinct runs picked at random.
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const commits = await commitAtRate(kv, {
 *   commitsPerSec: 50, mutationsPerCommit: 6, bytesPerValue: 300, seconds: 1, runs: 100,
 * });
 * ```
 */
export async function commitAtRate(kv: Deno.Kv, o: FloorOptions): Promise<number> {
  const runs = Math.max(1, Math.round(o.runs ?? 2000));
  const value = "x".repeat(Math.max(1, Math.round(o.bytesPerValue)));
  const versionstamps = await prefill(kv, runs, value);
  const connVersionstamps = [...versionstamps];
  const nextPage = new Array<number>(runs).fill(PAGES_BEFORE + 1);
  const works = Math.min(runs, Math.max(1, Math.round(o.mutationsPerCommit / 3)));
  o.onStart?.();
  const started = performance.now();
  let commits = 0;
  while (performance.now() - started < o.seconds * 1000) {
    const op = kv.atomic();
    const picked = new Set<number>();
    while (picked.size < works) picked.add(Math.floor(Math.random() * runs));
    for (const run of picked) {
      op.check(
        { key: ["exec", `e${run}`], versionstamp: versionstamps[run] },
        { key: ["head", `s${run}`], versionstamp: versionstamps[run] },
        { key: ["conn", `e${run}`], versionstamp: connVersionstamps[run] },
      );
      op.set(["session", `s${run}`, "event", nextPage[run]], value);
      op.set(["head", `s${run}`], { lastEventId: nextPage[run]++, lastEventAt: Date.now() });
      op.set(["exec", `e${run}`], value);
    }
    const result = await op.commit();
    if (!result.ok) throw new Error("a floor commit failed its checks");
    for (const run of picked) versionstamps[run] = result.versionstamp;
    commits++;
    const wait = started + commits * 1000 / o.commitsPerSec - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  return commits;
}

if (import.meta.main) {
  const [commitsPerSec, mutationsPerCommit, bytesPerValue, seconds, runs] = Deno.args.map(Number);
  const dir = await Deno.makeTempDir({ prefix: "tether-kv-floor-" });
  const kv = await Deno.openKv(`${dir}/floor.kv`);
  try {
    // The prefill is not timed: the clocks start when the timed commits do.
    let before = process.cpuUsage();
    let t0 = performance.now();
    const commits = await commitAtRate(kv, {
      commitsPerSec,
      mutationsPerCommit,
      bytesPerValue,
      seconds,
      runs: runs || undefined,
      onStart: () => {
        before = process.cpuUsage();
        t0 = performance.now();
      },
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
