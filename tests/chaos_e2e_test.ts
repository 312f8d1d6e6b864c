import { runChaos } from "./helpers/chaos_run.ts";
import { countFrom, seedFrom } from "./helpers/random.ts";

Deno.test({
  name:
    "chaos: the real wrapper streams through a cutting proxy; nothing lost, duplicated or failed",
  async fn() {
    const seed = seedFrom("TETHER_CHAOS_SEED");
    const stats = await runChaos({
      seed,
      events: countFrom("TETHER_CHAOS_EVENTS", 2500),
      wrappers: countFrom("TETHER_CHAOS_WRAPPERS", 2),
      pauseMs: countFrom("TETHER_CHAOS_PAUSE_MS", 15),
      // TETHER_TEST_KV_DELAY_MS=20 runs it on a remote-like KV (every read and commit slow).
      kvDelayMs: countFrom("TETHER_TEST_KV_DELAY_MS", 0),
    });
    console.log(`chaos: seed ${seed}, ${JSON.stringify(stats)}`);
  },
});
