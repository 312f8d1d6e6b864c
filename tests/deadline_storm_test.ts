/**
 * Deadline storms and poisoned deadlines (issues 13 and 12):
 * - many graces due in the same millisecond all fire, each once, none before its due time;
 * - a deadline record that cannot be fired (garbage planted in KV, or an effect KV refuses
 *   to store) is logged with its key, counted, backed off, and never stops the others.
 */
import assert from "node:assert/strict";
import { delay } from "../src/async.ts";
import { testConfig } from "../src/config.ts";
import { createExecution, createSession } from "../src/lifecycle.ts";
import { MetricName } from "../src/metrics.ts";
import { ErrorText } from "../src/protocol.ts";
import { createService } from "../src/service.ts";
import { keys } from "../src/store/keys.ts";
import { listTimers, readEvents, records, transact } from "../src/store/mod.ts";
import { eventually } from "./helpers/ingest_client.ts";
import { armGraceStorm, StormClock, stormExecutions } from "./helpers/storm.ts";

const STORM = 300;

Deno.test("storm: 300 graces due in the same millisecond fire once each, none early, none lost", async () => {
  const kv = await Deno.openKv(":memory:");
  const clock = new StormClock();
  const config = testConfig({ timerWakeups: ["sweep"], sweepMs: 100 });
  const service = await createService(config, kv, { now: clock.now });
  try {
    const { runs, dueAt } = await armGraceStorm(service, clock, { count: STORM, graceMs: 2000 });
    await eventually(
      () => service.rt.metrics.get(MetricName.graceExpired) >= STORM,
      "every grace fired",
      20_000,
    );
    const execs = await stormExecutions(kv, runs);
    assert.equal(execs.length, STORM);
    for (const exec of execs) {
      assert.equal(exec.status, "failed");
      assert.equal(exec.error, ErrorText.wrapperDisconnected);
      const late = Date.parse(exec.completedAt ?? "") - dueAt;
      assert.ok(late >= 0, `${exec.executionId} fired ${-late} ms early`);
    }
    for (const run of runs) {
      const events = await readEvents(kv, run.sessionId, { after: 0, limit: 100 });
      const failures = events.filter((e) => e.envelope.streamEventType === "wrapper_disconnected");
      assert.equal(failures.length, 1, `${run.sessionId}: ${failures.length} failures`);
    }
    assert.equal(service.rt.metrics.get(MetricName.graceExpired), STORM);
    assert.deepEqual((await listTimers(kv)).filter((t) => t.kind === "grace"), []);
  } finally {
    await service.stop();
    kv.close();
  }
});

Deno.test("a poisoned deadline is logged, counted and backed off; the others keep firing", async () => {
  const kv = await Deno.openKv(":memory:");
  const logs: Record<string, unknown>[] = [];
  const config = testConfig({
    timerWakeups: ["sweep"],
    sweepMs: 30,
    pendingTimeoutMs: 100,
    logLevel: "error",
  });
  const service = await createService(config, kv, {
    logSink: (line) => logs.push(JSON.parse(line)),
    deadlines: { failureBackoffMs: 400 },
  });
  try {
    const now = Date.now();
    // Garbage where a deadline should be, planted directly in KV.
    const garbage = keys.timer(now - 1000, "grace", "exc_garbage");
    await kv.set(garbage, { kind: "grace", dueAt: "soon" });
    // A well-formed deadline whose execution record is corrupt (no session): its effect
    // throws, every time.
    await kv.set(keys.exec("exc_corrupt"), { executionId: "exc_corrupt", status: "running" });
    await kv.set(keys.timer(now - 1000, "grace", "exc_corrupt"), {
      kind: "grace",
      id: "exc_corrupt",
      dueAt: now - 1000,
    });
    // Healthy deadlines around them: pending-start timeouts of two executions.
    const urls = { ingestUrl: () => "", streamUrl: "" };
    const healthy: string[] = [];
    for (const sid of ["a", "b"]) {
      await createSession(service.rt.ctx, { sessionId: sid });
      const created = await createExecution(service.rt.ctx, sid, {}, urls);
      assert.ok(created.ok);
      healthy.push(created.value.body.executionId);
    }
    await eventually(
      async () => {
        const execs = await Promise.all(
          healthy.map((eid) => transact(kv, (tx) => records.execution(eid).get(tx))),
        );
        return execs.every((e) => e?.status === "failed");
      },
      "the healthy deadlines fired",
      5000,
    );
    const failures = () => service.rt.metrics.get(MetricName.deadlineFailures, { kind: "grace" });
    await eventually(() => failures() >= 2, "both poisoned deadlines counted");
    // Backed off: over 600 ms of 30 ms sweeps each is tried at most twice more, not 20 times.
    const before = failures();
    await delay(600);
    assert.ok(failures() - before <= 4, `retried ${failures() - before} times in 600 ms`);
    const logged = logs.filter((l) => l.msg === "deadline failed").map((l) => String(l.deadline));
    assert.ok(logged.some((d) => /^timer\/.+\/grace\/exc_garbage$/.test(d)), logged.join());
    assert.ok(logged.some((d) => /^timer\/.+\/grace\/exc_corrupt$/.test(d)), logged.join());
    assert.ok(logs.every((l) => typeof l.failures === "number" && typeof l.retryInMs === "number"));
    // The garbage stays where it is (nothing guessed), still listed for an operator.
    assert.ok((await kv.get(garbage)).value);
  } finally {
    await service.stop();
    kv.close();
  }
});
