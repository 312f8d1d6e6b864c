/**
 * Deadlines over real sockets (PROTOCOL.md 5.4, 7, 8): disconnect grace, heartbeat and
 * pending-start timeouts, `health`, and the races between deadlines. Each rule runs under
 * every wake-up variant (see tests/helpers/deadline_env.ts).
 */
import { MetricName } from "../src/metrics.ts";
import assert from "node:assert/strict";
import { delay } from "../src/async.ts";
import { ErrorText } from "../src/protocol.ts";
import { listTimers, timerKey } from "../src/store/mod.ts";
import { startChaosProxy } from "./helpers/chaos_proxy.ts";
import { graceRecord, interruptFlag, timersOf, wakeupVariants } from "./helpers/deadline_env.ts";
import {
  createRun,
  eventually,
  getExecution,
  IngestClient,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";

const GRACE_MS = 300;

async function statusOf(server: TestServer, run: { sessionId: string; executionId: string }) {
  return (await getExecution(server, run)).status;
}

const waitStatus = (
  server: TestServer,
  run: { sessionId: string; executionId: string },
  status: string,
  timeoutMs = 5000,
) =>
  eventually(
    async () => (await statusOf(server, run)) === status,
    `status ${status}`,
    timeoutMs,
  );

for (const { label, config } of wakeupVariants()) {
  serverTest(
    `[${label}] a reconnect inside the grace cancels it: still running, no event`,
    async (server) => {
      const run = await createRun(server, "s1");
      await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
      const first = await IngestClient.connect(proxy.via(run.ingestUrl), {
        token: run.ingestToken,
        dial: "w1/1",
      });
      first.send({ streamEventType: "output", seq: 1, data: { text: "a" } });
      await first.ackOf(1);
      assert.equal(proxy.cut(), 1);
      await eventually(async () => (await graceRecord(server, "s1")) !== null, "grace record");
      assert.equal((await getExecution(server, run)).health, "disconnected");

      const second = await IngestClient.connect(run.ingestUrl, {
        token: run.ingestToken,
        dial: "w1/2",
      });
      assert.equal(second.messages[0].lastSeq, 1);
      assert.equal(await graceRecord(server, "s1"), null);
      await delay(GRACE_MS * 2);
      const exec = await getExecution(server, run);
      assert.equal(exec.status, "running");
      assert.equal(exec.health, "healthy");
      const types = (await storedEvents(server, "s1")).map((e) => e.streamEventType);
      assert.deepEqual(types, ["execution_status", "execution_status", "output"]);
      const metrics = server.service.rt.metrics;
      assert.equal(metrics.get(MetricName.graceStarted), 1);
      assert.equal(metrics.get(MetricName.graceCancelled), 1);
      assert.equal(metrics.get(MetricName.graceExpired), 0);
      await second.close();
    },
    { config: { ...config, disconnectGraceMs: GRACE_MS } },
  );

  serverTest(
    `[${label}] a connection lost without a close frame fails once, with 1006`,
    async (server) => {
      const run = await createRun(server, "s1");
      await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
      const client = await IngestClient.connect(proxy.via(run.ingestUrl), {
        token: run.ingestToken,
      });
      proxy.cut();
      await waitStatus(server, run, "failed");
      const exec = await getExecution(server, run);
      assert.equal(exec.error, ErrorText.wrapperDisconnected);
      assert.equal(exec.health, null);
      await delay(GRACE_MS); // later wake-ups must not add a second failure
      const events = await storedEvents(server, "s1");
      const failures = events.filter((e) => e.streamEventType === "wrapper_disconnected");
      assert.equal(failures.length, 1);
      assert.deepEqual(failures[0].data, {
        error: "Wrapper disconnected",
        fatal: true,
        reason: "Wrapper disconnected",
        wsCloseCode: 1006,
        wsCloseReason: "",
      });
      const last = events.at(-1)!;
      assert.equal(last.streamEventType, "execution_status");
      assert.deepEqual(last.data, {
        status: "failed",
        previousStatus: "running",
        active: false,
        error: "Wrapper disconnected",
      });
      assert.equal(last.eventId, failures[0].eventId + 1);
      assert.equal(last.timestamp, exec.completedAt);
      assert.equal(await graceRecord(server, "s1"), null);
      assert.equal(server.service.rt.metrics.get(MetricName.graceExpired), 1);
      await client.closed;
    },
    { config: { ...config, disconnectGraceMs: GRACE_MS } },
  );

  serverTest(
    `[${label}] a polite close keeps its code and reason in the failure`,
    async (server) => {
      const run = await createRun(server, "s1");
      const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      await client.close(4100, "laptop lid closed");
      await waitStatus(server, run, "failed");
      const failure = (await storedEvents(server, "s1"))
        .find((e) => e.streamEventType === "wrapper_disconnected");
      assert.equal((failure?.data as Record<string, unknown>).wsCloseCode, 4100);
      assert.equal((failure?.data as Record<string, unknown>).wsCloseReason, "laptop lid closed");
    },
    { config: { ...config, disconnectGraceMs: GRACE_MS } },
  );

  serverTest(
    `[${label}] a silent running execution fails with the heartbeat timeout`,
    async (server) => {
      const run = await createRun(server, "s1");
      const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      await waitStatus(server, run, "failed");
      const events = await storedEvents(server, "s1");
      const failure = events.at(-2)!;
      assert.equal(failure.streamEventType, "error");
      assert.deepEqual(failure.data, { error: ErrorText.heartbeatTimeout, fatal: true });
      assert.equal((await getExecution(server, run)).error, ErrorText.heartbeatTimeout);
      assert.equal((await client.closed).code, 4000);
      assert.equal(events.filter((e) => e.streamEventType === "error").length, 1);
    },
    { config: { ...config, heartbeatTimeoutMs: 400, heartbeatWriteMs: 0 } },
  );

  serverTest(
    `[${label}] heartbeats keep a running execution alive (the deadline re-arms)`,
    async (server) => {
      const run = await createRun(server, "s1");
      const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      for (let i = 0; i < 12; i++) {
        client.send({ streamEventType: "heartbeat" });
        await delay(100);
      }
      assert.equal(await statusOf(server, run), "running");
      const armed = await timersOf(server, run.executionId, "heartbeat");
      assert.equal(armed.length, 1, "one heartbeat deadline, re-armed in place");
      assert.ok(
        server.service.rt.metrics.get(MetricName.deadlinesFired, {
          kind: "heartbeat",
          outcome: "rearmed",
        }) >= 1,
      );
      await waitStatus(server, run, "failed"); // and once silent, it times out
      await client.closed;
    },
    { config: { ...config, heartbeatTimeoutMs: 400, heartbeatWriteMs: 0 } },
  );

  serverTest(
    `[${label}] an active pending execution whose wrapper never connects fails`,
    async (server) => {
      const run = await createRun(server, "s1");
      const queued = await createRun(server, "s1");
      await waitStatus(server, run, "failed");
      const events = await storedEvents(server, "s1");
      const failure = events.find((e) => e.streamEventType === "error")!;
      assert.equal(failure.executionId, run.executionId);
      assert.deepEqual(failure.data, { error: ErrorText.neverConnected, fatal: true });
      const exec = await getExecution(server, run);
      assert.equal(exec.error, ErrorText.neverConnected);
      assert.ok(
        Date.parse(exec.completedAt as string) - Date.parse(exec.activatedAt as string) >= 300,
      );
      // The queued one was promoted in the same commit and got its own deadline from then.
      const promoted = await getExecution(server, queued);
      assert.equal(promoted.active, true);
      assert.equal(promoted.activatedAt, exec.completedAt);
    },
    { config: { ...config, pendingTimeoutMs: 300 } },
  );
}

serverTest(
  "health: healthy, then stale after half the heartbeat timeout, then disconnected",
  async (server) => {
    const run = await createRun(server, "s1");
    assert.equal((await getExecution(server, run)).health, null);
    await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
    const client = await IngestClient.connect(proxy.via(run.ingestUrl), { token: run.ingestToken });
    assert.equal((await getExecution(server, run)).health, "healthy");
    await eventually(
      async () => (await getExecution(server, run)).health === "stale",
      "stale",
    );
    proxy.cut();
    await eventually(
      async () => (await getExecution(server, run)).health === "disconnected",
      "disconnected",
    );
    await client.closed;
  },
  { config: { heartbeatTimeoutMs: 1000, heartbeatWriteMs: 0, disconnectGraceMs: 5000 } },
);

// The races below fire deadlines by hand (no wake-ups configured) once they are due.
const manual = {
  config: {
    timerWakeups: [],
    disconnectGraceMs: 200,
    heartbeatTimeoutMs: 200,
    pendingTimeoutMs: 200,
  },
};

serverTest("grace expiry and heartbeat timeout due together: one failure", async (server) => {
  const run = await createRun(server, "s1");
  await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
  const client = await IngestClient.connect(proxy.via(run.ingestUrl), { token: run.ingestToken });
  proxy.cut();
  await eventually(async () => (await graceRecord(server, "s1")) !== null, "grace record");
  await client.closed;
  await delay(300);
  const due = await timersOf(server, run.executionId);
  assert.deepEqual(due.map((t) => t.kind).sort(), ["grace", "heartbeat", "pending"]);
  const runner = server.service.runner;
  await Promise.all(due.flatMap((t) => [runner.fire(timerKey(t)), runner.fire(timerKey(t))]));
  const events = await storedEvents(server, "s1");
  const ended = events.filter((e) =>
    e.streamEventType === "execution_status" && (e.data as { status: string }).status === "failed"
  );
  assert.equal(ended.length, 1);
  const failures = events.filter((e) =>
    e.streamEventType === "wrapper_disconnected" || e.streamEventType === "error"
  );
  assert.equal(failures.length, 1);
  assert.deepEqual(await timersOf(server, run.executionId), []);
}, manual);

serverTest("the same deadline fired many times at once has one effect", async (server) => {
  const run = await createRun(server, "s1");
  await delay(250);
  const [pending] = await timersOf(server, run.executionId, "pending");
  const key = timerKey(pending);
  await Promise.all(Array.from({ length: 8 }, () => server.service.runner.fire(key)));
  await server.service.runner.fire(key);
  const events = await storedEvents(server, "s1");
  assert.equal(events.filter((e) => e.streamEventType === "error").length, 1);
  assert.equal(events.length, 3); // created, the failure, failed
}, { config: { timerWakeups: [], pendingTimeoutMs: 200 } });

serverTest(
  "deadlines of execution A firing after B became active change nothing of B's",
  async (server) => {
    const a = await createRun(server, "s1");
    await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
    const wa = await IngestClient.connect(proxy.via(a.ingestUrl), { token: a.ingestToken });
    await server.call(`/v1/sessions/s1/executions/${a.executionId}/interrupt`, {
      method: "POST",
      json: { reason: "stop A" },
    });
    proxy.cut(); // A: grace, heartbeat, pending and interrupt deadlines armed
    await eventually(async () => (await graceRecord(server, "s1")) !== null, "grace of A");
    const b = await createRun(server, "s1");
    const failed = await server.call(`/v1/sessions/s1/executions/${a.executionId}/fail`, {
      method: "POST",
      json: { error: "given up" },
    });
    assert.deepEqual(failed.body, { failed: true });
    await wa.closed;

    // B becomes running, gets an interrupt flag and a grace of its own.
    const wb = await IngestClient.connect(proxy.via(b.ingestUrl), { token: b.ingestToken });
    await server.call(`/v1/sessions/s1/executions/${b.executionId}/interrupt`, {
      method: "POST",
      json: { reason: "stop B" },
    });
    await wb.next((m) => m.type === "kill");
    proxy.cut();
    await eventually(
      async () => (await graceRecord(server, "s1"))?.executionId === b.executionId,
      "grace of B",
    );
    const graceB = await graceRecord(server, "s1");
    const flagB = await interruptFlag(server, "s1");
    const before = await storedEvents(server, "s1");

    await delay(300); // every deadline of A is due now
    const ofA = await timersOf(server, a.executionId);
    assert.ok(ofA.length >= 3, `A still has deadlines armed: ${ofA.map((t) => t.kind)}`);
    await Promise.all(ofA.map((t) => server.service.runner.fire(timerKey(t))));

    assert.deepEqual(await timersOf(server, a.executionId), []);
    assert.deepEqual(await storedEvents(server, "s1"), before);
    assert.deepEqual(await graceRecord(server, "s1"), graceB);
    assert.deepEqual(await interruptFlag(server, "s1"), flagB);
    const execB = await getExecution(server, b);
    assert.equal(execB.status, "running");
    assert.equal(execB.active, true);
    assert.equal(execB.health, "disconnected");

    // B's own deadlines still work: its grace expires while interrupting → forced interrupt.
    for (const t of await listTimers(server.kv)) await server.service.runner.fire(timerKey(t));
    const endedB = await getExecution(server, b);
    assert.equal(endedB.status, "interrupted");
    assert.equal(endedB.error, ErrorText.forcedInterrupt);
    const forced = (await storedEvents(server, "s1")).filter((e) =>
      e.streamEventType === "interrupted"
    );
    assert.deepEqual(forced.map((e) => e.data), [{ reason: "stop B", forced: true }]);
    await wb.closed;
  },
  { config: { ...manual.config, interruptTimeoutMs: 200 } },
);

serverTest("a deadline fires through the queue alone (no sweep)", async (server) => {
  const run = await createRun(server, "s1");
  await eventually(
    async () => (await getExecution(server, run)).status === "failed",
    "the pending deadline",
    3000,
  );
  assert.equal((await getExecution(server, run)).error, ErrorText.neverConnected);
}, { config: { timerWakeups: ["queue"], pendingTimeoutMs: 300 } });

serverTest(
  "liveness writes are debounced to at most a quarter of the heartbeat timeout",
  async (server) => {
    // TETHER_HEARTBEAT_WRITE_MS (5 s) is far above this timeout: a wrapper that keeps sending
    // must still look healthy and never time out because its last write was debounced.
    const run = await createRun(server, "s1");
    const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    for (let i = 1; i <= 12; i++) {
      client.send(
        i % 2 ? { streamEventType: "heartbeat" } : { streamEventType: "output", seq: i / 2 },
      );
      await delay(100);
      if (i > 4) {
        assert.equal((await getExecution(server, run)).health, "healthy", `after ${i}00 ms`);
      }
    }
    assert.equal(await statusOf(server, run), "running");
    await client.close();
  },
  { config: { heartbeatTimeoutMs: 800, heartbeatWriteMs: 5000, disconnectGraceMs: 60_000 } },
);

serverTest(
  "a stored frame inside the liveness debounce counts: the timeout runs from it, not earlier",
  async (server) => {
    const run = await createRun(server, "s1");
    const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    // Admission wrote liveness; this frame comes within the debounce (a quarter: 250 ms).
    await delay(150);
    client.send({ streamEventType: "output", seq: 1 });
    await client.ackOf(1);
    const lastFrameAt = Date.now();
    await eventually(async () => await statusOf(server, run) === "failed", "timed out", 5000);
    const silent = Date.now() - lastFrameAt;
    assert.ok(silent >= 1000, `failed after ${silent} ms of silence, before the 1000 ms timeout`);
    await client.closed;
  },
  { config: { heartbeatTimeoutMs: 1000, heartbeatWriteMs: 5000, disconnectGraceMs: 60_000 } },
);
