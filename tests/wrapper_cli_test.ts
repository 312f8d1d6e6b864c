/**
 * The wrapper CLI against the real service: `deno run -A wrapper/main.ts` as a child
 * process streaming into a test instance (completion, REST interrupt, deletion, a wrong
 * token, a pending interrupt's kill after `hello`). The wrapper's own probes against the
 * fake service are in `wrapper/contract_test.ts`.
 */
import assert from "node:assert/strict";
import {
  agent,
  type Cli,
  eventually,
  FAST_CLI_OPTIONS,
  spawnCli,
  startSseServer,
} from "../wrapper/test_util.ts";
import { MAX_JSON_DEPTH } from "../src/json_depth.ts";
import {
  connectRun,
  createRun,
  getExecution,
  type Run,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";

/** The CLI for a run of the real service; `options` go before the `--`. */
function wrapperFor(
  run: Run,
  command: string[],
  token = run.ingestToken,
  options: string[] = [],
): Cli {
  return spawnCli([
    `--ingest-url=${run.ingestUrl}`,
    `--token=${token}`,
    ...FAST_CLI_OPTIONS,
    ...options,
    "--",
    ...command,
  ]);
}

serverTest(
  "real service: completion, REST interrupt, deletion and a wrong token",
  async (server) => {
    const status = async (run: Run) => (await getExecution(server, run)).status;

    const done = await createRun(server, "cli-done");
    const completing = wrapperFor(done, agent('out:{"type":"a"}', "out:text", "err:oops"));
    assert.equal(await completing.exit, 0, completing.stderr());
    assert.equal(await status(done), "completed");
    const types = (await storedEvents(server, "cli-done")).map((e) => e.streamEventType);
    assert.deepEqual(types.filter((t) => t !== "output" && t !== "execution_status"), [
      "agent",
      "complete",
    ]);
    assert.equal(types.filter((t) => t === "output").length, 2);

    const stopped = await createRun(server, "cli-interrupt");
    const interrupted = wrapperFor(stopped, agent("trap:0", "out:ready", "hang"));
    await eventually(async () => (await status(stopped)) === "running", "running");
    const res = await server.call(
      `/v1/sessions/${stopped.sessionId}/executions/${stopped.executionId}/interrupt`,
      { method: "POST", json: { reason: "stop it" } },
    );
    assert.equal(res.status, 202);
    assert.equal(await interrupted.exit, 130, interrupted.stderr());
    const execution = await getExecution(server, stopped);
    assert.equal(execution.status, "interrupted");
    assert.equal(execution.error, "stop it");

    const deleted = await createRun(server, "cli-delete");
    const orphan = wrapperFor(deleted, agent("out:ready", "hang"));
    await eventually(async () => (await status(deleted)) === "running", "running");
    assert.equal((await server.api("/v1/sessions/cli-delete", { method: "DELETE" })).status, 204);
    assert.equal(await orphan.exit, 1, orphan.stderr());

    const foreign = await createRun(server, "cli-token");
    const refused = wrapperFor(foreign, agent("out:never"), "not-a-token");
    assert.equal(await refused.exit, 4, refused.stderr());
    assert.doesNotMatch(refused.stderr(), /agent started/);
    assert.equal(await status(foreign), "pending");
  },
);

serverTest(
  "real service: a pending interrupt's kill after hello; the agent never starts",
  async (server) => {
    const run = await createRun(server, "cli-pending-kill");
    // A first wrapper takes the kill and disconnects without answering it.
    const first = await connectRun(run);
    await first.next((m) => m.type === "hello");
    const res = await server.call(
      `/v1/sessions/${run.sessionId}/executions/${run.executionId}/interrupt`,
      { method: "POST", json: { reason: "asked earlier" } },
    );
    assert.equal(res.status, 202);
    await first.next((m) => m.type === "kill");
    await first.close(4100, "gone");
    const cli = wrapperFor(run, agent("out:started", "hang"));
    assert.equal(await cli.exit, 130, cli.stderr());
    assert.doesNotMatch(cli.stderr(), /agent started/);
    const execution = await getExecution(server, run);
    assert.equal(execution.status, "interrupted");
    assert.equal(execution.error, "asked earlier");
    const events = await storedEvents(server, run.sessionId);
    assert.deepEqual(events.filter((e) => e.streamEventType === "output"), []);
  },
);

/** A JSON object text nested `depth` levels: `{"a":{"a":…{}}}`. */
const nested = (depth: number) => '{"a":'.repeat(depth - 1) + "{}" + "}".repeat(depth - 1);

serverTest(
  "real service: a stdout line or SSE event nested deeper than 64 levels is stored as text",
  async (server) => {
    const deepest = nested(MAX_JSON_DEPTH);
    const tooDeep = nested(MAX_JSON_DEPTH + 1);
    await using sse = startSseServer([
      `event: step\ndata: ${deepest}\n\nevent: step\ndata: ${tooDeep}\n\n…`,
    ]);
    const run = await createRun(server, "cli-deep");
    const cli = wrapperFor(
      run,
      agent(`out:${deepest}`, `out:${tooDeep}`, "sleep:500", "out:done"),
      run.ingestToken,
      ["--sse", sse.url],
    );
    assert.equal(await cli.exit, 0, cli.stderr());
    assert.doesNotMatch(cli.stderr(), /INVALID_FRAME/);
    const events = await storedEvents(server, "cli-deep");
    const of = (...types: string[]) =>
      events.filter((e) => types.includes(e.streamEventType)).map((e) => [
        e.streamEventType,
        e.data,
      ]);
    // The agent's lines and the SSE events interleave in no fixed order.
    assert.deepEqual(of("agent", "output", "complete"), [
      ["agent", JSON.parse(deepest)],
      ["output", { stream: "stdout", text: tooDeep }],
      ["output", { stream: "stdout", text: "done" }],
      ["complete", { exitCode: 0 }],
    ]);
    assert.deepEqual(of("kilocode"), [
      ["kilocode", { ...JSON.parse(deepest), event: "step" }],
      ["kilocode", { raw: tooDeep, event: "step" }],
    ]);
  },
);

const DEEP_ACP_AGENT = new URL("../wrapper/testdata/deep_acp_agent.ts", import.meta.url).pathname;

serverTest(
  "real service: --acp, an update and a permission request nested too deep are still stored",
  async (server) => {
    const run = await createRun(server, "cli-deep-acp");
    const input = async (body: unknown) => {
      const path = `/v1/sessions/${run.sessionId}/executions/${run.executionId}/input`;
      const res = await server.call(path, { method: "POST", json: body });
      assert.equal(res.status, 202, JSON.stringify(res.body));
    };
    const stored = async (type: string) =>
      (await storedEvents(server, run.sessionId)).filter((e) => e.streamEventType === type)
        .map((e) => e.data as Record<string, unknown>);
    await input({ data: "go" });
    const cli = spawnCli([
      `--ingest-url=${run.ingestUrl}`,
      `--token=${run.ingestToken}`,
      ...FAST_CLI_OPTIONS,
      "--acp",
      "--",
      Deno.execPath(),
      "run",
      "--no-config",
      DEEP_ACP_AGENT,
      String(MAX_JSON_DEPTH + 6),
    ]);
    await eventually(async () => (await stored("permission_request")).length > 0, "asked", 30_000);
    await input({ data: { permission: { requestId: 1, optionId: "allow" } } });
    await eventually(async () => (await stored("acp_turn")).length > 0, "the turn ended", 30_000);
    await input({ endOfInput: true });
    assert.equal(await cli.exit, 0, cli.stderr());
    assert.doesNotMatch(cli.stderr(), /INVALID_FRAME/);
    const [update] = await stored("acp");
    assert.deepEqual({ ...update, rawInput: undefined, bytes: undefined }, {
      sessionUpdate: "tool_call",
      status: "pending",
      toolCallId: "deep-1",
      title: "Deep input",
      kind: "other",
      rawInput: undefined,
      truncated: true,
      bytes: undefined,
    });
    const [request] = await stored("permission_request");
    assert.equal(request.requestId, 1);
    assert.deepEqual(request.options, [{ optionId: "allow", name: "Allow", kind: "allow_once" }]);
    const toolCall = request.toolCall as Record<string, unknown>;
    assert.equal(toolCall.toolCallId, "deep-1");
    assert.equal(toolCall.truncated, true);
    assert.deepEqual(await stored("acp_turn"), [{ inputId: 1, stopReason: "end_turn" }]);
  },
);
