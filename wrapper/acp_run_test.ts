/**
 * The wrapper's `--acp` run (PROTOCOL.md section 14) in this process against the fake ingest
 * service, with the scripted ACP agent as a real child process: inputs from the service,
 * frames and confirmations back, reconnects, kill, and a broken agent.
 */
import assert from "node:assert/strict";
import { AcpEventType, ErrorCode } from "../src/protocol.ts";
import { startFakeService, type StoredFrame } from "./testdata/fake_service.ts";
import { acpAgentCommand } from "../demo/acp_agent.ts";
import { startRun } from "./test_util.ts";

/** Generous: on a loaded machine starting the agent alone can take seconds. */
const WAIT = { timeoutMs: 30_000 };

const types = (frames: StoredFrame[]) => frames.map((f) => f.streamEventType);
const delivered = (frames: StoredFrame[]) =>
  frames.filter((f) => f.streamEventType === "input_delivered")
    .map((f) => (f.data as { inputId: number }).inputId);

Deno.test("acp run: inputs drive turns; every input delivered once, also across a reconnect", async () => {
  await using service = await startFakeService();
  const dir = await Deno.makeTempDir({ prefix: "tether-acp-run-" });
  try {
    service.input({ data: "edit the notes" });
    service.input({ data: "and then stop" });
    const file = `${dir}/notes.md`;
    const r = startRun(service, { acp: true, command: acpAgentCommand("--file", file) });
    await service.waitFor(
      () => service.storedOfType(AcpEventType.permissionRequest).length === 1,
      WAIT,
    );
    // A reconnect resends every input above deliveredInputId: none is taken twice.
    service.cut();
    await service.waitFor(() => service.connections.length === 2 && !!service.current, WAIT);
    service.input({ data: { permission: { requestId: 1, optionId: "allow" } } });
    await service.waitFor(() => service.storedOfType(AcpEventType.turn).length === 2, WAIT);
    service.input({ endOfInput: true });
    assert.equal(await r.exit, 0, r.logs.join("\n"));
    assert.deepEqual(service.storedOfType(AcpEventType.turn).map((f) => f.data), [
      { inputId: 1, stopReason: "end_turn" },
      { inputId: 2, stopReason: "end_turn" },
    ]);
    // Both prompts were taken before the agent started: one confirmation covers them.
    assert.deepEqual(delivered(service.stored), [2, 3, 4]);
    assert.deepEqual(service.stored.at(-1), {
      ...service.stored.at(-1),
      streamEventType: "complete",
      data: { exitCode: 0 },
    });
    const chunks = service.storedOfType(AcpEventType.update)
      .map((f) => f.data as { sessionUpdate: string; content?: { text: string } })
      .filter((u) => u.sessionUpdate === "agent_message_chunk").map((u) => u.content?.text);
    assert.equal(chunks.length, 8, "each turn's chunks once");
    assert.equal(new Set(chunks).size, 8);
    assert.equal(await Deno.readTextFile(file), "Edited in turn 1.\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acp run: kill cancels the turn, answers the request cancelled, ends interrupted", async () => {
  await using service = await startFakeService();
  service.input({ data: "edit" });
  const r = startRun(service, { acp: true, command: acpAgentCommand("--file", "/nonexistent/x") });
  await service.waitFor(
    () => service.storedOfType(AcpEventType.permissionRequest).length === 1,
    WAIT,
  );
  service.current!.send({ type: "kill", signal: "SIGTERM", reason: "enough" });
  assert.equal(await r.exit, 130);
  const end = types(service.stored).slice(-2);
  assert.deepEqual(end, [AcpEventType.turn, "interrupted"]);
  assert.deepEqual(service.stored.at(-2)?.data, { inputId: 1, stopReason: "cancelled" });
  assert.deepEqual(service.stored.at(-1)?.data, { reason: "enough" });
  assert.equal(service.storedOfType("error").length, 0, "no AGENT_EXIT after a kill");
});

Deno.test("acp run: an agent that fails initialize ends the run with AGENT_PROTOCOL_ERROR", async () => {
  await using service = await startFakeService();
  service.input({ data: "hello" });
  const r = startRun(service, { acp: true, command: acpAgentCommand("--fail-initialize") });
  assert.equal(await r.exit, 1);
  const last = service.stored.at(-1)!;
  assert.equal(last.streamEventType, "error");
  assert.equal((last.data as { code: string }).code, ErrorCode.agentProtocolError);
  assert.deepEqual(delivered(service.stored), [1], "the prompt was taken before the failure");
});

Deno.test("acp run: waiting for an answer or a prompt is not idle", async () => {
  await using service = await startFakeService();
  const dir = await Deno.makeTempDir({ prefix: "tether-acp-idle-" });
  try {
    service.input({ data: "edit" });
    const r = startRun(service, {
      acp: true,
      // Generous: starting the agent on a loaded machine counts as working time.
      idleTimeoutMs: 3000,
      command: acpAgentCommand("--file", `${dir}/notes.md`, "--delay-ms", "50"),
    });
    await service.waitFor(
      () => service.storedOfType(AcpEventType.permissionRequest).length === 1,
      WAIT,
    );
    await new Promise((resolve) => setTimeout(resolve, 3500));
    service.input({ data: { permission: { requestId: 1, optionId: "allow" } } });
    await service.waitFor(() => service.storedOfType(AcpEventType.turn).length === 1, WAIT);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    service.input({ endOfInput: true });
    assert.equal(await r.exit, 0, r.logs.join("\n"));
    assert.equal(service.storedOfType("error").length, 0, "no idle timeout while waiting");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acp run: an agent silent during its turn is stopped by the idle timeout", async () => {
  await using service = await startFakeService();
  service.input({ data: "hello" });
  const r = startRun(service, {
    acp: true,
    idleTimeoutMs: 300,
    command: acpAgentCommand("--delay-ms", "5000"),
  });
  assert.equal(await r.exit, 1);
  const [error] = service.storedOfType("error");
  assert.equal((error.data as { code: string }).code, ErrorCode.agentIdleTimeout);
});

Deno.test("acp run: a kill right after the first hello leaves the queued inputs undelivered", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "accept", kill: { reason: "changed my mind" } });
  service.input({ data: "edit" });
  const r = startRun(service, { acp: true, command: acpAgentCommand() });
  assert.equal(await r.exit, 130);
  assert.deepEqual(service.stored.map((f) => [f.streamEventType, f.data]), [
    ["interrupted", { reason: "changed my mind" }],
  ]);
});
