/**
 * Interrupt (PROTOCOL.md 8) over real sockets: queued and pending executions end at once;
 * a running one gets the flag, a `kill` (again after every `hello`) and the interrupt
 * deadline that force-ends it; while the flag is set, grace expiry and heartbeat timeout
 * end it as a forced interrupt.
 */
import assert from "node:assert/strict";
import { ErrorText } from "../src/protocol.ts";
import { startChaosProxy } from "./helpers/chaos_proxy.ts";
import { interruptFlag, timersOf, wakeupVariants } from "./helpers/deadline_env.ts";
import {
  createRun,
  eventually,
  getExecution,
  IngestClient,
  type Run,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";

const interrupt = (server: TestServer, run: Run, reason?: string) =>
  server.call<{ executionId: string; status: string }>(
    `/v1/sessions/${run.sessionId}/executions/${run.executionId}/interrupt`,
    { method: "POST", json: reason === undefined ? {} : { reason } },
  );

const waitStatus = (server: TestServer, run: Run, status: string) =>
  eventually(async () => (await getExecution(server, run)).status === status, `status ${status}`);

const eventsOf = async (server: TestServer, run: Run, type: string) =>
  (await storedEvents(server, run.sessionId)).filter((e) =>
    e.executionId === run.executionId && e.streamEventType === type
  );

serverTest(
  "a queued execution is interrupted at once; the active one is untouched",
  async (server) => {
    const active = await createRun(server, "s1");
    const queued = await createRun(server, "s1");
    const res = await interrupt(server, queued, "not needed");
    assert.equal(res.status, 202);
    assert.deepEqual(res.body, { executionId: queued.executionId, status: "interrupted" });
    const events = (await storedEvents(server, "s1")).slice(-2);
    assert.deepEqual(events.map((e) => [e.streamEventType, e.data]), [
      ["interrupted", { reason: "not needed" }],
      ["execution_status", {
        status: "interrupted",
        previousStatus: "pending",
        active: false,
        error: "not needed",
      }],
    ]);
    const exec = await getExecution(server, active);
    assert.equal(exec.active, true);
    assert.equal(exec.status, "pending");
    assert.deepEqual((await server.call("/v1/sessions/s1")).body.queuedExecutionIds, []);
  },
);

serverTest(
  "an active pending execution is interrupted at once with the default reason",
  async (server) => {
    const run = await createRun(server, "s1");
    const next = await createRun(server, "s1");
    const res = await interrupt(server, run);
    assert.equal(res.body.status, "interrupted");
    const exec = await getExecution(server, run);
    assert.equal(exec.error, ErrorText.userInterrupted);
    assert.deepEqual((await eventsOf(server, run, "interrupted")).map((e) => e.data), [
      { reason: ErrorText.userInterrupted },
    ]);
    assert.equal((await getExecution(server, next)).active, true);
    // A terminal execution is left as it is.
    const again = await interrupt(server, run, "late");
    assert.deepEqual(again.body, { executionId: run.executionId, status: "interrupted" });
    assert.equal((await getExecution(server, run)).error, ErrorText.userInterrupted);
  },
);

for (const { label, config } of wakeupVariants()) {
  serverTest(
    `[${label}] an ignored kill is forced to interrupted after the timeout`,
    async (server) => {
      const run = await createRun(server, "s1");
      const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      const res = await interrupt(server, run, "stop now");
      assert.deepEqual(res.body, { executionId: run.executionId, status: "running" });
      const kill = await wrapper.next((m) => m.type === "kill");
      assert.deepEqual(kill, { type: "kill", signal: "SIGTERM", reason: "stop now" });
      assert.equal((await interruptFlag(server, "s1"))?.reason, "stop now");
      assert.equal((await timersOf(server, run.executionId, "interrupt")).length, 1);
      assert.equal((await wrapper.closed).code, 4000);
      const exec = await getExecution(server, run);
      assert.equal(exec.status, "interrupted");
      assert.equal(exec.error, ErrorText.forcedInterrupt);
      assert.deepEqual((await eventsOf(server, run, "interrupted")).map((e) => e.data), [
        { reason: "stop now", forced: true },
      ]);
      assert.equal(await interruptFlag(server, "s1"), null);
    },
    { config: { ...config, interruptTimeoutMs: 300 } },
  );

  serverTest(
    `[${label}] a forced interrupt's event keeps a long reason whole; the kill frame is cut`,
    async (server) => {
      const run = await createRun(server, "s1");
      const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      const reason = "😀".repeat(1100);
      await interrupt(server, run, reason);
      const kill = await wrapper.next((m) => m.type === "kill");
      assert.equal(kill.reason, "😀".repeat(1024));
      assert.equal((await wrapper.closed).code, 4000);
      assert.deepEqual((await eventsOf(server, run, "interrupted")).map((e) => e.data), [
        { reason, forced: true },
      ]);
    },
    { config: { ...config, interruptTimeoutMs: 300 } },
  );

  serverTest(
    `[${label}] while interrupting, a grace expiry ends it as a forced interrupt`,
    async (server) => {
      const run = await createRun(server, "s1");
      await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
      const wrapper = await IngestClient.connect(proxy.via(run.ingestUrl), {
        token: run.ingestToken,
      });
      await interrupt(server, run, "stop");
      await wrapper.next((m) => m.type === "kill");
      proxy.cut();
      await waitStatus(server, run, "interrupted");
      const exec = await getExecution(server, run);
      assert.equal(exec.error, ErrorText.forcedInterrupt);
      assert.deepEqual(await eventsOf(server, run, "wrapper_disconnected"), []);
      assert.deepEqual((await eventsOf(server, run, "interrupted")).map((e) => e.data), [
        { reason: "stop", forced: true },
      ]);
    },
    { config: { ...config, interruptTimeoutMs: 60_000, disconnectGraceMs: 300 } },
  );

  serverTest(
    `[${label}] while interrupting, a heartbeat timeout ends it as a forced interrupt`,
    async (server) => {
      const run = await createRun(server, "s1");
      const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      await interrupt(server, run, "stop");
      await waitStatus(server, run, "interrupted");
      assert.equal((await getExecution(server, run)).error, ErrorText.forcedInterrupt);
      assert.deepEqual(await eventsOf(server, run, "error"), []);
      assert.deepEqual((await eventsOf(server, run, "interrupted")).map((e) => e.data), [
        { reason: "stop", forced: true },
      ]);
      assert.equal((await wrapper.closed).code, 4000);
    },
    {
      config: {
        ...config,
        interruptTimeoutMs: 60_000,
        heartbeatTimeoutMs: 400,
        heartbeatWriteMs: 0,
      },
    },
  );
}

serverTest(
  "a wrapper that confirms the kill ends the run with its own interrupted frame",
  async (server) => {
    const run = await createRun(server, "s1");
    const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    await interrupt(server, run, "please stop");
    const kill = await wrapper.next((m) => m.type === "kill");
    wrapper.send({ streamEventType: "interrupted", seq: 1, data: { reason: kill.reason } });
    assert.deepEqual(await wrapper.closed, { code: 4000, reason: "execution interrupted" });
    const exec = await getExecution(server, run);
    assert.equal(exec.error, "please stop");
    assert.deepEqual((await eventsOf(server, run, "interrupted")).map((e) => e.data), [
      { reason: "please stop" },
    ]);
    assert.equal(await interruptFlag(server, "s1"), null);
  },
);

serverTest("the kill is delivered again after a reconnect", async (server) => {
  const run = await createRun(server, "s1");
  const first = await IngestClient.connect(run.ingestUrl, {
    token: run.ingestToken,
    dial: "w1/1",
  });
  await interrupt(server, run, "stop please");
  await first.next((m) => m.type === "kill");
  await first.close(4100, "network hiccup");
  const second = await IngestClient.connect(run.ingestUrl, {
    token: run.ingestToken,
    dial: "w1/2",
  });
  assert.deepEqual(second.messages.map((m) => m.type), ["hello", "kill"]);
  assert.equal(second.messages[1].reason, "stop please");
  // A replacing dial gets it too, and the replaced socket is closed with 4001.
  const third = await IngestClient.connect(run.ingestUrl, {
    token: run.ingestToken,
    dial: "w1/3",
  });
  await third.next((m) => m.type === "kill");
  assert.equal((await second.closed).code, 4001);
  await third.close();
}, { config: { interruptTimeoutMs: 60_000 } });

serverTest("a second interrupt keeps the first reason and deadline", async (server) => {
  const run = await createRun(server, "s1");
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  await interrupt(server, run, "first");
  const [deadline] = await timersOf(server, run.executionId, "interrupt");
  const flag = await interruptFlag(server, "s1");
  await new Promise((r) => setTimeout(r, 50));
  const res = await interrupt(server, run, "second");
  assert.equal(res.body.status, "running");
  await wrapper.until(() => wrapper.of("kill").length === 2, "two kills");
  assert.deepEqual(wrapper.of("kill").map((m) => m.reason), ["first", "first"]);
  assert.deepEqual(await timersOf(server, run.executionId, "interrupt"), [deadline]);
  assert.deepEqual(await interruptFlag(server, "s1"), flag);
  await wrapper.close();
}, { config: { interruptTimeoutMs: 60_000 } });
