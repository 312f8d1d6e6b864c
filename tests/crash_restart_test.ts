import { runCrashLoop } from "./helpers/crash_loop.ts";
import { countFrom, seedFrom } from "./helpers/random.ts";

Deno.test({
  name: "crash-restart: SIGKILL during runs loses nothing and ends every execution once",
  async fn() {
    const seed = seedFrom("TETHER_CRASH_SEED");
    const stats = await runCrashLoop({
      seed,
      runs: countFrom("TETHER_CRASH_RUNS", 3),
      eventsPerRun: countFrom("TETHER_CRASH_EVENTS", 400),
      killsPerRun: countFrom("TETHER_CRASH_KILLS", 2),
    });
    console.log(`crash-restart: seed ${seed}, ${JSON.stringify(stats)}`);
  },
});
