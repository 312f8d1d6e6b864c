import assert from "node:assert/strict";
import { fireDeadline } from "../src/lifecycle.ts";
import { listTimers, timerKey } from "../src/store/mod.ts";
import { createRun, getExecution } from "./helpers/ingest_client.ts";
import { runModel } from "./helpers/model.ts";
import { countFrom, seedFrom } from "./helpers/random.ts";
import { startServer, tempKvPath } from "./helpers/server.ts";

Deno.test({
  name: "model: random command sequences over two instances keep every lifecycle invariant",
  async fn() {
    const seed = seedFrom("TETHER_MODEL_SEED");
    const runs = countFrom("TETHER_MODEL_RUNS", 60);
    const stats = await runModel({ seed, runs });
    console.log(`model: seed ${seed}, ${JSON.stringify(stats)}`);
  },
});

Deno.test("regression: a deadline fired before it is due stays armed and fires later", async () => {
  let offset = 0;
  const server = await startServer({
    now: () => Date.now() + offset,
    config: { timerWakeups: [], pendingTimeoutMs: 30_000 },
  });
  try {
    const run = await createRun(server, "early");
    const [pending] = (await listTimers(server.kv)).filter((t) => t.kind === "pending");
    const early = await fireDeadline(server.service.rt.ctx, timerKey(pending));
    assert.equal(early.ok && early.value.outcome, "early");
    assert.ok((await server.kv.get(timerKey(pending))).value, "the deadline is still armed");
    assert.equal((await getExecution(server, run)).status, "pending");
    offset += 30_001;
    await server.service.runner.fire(timerKey(pending));
    assert.equal((await getExecution(server, run)).status, "failed");
  } finally {
    await server.close();
  }
});

Deno.test("regression: two instances on one KV file write at once without errors", async () => {
  const { path, cleanup } = await tempKvPath();
  const servers = [await startServer({ kvPath: path }), await startServer({ kvPath: path })];
  try {
    // Each instance's KV handle locks the file while it commits; the other one must retry.
    const statuses = await Promise.all(Array.from({ length: 60 }, async (_, i) => {
      const server = servers[i % 2];
      const res = await server.api("/v1/sessions", {
        method: "POST",
        json: { sessionId: `c${i}` },
      });
      await res.body?.cancel();
      return res.status;
    }));
    assert.deepEqual(statuses, statuses.map(() => 201));
  } finally {
    for (const s of servers) await s.close();
    await cleanup();
  }
});
