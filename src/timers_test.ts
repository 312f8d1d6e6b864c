import assert from "node:assert/strict";
import { delay } from "./async.ts";
import { testConfig } from "./config.ts";
import { createExecution, createSession } from "./lifecycle.ts";
import { createService } from "./service.ts";
import { armTimer, listTimers, records, transact } from "./store/mod.ts";
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

Deno.test("without queues, a deadline due between sweeps fires on time, not at the next sweep", async () => {
  const kv = await Deno.openKv(":memory:");
  const config = testConfig({ timerWakeups: ["sweep"], sweepMs: 1000, pendingTimeoutMs: 1500 });
  const service = await createService(config, kv);
  try {
    const ctx = service.rt.ctx;
    await createSession(ctx, { sessionId: "s1" });
    const urls = { ingestUrl: () => "", streamUrl: "" };
    const created = await createExecution(ctx, "s1", {}, urls);
    assert.ok(created.ok);
    const eid = created.value.body.executionId;
    const read = () => transact(kv, (tx) => records.execution(eid).get(tx));
    while ((await read())?.status !== "failed") await delay(20);
    const exec = (await read())!;
    const lateness = Date.parse(exec.completedAt!) - Date.parse(exec.activatedAt!) - 1500;
    // The sweeps run at 1000 and 2000 ms; the local wake-up scheduled by the first fires at 1500.
    assert.ok(lateness >= 0 && lateness < 300, `fired ${lateness} ms late`);
  } finally {
    await service.stop();
    kv.close();
  }
});
