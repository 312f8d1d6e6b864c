/** Runs the end-to-end benchmark with tiny sizes, so it keeps working as the code changes. */
import assert from "node:assert/strict";
import { runE2e } from "../bench/e2e.ts";
import { commitAtRate } from "../bench/kv_floor.ts";

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

Deno.test({
  name: "the KV floor commits the service's layout: a page, the head and the execution per run",
  async fn() {
    const kv = await Deno.openKv(":memory:");
    try {
      let started = 0;
      const commits = await commitAtRate(kv, {
        commitsPerSec: 100,
        mutationsPerCommit: 9,
        bytesPerValue: 100,
        seconds: 0.2,
        runs: 10,
        onStart: () => started++,
      });
      assert.equal(started, 1);
      assert.ok(commits >= 5, `${commits} commits`);
      // Three runs per commit, each with one new page after the five of the prefill.
      let pages = 0;
      for await (const _ of kv.list({ prefix: ["session"] })) pages++;
      assert.equal(pages, 10 * 5 + commits * 3);
      const heads = await Array.fromAsync(kv.list<{ lastEventId: number }>({ prefix: ["head"] }));
      assert.equal(heads.length, 10);
      const written = heads.reduce((sum, head) => sum + head.value.lastEventId - 5, 0);
      assert.equal(written, commits * 3);
    } finally {
      kv.close();
    }
  },
});
