/**
 * The dev-mode api key (PROTOCOL.md 2): with `TETHER_API_KEYS` unset and a local KV file,
 * the service generates one key and keeps it in that file, so every start and every
 * `--watch` reload prints and accepts the same key (a key that changed on every reload
 * would turn the user's copy into a 401).
 *
 * @module
 */
import { randomSecret } from "./ids.ts";
import { keys } from "./store/keys.ts";
import { transact } from "./store/transact.ts";

/**
 * The dev api key kept in `kv`, created (`dev_` + 32 random characters) on first use.
 * Concurrent first starts agree on one key (checked commit).
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const key = await loadDevApiKey(kv);
 * key === await loadDevApiKey(kv); // true
 * ```
 */
export async function loadDevApiKey(kv: Deno.Kv): Promise<string> {
  return await transact(kv, async (tx) => {
    const existing = await tx.get<string>(keys.devApiKey());
    if (existing) return existing;
    const created = `dev_${randomSecret(24)}`;
    tx.set(keys.devApiKey(), created);
    return created;
  });
}
