import { MetricName } from "./metrics.ts";
import assert from "node:assert/strict";
import { delay } from "./async.ts";
import { testConfig } from "./config.ts";
import { createExecution, createSession } from "./lifecycle.ts";
import { createService } from "./service.ts";
import { armTimer, listTimers, records, transact } from "./store/mod.ts";
import { baseWakeups } from "./timers.ts";
import type { LifecycleContext } from "./lifecycle.ts";
import { ServiceSlot } from "./start.ts";

Deno.test("the queue delivery probe: queue wake-ups join when the probe message arrives", async () => {
  const kv = await Deno.openKv(":memory:");
  // No KV path (as on Deno Deploy): cron joins the sweep.
  const service = await createService(testConfig({ kvPath: undefined }), kv);
  try {
    await service.wakeupsSettled;
    assert.deepEqual(service.runner.wakeups, ["queue", "sweep", "cron"]);
    assert.equal(service.rt.ctx.queues, true);
    assert.equal(service.rt.metrics.get(MetricName.queueWakeups), 1);
  } finally {
    await service.stop();
    kv.close();
  }
  assert.deepEqual(baseWakeups(true), ["sweep"]);
});

/**
 * A KV whose queue accepts messages and never delivers them, as a platform without queues
 * may: `enqueue` commits, `listenQueue` never hears anything.
 */
function deafQueueKv(kv: Deno.Kv): Deno.Kv {
  const atomic = () => {
    const op = kv.atomic();
    const proxy: Deno.AtomicOperation = new Proxy(op, {
      get(target, prop) {
        if (prop === "enqueue") return () => proxy;
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          const result = value.apply(target, args);
          return result === target ? proxy : result;
        };
      },
    });
    return proxy;
  };
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") return atomic;
      if (prop === "enqueue") return () => Promise.resolve({ ok: true, versionstamp: "0" });
      if (prop === "listenQueue") return () => new Promise(() => {});
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Creates one execution whose pending-start deadline falls due after `pendingTimeoutMs`. */
async function pendingExecution(ctx: LifecycleContext): Promise<string> {
  await createSession(ctx, { sessionId: "s1" });
  const urls = { ingestUrl: () => "", streamUrl: "" };
  const created = await createExecution(ctx, "s1", {}, urls);
  assert.ok(created.ok);
  return created.value.body.executionId;
}

Deno.test("a queue that commits but never delivers is not used: the sweep carries the deadlines", async () => {
  const inner = await Deno.openKv(":memory:");
  const kv = deafQueueKv(inner);
  // No KV path: as on Deno Deploy (cron joins the sweep).
  const config = testConfig({ kvPath: undefined, queueProbeMs: 100, pendingTimeoutMs: 200 });
  const service = await createService(config, kv);
  try {
    await service.wakeupsSettled;
    assert.deepEqual(service.runner.wakeups, ["sweep", "cron"]);
    assert.equal(service.rt.ctx.queues, false);
    assert.equal(service.rt.metrics.get(MetricName.queueWakeups), 0);
    const eid = await pendingExecution(service.rt.ctx);
    const read = () => transact(kv, (tx) => records.execution(eid).get(tx));
    while ((await read())?.status !== "failed") await delay(20);
  } finally {
    await service.stop();
    inner.close();
  }
});

Deno.test("without queues or a running sweep, the cron tick fires due deadlines", async () => {
  const inner = await Deno.openKv(":memory:");
  const kv = deafQueueKv(inner);
  const config = testConfig({
    kvPath: undefined,
    queueProbeMs: 100,
    pendingTimeoutMs: 100,
    sweepMs: 3_600_000,
  });
  const slot = new ServiceSlot();
  await slot.cronTick(); // before the instance exists: nothing to do, no error
  const service = await createService(config, kv);
  slot.service = service;
  try {
    const eid = await pendingExecution(service.rt.ctx);
    await delay(150);
    const read = () => transact(kv, (tx) => records.execution(eid).get(tx));
    assert.equal((await read())?.status, "pending");
    await slot.cronTick();
    assert.equal((await read())?.status, "failed");
  } finally {
    await service.stop();
    inner.close();
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
      service.rt.metrics.get(MetricName.deadlinesFired, { kind: "pending", outcome: "noop" }),
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
