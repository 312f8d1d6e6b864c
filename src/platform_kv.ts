/**
 * On Deno Deploy, whether the KV looks like the platform's database or like temporary local
 * storage. An app with no database assigned still gets a working `Deno.openKv()` (a known
 * platform report): everything seems fine until the instance stops and the runs are gone.
 * No documented variable tells the two apart, so this is a heuristic: the platform's KV is
 * remote (a commit takes milliseconds) and its versionstamps are database commit versions,
 * while a fresh local SQLite file commits in about a millisecond and counts its
 * versionstamps up from zero. When both point at local storage, the service logs an error on
 * every start (it does not refuse: a false alarm must not take the service down).
 *
 * @module
 */
import type { Logger } from "./log.ts";
import { keys } from "./store/keys.ts";

/** Commits timed by the check. */
const PROBES = 3;
/** A median commit faster than this (ms) looks local (a loaded machine stays well under it). */
const LOCAL_COMMIT_MS = 5;
/** Versionstamps below this count (the first 8 bytes) look like a fresh local counter. */
const LOCAL_VERSION_LIMIT = 2n ** 32n;

/** What the check saw. */
export interface PlatformKvVerdict {
  /** Whether the KV looks like temporary local storage rather than an assigned database. */
  looksLocal: boolean;
  medianCommitMs: number;
  versionstamp: string;
}

/**
 * Times a few commits and reads their versionstamps; logs an error when the KV looks like
 * temporary local storage.
 *
 * @example
 * ```ts
 * const verdict = await checkPlatformKv(kv, log);
 * if (verdict.looksLocal) console.log("assign a database to the app");
 * ```
 */
export async function checkPlatformKv(kv: Deno.Kv, log: Logger): Promise<PlatformKvVerdict> {
  const times: number[] = [];
  let versionstamp = "";
  for (let i = 0; i < PROBES; i++) {
    const started = performance.now();
    const result = await kv.set(keys.platformProbe(), Date.now(), { expireIn: 60_000 });
    times.push(performance.now() - started);
    versionstamp = result.versionstamp;
  }
  times.sort((a, b) => a - b);
  const medianCommitMs = times[Math.floor(PROBES / 2)];
  const counter = BigInt(`0x${versionstamp.slice(0, 16) || "0"}`);
  const looksLocal = medianCommitMs < LOCAL_COMMIT_MS && counter < LOCAL_VERSION_LIMIT;
  const verdict = {
    looksLocal,
    medianCommitMs: Math.round(medianCommitMs * 100) / 100,
    versionstamp,
  };
  if (looksLocal) {
    log.error(
      "KV looks like temporary local storage, not a database: runs will be lost when this " +
        "instance stops. Assign a Deno KV database to the app (README, Deploying to Deno Deploy)",
      verdict,
    );
  } else {
    log.info("platform KV check passed", verdict);
  }
  return verdict;
}
