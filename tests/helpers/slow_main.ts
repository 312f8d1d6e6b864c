/**
 * `main.ts` on a slow KV handle: the same start-up, cron, serving and shutdown, but every KV
 * read and commit delayed by `TETHER_TEST_KV_DELAY_MS` (default 20 ms), as on a remote KV.
 * Benchmarks and chaos runs spawn it as a child process in place of `main.ts`:
 *
 * ```sh
 * TETHER_TEST_KV_DELAY_MS=20 TETHER_KV_PATH=/tmp/t.kv deno run -A tests/helpers/slow_main.ts
 * ```
 *
 * @module
 */
import { DEADLINE_CRON, ServiceSlot, startProcess } from "../../src/start.ts";
import { DEFAULT_SLOW_KV_DELAY_MS, slowKv } from "./slow_kv.ts";

const slot = new ServiceSlot();
Deno.cron(DEADLINE_CRON.name, DEADLINE_CRON.schedule, () => slot.cronTick());

if (import.meta.main) {
  const raw = Deno.env.get("TETHER_TEST_KV_DELAY_MS");
  const delayMs = raw === undefined || raw.trim() === "" ? DEFAULT_SLOW_KV_DELAY_MS : Number(raw);
  if (!Number.isFinite(delayMs) || delayMs < 0) {
    console.error(`TETHER_TEST_KV_DELAY_MS: expected a number of ms >= 0, got ${raw}`);
    Deno.exit(78);
  }
  await startProcess({
    slot,
    openKv: async (path) => slowKv(await Deno.openKv(path), { delayMs }),
  });
}
