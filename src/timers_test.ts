import assert from "node:assert/strict";
import { testConfig } from "./config.ts";
import { createService } from "./service.ts";
import { armTimer, listTimers, transact } from "./store/mod.ts";
import { chooseWakeups } from "./timers.ts";

Deno.test("chooseWakeups: queues where the probe works, cron only without a local KV", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    assert.deepEqual(await chooseWakeups(kv, true), ["queue", "sweep"]);
    assert.deepEqual(await chooseWakeups(kv, false), ["queue", "sweep", "cron"]);
  } finally {
    kv.close();
  }
});

Deno.test("one sweep fires every due deadline, more than a page of them", async () => {
  const kv = await Deno.openKv(":memory:");
  const service = await createService(testConfig({ timerWakeups: [] }), kv);
  try {
    const now = Date.now();
    // Deadlines of executions that do not exist: each fires as a no-op and is removed.
    for (let batch = 0; batch < 12; batch++) {
      await transact(kv, (tx) => {
        for (let i = 0; i < 100; i++) {
          armTimer(tx, "pending", `exc_${batch}_${i}`, now - 1000 + i);
        }
        return Promise.resolve();
      }, { queues: false });
    }
    await transact(kv, (tx) => {
      armTimer(tx, "pending", "exc_later", now + 60_000);
      return Promise.resolve();
    }, { queues: false });
    assert.equal((await listTimers(kv)).length, 1201);
    await service.runner.sweep();
    const left = await listTimers(kv);
    assert.deepEqual(left.map((t) => t.id), ["exc_later"]);
    assert.equal(
      service.rt.metrics.get("tether_deadlines_fired_total", { kind: "pending", outcome: "noop" }),
      1200,
    );
  } finally {
    await service.stop();
    kv.close();
  }
});

Deno.test("a stopped runner fires nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  const service = await createService(testConfig({ timerWakeups: [] }), kv);
  await service.stop();
  try {
    await transact(kv, (tx) => {
      armTimer(tx, "pending", "exc_x", Date.now() - 1);
      return Promise.resolve();
    }, { queues: false });
    await service.runner.sweep();
    assert.equal((await listTimers(kv)).length, 1);
  } finally {
    kv.close();
  }
});
