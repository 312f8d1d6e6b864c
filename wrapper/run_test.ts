import assert from "node:assert/strict";
import { type FakeService, startFakeService, type StoredFrame } from "./testdata/fake_service.ts";
import { exitCodeFor } from "./run.ts";
import { agent, eventually, reconnectGate, startRun as run, startSseServer } from "./test_util.ts";

const types = (frames: StoredFrame[]) => frames.map((f) => f.streamEventType);
const last = (service: FakeService) => service.stored[service.stored.length - 1];

Deno.test("exitCodeFor: a 4000 reason wins, then a signal, then the own frame", () => {
  const done = (status?: "completed" | "failed" | "interrupted") =>
    ({ kind: "done", status, reason: "" }) as const;
  assert.equal(exitCodeFor(done("completed"), { signalled: true }), 0);
  assert.equal(exitCodeFor(done("failed")), 1);
  assert.equal(exitCodeFor(done("interrupted")), 130);
  assert.equal(exitCodeFor(done(), { own: "completed" }), 0);
  assert.equal(exitCodeFor(done()), 1);
  assert.equal(exitCodeFor({ kind: "acknowledged", status: "completed" }), 0);
  assert.equal(
    exitCodeFor({ kind: "acknowledged", status: "completed" }, { signalled: true }),
    130,
  );
  assert.equal(exitCodeFor({ kind: "unacknowledged", status: "interrupted" }), 130);
  assert.equal(exitCodeFor({ kind: "gave_up", failedDials: 3 }), 2);
  assert.equal(exitCodeFor({ kind: "replaced" }), 3);
  assert.equal(exitCodeFor({ kind: "refused", code: 4403 }), 4);
  assert.equal(exitCodeFor({ kind: "closed" }), 130);
});

Deno.test("stdout JSON objects become agent, other lines output, stderr output; exit 0 completes", async () => {
  await using service = await startFakeService();
  const r = run(service, {
    command: agent(
      'out:{"type":"system","n":1}',
      "out:plain text",
      "err:warning!",
      "out:[1,2]",
      "out:42",
    ),
  });
  assert.equal(await r.exit, 0);
  // The two streams are read side by side: order is kept within each, not across them.
  const isStderr = (f: StoredFrame) => (f.data as { stream?: string }).stream === "stderr";
  assert.deepEqual(
    service.stored.filter((f) => !isStderr(f)).map((f) => [f.streamEventType, f.data]),
    [
      ["agent", { type: "system", n: 1 }],
      ["output", { stream: "stdout", text: "plain text" }],
      ["output", { stream: "stdout", text: "[1,2]" }],
      ["output", { stream: "stdout", text: "42" }],
      ["complete", { exitCode: 0 }],
    ],
  );
  assert.deepEqual(service.stored.filter(isStderr).map((f) => f.data), [
    { stream: "stderr", text: "warning!" },
  ]);
});

Deno.test("line rules: CRLF, invalid UTF-8, blank lines, a last line without newline", async () => {
  await using service = await startFakeService();
  // "a\r\n" "\n" "  \n" "b\xff\xfec\n" "\r\n" "tail" (no newline)
  const r = run(service, { command: agent("hex:610d0a0a20200a62fffe630a0d0a7461696c") });
  assert.equal(await r.exit, 0);
  assert.deepEqual(service.storedOfType("output").map((f) => (f.data as { text: string }).text), [
    "a",
    "b\ufffd\ufffdc",
    "tail",
  ]);
});

Deno.test("a line over the frame limit is truncated on whole characters with its size", async () => {
  await using service = await startFakeService({ maxFrameBytes: 1500 });
  const line = "é".repeat(1000) + "x"; // 2001 bytes
  const r = run(service, { command: agent(`out:${line}`, `out:{"big":"${"z".repeat(3000)}"}`) });
  assert.equal(await r.exit, 0);
  const [first, second] = service.storedOfType("output");
  const data = first.data as { text: string; truncated: boolean; bytes: number };
  assert.deepEqual([data.truncated, data.bytes], [true, 2001]);
  assert.ok(data.text.length > 500 && line.startsWith(data.text));
  assert.ok(new TextEncoder().encode(JSON.stringify({ seq: 1, ...first })).length <= 1500);
  assert.equal((second.data as { bytes: number }).bytes, 3010);
  assert.equal(service.storedOfType("agent").length, 0);
});

Deno.test("exit code n becomes a fatal AGENT_EXIT error; the 4000 reason gives exit 1", async () => {
  await using service = await startFakeService();
  const r = run(service, { command: agent("out:x", "exit:3") });
  assert.equal(await r.exit, 1);
  assert.deepEqual(last(service).data, {
    fatal: true,
    code: "AGENT_EXIT",
    exitCode: 3,
    error: "agent exited with code 3",
  });
});

Deno.test("an agent killed by a signal the wrapper did not send is AGENT_EXIT", async () => {
  await using service = await startFakeService();
  const r = run(service, { command: agent("selfkill") });
  assert.equal(await r.exit, 1);
  assert.deepEqual(last(service).data, {
    fatal: true,
    code: "AGENT_EXIT",
    exitCode: 137,
    error: "agent exited with code 137",
    signal: "SIGKILL",
  });
});

Deno.test("an agent command that cannot start is a fatal AGENT_START_FAILED error", async () => {
  await using service = await startFakeService();
  const r = run(service, { command: ["/nonexistent/agent-binary"] });
  assert.equal(await r.exit, 1);
  assert.equal((last(service).data as { code: string }).code, "AGENT_START_FAILED");
});

Deno.test("the agent starts only after the first hello", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "close", code: 4009 }, { kind: "silent" });
  const r = run(service, { connectTimeoutMs: 150, reconnectMaxMs: 100 });
  await service.waitFor(() => service.dials.length === 2);
  assert.equal(r.logged("agent started"), false);
  assert.equal(await r.exit, 0);
  assert.equal(r.logged("agent started"), true);
});

for (
  const [plan, code] of [
    [{ kind: "close", code: 4000, reason: "execution interrupted" }, 130],
    [{ kind: "close", code: 4401, reason: "unauthorized" }, 4],
    [{ kind: "close", code: 4403, reason: "forbidden" }, 4],
    [{ kind: "http", status: 503 }, 2],
  ] as const
) {
  Deno.test(`a first connection ending in ${"code" in plan ? plan.code : "failures"} exits ${code} without starting the agent`, async () => {
    await using service = await startFakeService();
    service.setDefaultPlan(plan);
    const r = run(service, { reconnectAttempts: 2 });
    assert.equal(await r.exit, code);
    assert.equal(r.logged("agent started"), false);
    assert.deepEqual(service.received, []);
  });
}

Deno.test("a kill right after the first hello: the agent never starts, interrupted at once", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "accept", kill: { reason: "changed my mind" } });
  const r = run(service, { command: agent("out:should not run") });
  assert.equal(await r.exit, 130);
  assert.equal(r.logged("agent started"), false);
  assert.deepEqual(service.stored.map((f) => [f.streamEventType, f.data]), [
    ["interrupted", { reason: "changed my mind" }],
  ]);
});

Deno.test("kill: SIGTERM, the agent's last output, then interrupted; no AGENT_EXIT", async () => {
  await using service = await startFakeService();
  const r = run(service, { command: agent("trap:3", "out:ready", "hang") });
  await service.waitFor(() => service.stored.length === 1);
  service.current!.send({ type: "kill", signal: "SIGTERM" });
  assert.equal(await r.exit, 130);
  assert.deepEqual(service.stored.map((f) => [f.streamEventType, f.data]), [
    ["output", { stream: "stdout", text: "ready" }],
    ["output", { stream: "stdout", text: "got SIGTERM" }],
    ["interrupted", { reason: "User interrupted" }],
  ]);
});

Deno.test("kill: an agent that ignores SIGTERM gets SIGKILL after --kill-grace-ms", async () => {
  await using service = await startFakeService();
  const r = run(service, { killGraceMs: 300, command: agent("ignore-term", "out:ready", "hang") });
  await service.waitFor(() => service.stored.length === 1);
  const t0 = performance.now();
  service.current!.send({ type: "kill", reason: "stop" });
  // The service repeats the kill after every hello; a second one changes nothing.
  service.current!.send({ type: "kill", reason: "again" });
  assert.equal(await r.exit, 130);
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 280 && elapsed < 3000, `took ${elapsed} ms`);
  assert.deepEqual(last(service).data, { reason: "stop" });
  assert.equal(service.storedOfType("interrupted").length, 1);
});

Deno.test("kill with signal SIGKILL kills at once", async () => {
  await using service = await startFakeService();
  const r = run(service, {
    killGraceMs: 10_000,
    command: agent("ignore-term", "out:ready", "hang"),
  });
  await service.waitFor(() => service.stored.length === 1);
  const t0 = performance.now();
  service.current!.send({ type: "kill", signal: "SIGKILL", reason: "now" });
  assert.equal(await r.exit, 130);
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("kill while disconnected: the interrupted frame is delivered after the reconnect", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  const r = run(
    service,
    { killGraceMs: 200, command: agent("ignore-term", "out:ready", "hang") },
    { connection: { delay: gate.delay } },
  );
  await service.waitFor(() => service.stored.length === 1);
  service.current!.send({ type: "kill", reason: "bye" });
  await eventually(() => r.logged("kill received"));
  service.cut();
  await eventually(() => r.logged("reconnecting"));
  await eventually(() => r.logged("run ended")); // SIGKILL after 200 ms
  gate.open();
  assert.equal(await r.exit, 130);
  assert.deepEqual(types(service.stored), ["output", "wrapper_resumed", "interrupted"]);
  assert.deepEqual(last(service).data, { reason: "bye" });
});

Deno.test("completion while disconnected is delivered after the reconnect", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  const r = run(
    service,
    { command: agent("out:one", "sleep:200", "out:two", "exit:0") },
    { connection: { delay: gate.delay } },
  );
  await service.waitFor(() => service.stored.length === 1);
  service.cut();
  await eventually(() => r.logged("run ended"));
  gate.open();
  assert.equal(await r.exit, 0);
  assert.deepEqual(types(service.stored), ["output", "wrapper_resumed", "output", "complete"]);
  assert.deepEqual(service.stored[1].data, {
    bufferedEvents: 2,
    eventsLost: false,
    droppedEvents: 0,
  });
});

Deno.test("4000 while the agent still runs: the agent is stopped, exit by the reason", async () => {
  await using service = await startFakeService();
  const r = run(service, { command: agent("trap:0", "out:ready", "hang") });
  await service.waitFor(() => service.stored.length === 1);
  service.current!.close(4000, "execution failed");
  assert.equal(await r.exit, 1);
  assert.equal(service.dials.length, 1);
  assert.deepEqual(types(service.stored), ["output"]);
});

for (const [code, exit] of [[4001, 3], [4401, 4], [4403, 4]] as const) {
  Deno.test(`${code} while the agent runs: the agent is stopped, exit ${exit}`, async () => {
    await using service = await startFakeService();
    const r = run(service, {
      killGraceMs: 200,
      command: agent("ignore-term", "out:ready", "hang"),
    });
    await service.waitFor(() => service.stored.length === 1);
    service.current!.close(code, "x");
    assert.equal(await r.exit, exit);
    assert.equal(service.dials.length, 1);
  });
}

Deno.test("giving up while the agent runs: the agent is stopped, exit 2", async () => {
  await using service = await startFakeService();
  const r = run(service, { reconnectAttempts: 2, command: agent("out:ready", "hang") });
  await service.waitFor(() => service.stored.length === 1);
  service.setDefaultPlan({ kind: "drop" });
  service.cut();
  assert.equal(await r.exit, 2);
});

Deno.test("the agent's output is read while disconnected and delivered after the marker", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  const r = run(
    service,
    { command: agent("out:first", "sleep:100", "lines:300", "exit:0") },
    { connection: { delay: gate.delay } },
  );
  await service.waitFor(() => service.stored.length === 1);
  service.cut();
  await eventually(() => r.logged("run ended"));
  gate.open();
  assert.equal(await r.exit, 0);
  assert.deepEqual(service.stored[1].data, {
    bufferedEvents: 301,
    eventsLost: false,
    droppedEvents: 0,
  });
  assert.deepEqual(
    service.storedOfType("agent").map((f) => (f.data as { n: number }).n),
    Array.from({ length: 300 }, (_, i) => i + 1),
  );
});

Deno.test("overflow while disconnected: dropped lines are counted, the terminal frame kept", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  const r = run(
    service,
    { bufferLimit: 50, command: agent("out:first", "sleep:100", "lines:200", "exit:4") },
    { connection: { delay: gate.delay } },
  );
  await service.waitFor(() => service.stored.length === 1);
  service.cut();
  await eventually(() => r.logged("run ended"));
  gate.open();
  assert.equal(await r.exit, 1);
  assert.deepEqual(service.stored[1].data, {
    bufferedEvents: 51,
    eventsLost: true,
    droppedEvents: 150,
  });
  assert.equal(service.storedOfType("agent").length, 50);
  assert.equal(last(service).streamEventType, "error");
});

Deno.test("SIGTERM to the wrapper: the agent is stopped and the run interrupted, exit 130", async () => {
  await using service = await startFakeService();
  const r = run(service, { command: agent("trap:0", "out:ready", "hang") });
  await service.waitFor(() => service.stored.length === 1);
  r.signal("SIGTERM");
  assert.equal(await r.exit, 130);
  assert.deepEqual(last(service).data, { reason: "Wrapper received SIGTERM" });
});

Deno.test("a signal before the first hello: exit 130, no frame, no agent", async () => {
  await using service = await startFakeService();
  service.setDefaultPlan({ kind: "silent" });
  const r = run(service);
  await service.waitFor(() => service.dials.length === 1);
  r.signal("SIGINT");
  assert.equal(await r.exit, 130);
  assert.equal(r.logged("agent started"), false);
  assert.deepEqual(service.received, []);
});

Deno.test("after a signal the interrupted frame waits a bounded time for its ack", async () => {
  await using service = await startFakeService();
  const r = run(
    service,
    { reconnectAttempts: 1000, command: agent("trap:0", "out:ready", "hang") },
    { signalAckTimeoutMs: 200 },
  );
  await service.waitFor(() => service.stored.length === 1);
  service.setDefaultPlan({ kind: "drop" });
  service.cut();
  await eventually(() => r.logged("reconnecting"));
  const t0 = performance.now();
  r.signal("SIGINT");
  assert.equal(await r.exit, 130);
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 180 && elapsed < 2000, `took ${elapsed} ms`);
});

Deno.test("--idle-timeout-ms: a silent agent is stopped with AGENT_IDLE_TIMEOUT", async () => {
  await using service = await startFakeService();
  const r = run(service, { idleTimeoutMs: 150, command: agent("out:a", "hang") });
  assert.equal(await r.exit, 1);
  assert.deepEqual(last(service).data, {
    fatal: true,
    code: "AGENT_IDLE_TIMEOUT",
    error: "agent produced no output for 150 ms",
  });
});

Deno.test("--idle-timeout-ms: time spent disconnected does not count", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  const r = run(
    service,
    { idleTimeoutMs: 400, command: agent("out:a", "sleep:600", "exit:0") },
    { connection: { delay: gate.delay } },
  );
  await service.waitFor(() => service.stored.length === 1);
  service.cut();
  await new Promise((resolve) => setTimeout(resolve, 350));
  gate.open(); // the clock restarts after this hello: 400 ms more, the agent exits before
  assert.equal(await r.exit, 0);
  assert.equal(last(service).streamEventType, "complete");
});

Deno.test("many lines through repeated cuts: every line stored once, in order", async () => {
  await using service = await startFakeService({ maxInFlight: 100 });
  const r = run(service, { command: agent("lines:3000", "exit:0") });
  const cutter = setInterval(() => service.cut(), 40);
  try {
    assert.equal(await r.exit, 0);
  } finally {
    clearInterval(cutter);
  }
  assert.deepEqual(
    service.storedOfType("agent").map((f) => (f.data as { n: number }).n),
    Array.from({ length: 3000 }, (_, i) => i + 1),
  );
  assert.deepEqual(service.stored.map((f) => f.seq), service.stored.map((_, i) => i + 1));
});

// --- --sse mode ----------------------------------------------------------------------

const sseEvent = (data: unknown, extra = "") => `${extra}data: ${JSON.stringify(data)}\n\n`;

Deno.test("--sse: events become kilocode with `event`; keep-alives skipped; done ends the run", async () => {
  await using service = await startFakeService();
  await using sse = startSseServer([
    sseEvent({ type: "server.connected", properties: {} }) +
    sseEvent({ type: "message.updated", properties: { id: 1 } }) +
    "event: named.one\ndata: plain text\n\n" +
    sseEvent({ type: "server.heartbeat" }) +
    sseEvent([1, 2], "event: list\n") +
    sseEvent({ type: "session.idle", properties: { sessionID: "s" } }) +
    sseEvent({ type: "after.done" }) + "…",
  ]);
  const r = run(service, { sse: sse.url, command: [] });
  assert.equal(await r.exit, 0);
  assert.deepEqual(service.stored.map((f) => [f.streamEventType, f.data]), [
    ["kilocode", { type: "message.updated", properties: { id: 1 }, event: "message.updated" }],
    ["kilocode", { raw: "plain text", event: "named.one" }],
    ["kilocode", { raw: "[1,2]", event: "list" }],
    ["kilocode", { type: "session.idle", properties: { sessionID: "s" }, event: "session.idle" }],
    ["complete", { exitCode: 0 }],
  ]);
});

Deno.test("--sse with an agent: a dropped stream is re-opened; the done event stops the agent", async () => {
  await using service = await startFakeService();
  await using sse = startSseServer([
    sseEvent({ type: "x" }, "id: 5\n"), // then the stream ends: re-opened with Last-Event-ID
    sseEvent({ type: "y" }) + "event: finished\ndata: {}\n\n…",
  ]);
  const r = run(service, {
    sse: sse.url,
    doneEvent: "finished",
    command: agent("trap:7", "out:agent up", "hang"),
  });
  assert.equal(await r.exit, 0);
  assert.deepEqual(sse.lastEventIds, [null, "5"]);
  assert.ok(r.logged("SSE stream dropped"));
  const kilocode = service.storedOfType("kilocode").map((f) => (f.data as { event: string }).event);
  assert.deepEqual(kilocode, ["x", "y", "finished"]);
  // The agent was stopped by the wrapper: whatever its exit code, no AGENT_EXIT follows.
  assert.deepEqual(last(service).data, { exitCode: 0 });
});

Deno.test("--sse: an agent that exits by itself ends the run and the SSE reading", async () => {
  await using service = await startFakeService();
  await using sse = startSseServer([sseEvent({ type: "x" }) + "…"]);
  const r = run(service, { sse: sse.url, command: agent("sleep:150", "exit:2") });
  assert.equal(await r.exit, 1);
  assert.equal((last(service).data as { exitCode: number }).exitCode, 2);
});

Deno.test("--sse without an agent: a kill ends the run at once", async () => {
  await using service = await startFakeService();
  await using sse = startSseServer([sseEvent({ type: "x" }) + "…"]);
  const r = run(service, { sse: sse.url, command: [] });
  await service.waitFor(() => service.stored.length === 1);
  service.current!.send({ type: "kill", reason: "enough" });
  assert.equal(await r.exit, 130);
  assert.deepEqual(last(service).data, { reason: "enough" });
});

Deno.test("--idle-timeout-ms counts SSE events as activity", async () => {
  await using service = await startFakeService();
  await using sse = startSseServer([sseEvent({ type: "x" }) + "…"]);
  const r = run(service, { sse: sse.url, idleTimeoutMs: 200, command: [] });
  assert.equal(await r.exit, 1);
  assert.deepEqual(types(service.stored), ["kilocode", "error"]);
});
