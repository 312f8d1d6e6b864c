/** Runs the end-to-end benchmark with tiny sizes, so it keeps working as the code changes. */
import assert from "node:assert/strict";
import { runE2e } from "../bench/e2e.ts";

Deno.test({
  name: "the e2e benchmark runs end to end with small counts",
  async fn() {
    const result = await runE2e({ frames: 300, bytes: 200, latencyFrames: 50, rate: 1000 });
    const { relayCpuUs, tetherCpuUs, ...rates } = result;
    for (const [name, value] of Object.entries(rates)) {
      assert.ok(Number.isFinite(value) && value > 0, `${name} = ${value}`);
    }
    assert.ok(result.p50Ms <= result.p99Ms);
    // CPU time is counted in 10 ms ticks: 300 frames may take none.
    for (const cpu of [relayCpuUs, tetherCpuUs]) {
      if (Deno.build.os === "linux") assert.ok(Number.isFinite(cpu) && cpu! >= 0, `cpu ${cpu}`);
    }
  },
});
