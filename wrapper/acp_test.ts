/**
 * The ACP client against the scripted ACP agent (demo/acp_agent.ts) as a real child
 * process: handshake, turns in order, permissions, endings, and a broken agent.
 */
import assert from "node:assert/strict";
import { AcpClient, type AcpInput } from "./acp.ts";
import type { OutgoingFrame } from "./outbox.ts";
import { acpAgentCommand } from "../demo/acp_agent.ts";
import { eventually } from "./test_util.ts";

/** Generous: on a loaded machine starting the agent alone can take seconds. */
const WAIT_MS = 30_000;

const waitFor = (check: () => boolean, what: string) => eventually(check, what, WAIT_MS);

/** An {@link AcpClient} with a host that records frames and confirmations. */
interface Harness extends AsyncDisposable {
  acp: AcpClient;
  frames: OutgoingFrame[];
  confirmed: number[];
  /** Every change of {@link AcpClient.waitingForUser}, in order. */
  waiting: boolean[];
  /** The frames of one type, their data. */
  data(type: string): Record<string, unknown>[];
  /** What the agent recorded in its `--log` file, but the updates it sent. */
  agentLog(): Promise<Record<string, unknown>[]>;
  /** The updates the agent sent, as it recorded them. */
  agentUpdates(): Promise<unknown[]>;
  dir: string;
}

async function harness(flags: string[], options: { killGraceMs?: number } = {}): Promise<Harness> {
  const dir = await Deno.makeTempDir({ prefix: "tether-acp-" });
  const log = `${dir}/agent.log`;
  const frames: OutgoingFrame[] = [];
  const confirmed: number[] = [];
  const waiting: boolean[] = [];
  const acp = new AcpClient({
    command: acpAgentCommand("--log", log, ...flags),
    killGraceMs: options.killGraceMs ?? 2000,
    cwd: dir,
    host: {
      send: (frame) => void frames.push(frame),
      confirm: (inputId) => void confirmed.push(inputId),
      maxFrameBytes: () => 524_288,
      log: () => {},
      waitingForUser: (w) => void waiting.push(w),
    },
  });
  return {
    acp,
    frames,
    confirmed,
    waiting,
    dir,
    data: (type) =>
      frames.filter((f) => f.streamEventType === type).map((f) => f.data as Record<string, never>),
    agentLog: async () => (await readLog(log)).filter((e) => e.event !== "update"),
    agentUpdates: async () =>
      (await readLog(log)).filter((e) => e.event === "update").map((e) => e.update),
    async [Symbol.asyncDispose]() {
      acp.stop({ signal: "SIGKILL", graceMs: 0 });
      await acp.exited;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function readLog(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

const input = (inputId: number, data?: unknown, endOfInput?: boolean): AcpInput => ({
  inputId,
  ...(data === undefined ? {} : { data }),
  ...(endOfInput ? { endOfInput } : {}),
});

const types = (frames: OutgoingFrame[]) => frames.map((f) => f.streamEventType);

Deno.test("acp: two prompts, one permission, two turns, then endOfInput ends the agent", async () => {
  await using h = await harness(["--noise"]);
  h.acp.take(input(1, "please edit the notes"));
  h.acp.take(input(2, { prompt: [{ type: "text", text: "and say hi" }] }));
  assert.deepEqual(h.confirmed, [], "nothing is confirmed before the agent starts");
  h.acp.start();
  assert.deepEqual(h.confirmed, [2], "what was taken before is confirmed once it starts");
  await waitFor(() => h.data("permission_request").length === 1, "the permission request");
  const [request] = h.data("permission_request");
  assert.equal(request.requestId, 1);
  assert.deepEqual((request.options as { optionId: string }[]).map((o) => o.optionId), [
    "allow",
    "reject",
  ]);
  h.acp.take(input(3, { permission: { requestId: 1, optionId: "allow" } }, true));
  assert.deepEqual(h.confirmed, [2], "endOfInput waits for the last turn");
  const exit = await h.acp.exited;
  assert.deepEqual(h.confirmed, [2, 3]);
  assert.equal(exit.code, 0, "the agent exits by itself once its stdin is closed");
  assert.deepEqual(h.acp.endFrame(exit), { streamEventType: "complete", data: { exitCode: 0 } });

  assert.deepEqual(h.data("acp_turn"), [
    { inputId: 1, stopReason: "end_turn" },
    { inputId: 2, stopReason: "end_turn" },
  ]);
  const turnEnds = h.frames.flatMap((f, i) => f.streamEventType === "acp_turn" ? [i] : []);
  const updates = h.data("acp");
  assert.deepEqual(updates, await h.agentUpdates(), "every update once, in order, as sent");
  assert.ok(updates.length >= 12, `${updates.length} updates`);
  assert.equal(
    types(h.frames).lastIndexOf("acp"),
    turnEnds[1] - 1,
    "turn 2 ends after its updates",
  );
  const edit = updates.find((u) => u.sessionUpdate === "tool_call_update") as {
    status: string;
    content: { type: string; newText: string }[];
  };
  assert.equal(edit.status, "completed");
  assert.equal(edit.content[0].type, "diff");
  assert.equal(await Deno.readTextFile(`${h.dir}/notes.md`), edit.content[0].newText);
  // The chunks of each turn arrive in order, and none twice.
  const chunks = updates.filter((u) => u.sessionUpdate === "agent_message_chunk")
    .map((u) => (u.content as { text: string }).text);
  assert.deepEqual(chunks, [
    "[turn 1 chunk 1/3] ",
    "[turn 1 chunk 2/3] ",
    "[turn 1 chunk 3/3] ",
    "Turn 1 is done.",
    "[turn 2 chunk 1/3] ",
    "[turn 2 chunk 2/3] ",
    "[turn 2 chunk 3/3] ",
    "Turn 2 is done.",
  ]);
  // What is not JSON-RPC stays visible as output.
  assert.deepEqual(h.data("output"), [
    { stream: "stdout", text: "fake ACP agent: not a JSON-RPC line" },
    { stream: "stderr", text: "fake ACP agent: starting" },
  ]);
  const log = await h.agentLog();
  assert.deepEqual(log.map((e) => e.event), [
    "initialize",
    "session/new",
    "prompt",
    "permission",
    "prompt",
  ]);
  const capabilities = log[0].clientCapabilities as Record<string, unknown>;
  assert.deepEqual(capabilities.fs, { readTextFile: false, writeTextFile: false });
  assert.equal(capabilities.terminal, false);
  assert.deepEqual(log[1], { event: "session/new", cwd: h.dir, mcpServers: [] });
  assert.deepEqual(log[3].outcome, { outcome: "selected", optionId: "allow" });
});

Deno.test("acp: a permission answer is given at once while a later prompt waits for its turn", async () => {
  await using h = await harness([]);
  h.acp.start();
  h.acp.take(input(1, "edit it"));
  h.acp.take(input(2, "then this"));
  await waitFor(() => h.data("permission_request").length === 1, "the permission request");
  assert.deepEqual(h.confirmed, [1, 2], "the waiting prompt is taken (and confirmed) at once");
  h.acp.take(input(3, { permission: { requestId: 1, optionId: "reject" } }));
  assert.deepEqual(h.confirmed, [1, 2, 3]);
  await waitFor(() => h.data("acp_turn").length === 2, "both turns");
  const refused = h.data("acp").find((u) => u.sessionUpdate === "tool_call_update");
  assert.equal(refused?.status, "failed");
  assert.deepEqual((await h.agentLog()).filter((e) => e.event === "permission").length, 1);
});

Deno.test("acp: other inputs are reported, and answers to no open request only confirmed", async () => {
  await using h = await harness([]);
  h.acp.start();
  h.acp.take(input(1, { permission: { requestId: 7, optionId: "allow" } }));
  h.acp.take(input(2, 42));
  h.acp.take(input(3, "edit"));
  await waitFor(() => h.data("permission_request").length === 1, "the permission request");
  h.acp.take(input(4, { permission: { requestId: 1, optionId: "maybe" } }));
  h.acp.take(input(5, { permission: { requestId: 1, optionId: "allow" } }));
  h.acp.take(input(6, { permission: { requestId: 1, optionId: "reject" } }));
  await waitFor(() => h.data("acp_turn").length === 1, "the turn");
  assert.deepEqual(h.confirmed, [1, 2, 3, 4, 5, 6]);
  const ignored = h.data("acp_input_ignored");
  assert.deepEqual(ignored.map((d) => [d.inputId, d.data]), [[2, 42], [4, {
    permission: { requestId: 1, optionId: "maybe" },
  }]]);
  assert.match(String(ignored[1].reason), /no option "maybe"/);
  const answers = (await h.agentLog()).filter((e) => e.event === "permission");
  assert.deepEqual(answers.map((e) => e.outcome), [{ outcome: "selected", optionId: "allow" }]);
});

Deno.test("acp: stop during a turn cancels it, answers the open request cancelled, then signals", async () => {
  await using h = await harness([]);
  h.acp.start();
  h.acp.take(input(1, "edit"));
  h.acp.take(input(2, "never sent"));
  await waitFor(() => h.data("permission_request").length === 1, "the permission request");
  h.acp.stop({ graceMs: 2000 });
  const exit = await h.acp.exited;
  // Its stdin is closed and SIGTERM sent together: it ends on whichever it notices first.
  assert.ok([0, 143].includes(exit.code), `exit ${exit.code}`);
  assert.deepEqual(h.data("acp_turn"), [{ inputId: 1, stopReason: "cancelled" }]);
  const log = await h.agentLog();
  // session/cancel and the cancelled answer travel independently: either may arrive first.
  assert.deepEqual(log.map((e) => e.event).slice(2, 5).sort(), ["cancel", "permission", "prompt"]);
  assert.deepEqual(log.find((e) => e.event === "permission")?.outcome, { outcome: "cancelled" });
  assert.equal(h.acp.endFrame(exit), undefined, "the run's kill decides the terminal frame");
  h.acp.take(input(3, "too late"));
  assert.deepEqual(h.confirmed, [1, 2], "inputs after the stop are left undelivered");
});

Deno.test("acp: an agent that ignores the cancel is signalled after the kill grace", async () => {
  await using h = await harness(["--ignore-cancel"], { killGraceMs: 300 });
  h.acp.start();
  h.acp.take(input(1, "edit"));
  await waitFor(() => h.data("permission_request").length === 1, "the permission request");
  const t0 = performance.now();
  h.acp.stop({ graceMs: 300 });
  const exit = await h.acp.exited;
  const elapsed = performance.now() - t0;
  assert.equal(exit.code, 143, "the agent exits on its SIGTERM");
  assert.ok(elapsed >= 290, `signalled after ${elapsed} ms`);
  assert.deepEqual(h.data("acp_turn"), [], "the turn never ended");
  const log = (await h.agentLog()).map((e) => e.event);
  assert.ok(log.includes("cancel"), log.join());
  assert.equal(log.at(-1), "SIGTERM");
});

Deno.test("acp: a failed initialize or an agent that exits at once is an AGENT_PROTOCOL_ERROR", async () => {
  for (
    const [flag, error] of [
      ["--fail-initialize", /^initialize failed: .*refusing to start/],
      ["--exit-at-once", /^agent exited before answering initialize$/],
    ] as const
  ) {
    await using h = await harness([flag]);
    h.acp.take(input(1, "hello"));
    h.acp.start();
    const frame = h.acp.endFrame(await h.acp.exited);
    const data = frame?.data as { fatal: boolean; code: string; error: string };
    assert.equal(frame?.streamEventType, "error");
    assert.equal(data.fatal, true);
    assert.equal(data.code, "AGENT_PROTOCOL_ERROR");
    assert.match(data.error, error);
    assert.deepEqual(h.data("acp_turn"), [], "no prompt was sent");
  }
});

Deno.test("acp: waiting for the user (no prompt, or an open request) is reported", async () => {
  await using h = await harness([]);
  h.acp.start();
  await waitFor(() => h.waiting.length === 1, "ready and waiting for a prompt");
  assert.equal(h.acp.waitingForUser, true);
  h.acp.take(input(1, "edit"));
  await waitFor(() => h.data("permission_request").length === 1, "the permission request");
  await waitFor(() => h.waiting.length === 3, "waiting for the answer");
  h.acp.take(input(2, { permission: { requestId: 1, optionId: "allow" } }));
  await waitFor(() => h.data("acp_turn").length === 1, "the turn");
  await waitFor(() => h.waiting.length === 5, "waiting for the next prompt");
  h.acp.take(input(3, undefined, true));
  await h.acp.exited;
  assert.deepEqual(h.waiting, [true, false, true, false, true, false]);
});

Deno.test("acp: a prompt the agent answers with an error ends its turn; the next one runs", async () => {
  await using h = await harness([]);
  h.acp.start();
  h.acp.take(input(1, "please fail"));
  h.acp.take(input(2, "then this"));
  await waitFor(() => h.data("acp_turn").length === 2, "both turns");
  const [failed, next] = h.data("acp_turn");
  assert.equal(failed.inputId, 1);
  assert.equal(failed.stopReason, "error");
  assert.match(String(failed.error), /asked to fail/);
  assert.deepEqual(next, { inputId: 2, stopReason: "end_turn" });
});

Deno.test("acp: an agent that exits in the middle of a turn ends the run by its exit, endOfInput or not", async () => {
  // Section 14: an agent that exits on its own before the end of input ends the run as in
  // section 9.2 (exit 5: AGENT_EXIT), not as a completed end of input.
  await using h = await harness([]);
  h.acp.take(input(1, "crash now"));
  h.acp.take(input(2, undefined, true));
  h.acp.start();
  const exit = await h.acp.exited;
  assert.equal(exit.code, 5);
  assert.equal(h.acp.endFrame(exit), undefined, "no complete: the exit decides (AGENT_EXIT)");
  assert.deepEqual(h.confirmed, [1], "the prompt was taken; the endOfInput never reached it");
});

Deno.test("acp: after endOfInput a permission request is answered cancelled (no answer can come)", async () => {
  // Section 12 refuses inputs after endOfInput: a request left open would wait forever.
  await using h = await harness([]);
  h.acp.take(input(1, "edit notes"));
  h.acp.take(input(2, undefined, true));
  h.acp.start();
  const exit = await h.acp.exited;
  assert.deepEqual(h.acp.endFrame(exit)?.data, { exitCode: 0 });
  assert.deepEqual(h.data("permission_request"), []);
  assert.deepEqual(h.data("acp_turn").map((d) => d.stopReason), ["cancelled"]);
  assert.deepEqual(h.confirmed, [1, 2]);
});
