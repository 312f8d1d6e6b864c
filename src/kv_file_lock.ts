/**
 * Which process owns a local KV file. A process that owns it may take every connection and
 * grace recorded in the file for its own (a crashed predecessor's), so a second process
 * started on the same file while the first still serves (a rolling restart) must know it is
 * not alone: it would otherwise end the first one's live runs.
 *
 * @module
 */
import { delay } from "./async.ts";

/**
 * Takes an exclusive lock on `<kvPath>.lock`, held until the process exits (the system drops
 * it with the process, a crash included). Resolves `true` when this process got it within
 * `waitMs`, `false` when another process holds it.
 *
 * @example
 * ```ts
 * const alone = await lockKvFile("./data/tether.kv");
 * const service = await createService(config, kv, { singleProcess: alone });
 * ```
 */
export async function lockKvFile(kvPath: string, waitMs = 200): Promise<boolean> {
  const file = await Deno.open(`${kvPath}.lock`, { create: true, write: true });
  const stop = new AbortController();
  try {
    // There is no try-lock: a lock still waiting when another process holds it is given up
    // on here (it is taken, unused, if that process exits).
    return await Promise.race([
      file.lock(true).then(() => true),
      delay(waitMs, { signal: stop.signal }).then(() => false, () => false),
    ]);
  } finally {
    stop.abort();
  }
}
