/**
 * ACP agents end to end (issue 17, PROTOCOL.md section 14): the real wrapper CLI with `--acp`
 * runs the scripted ACP agent (demo/acp_agent.ts, on the SDK's agent side) against the real
 * service; prompts and permission answers are inputs sent through the REST API.
 */
import assert from "node:assert/strict";
import { AcpEventType, ErrorCode, InputEventType } from "../src/protocol.ts";
import { acpAgentCommand } from "../demo/acp_agent.ts";
import { startChaosProxy } from "./helpers/chaos_proxy.ts";
import {
  createRun,
  type Envelope,
  eventually,
  getExecution,
  type Run,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { seedFrom } from "./helpers/random.ts";
import { startServer, type TestServer } from "./helpers/server.ts";

const MAIN = new URL("../wrapper/main.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

/** Options that keep the wrapper's waits short. */
const FAST = ["--reconnect-base-ms=20", "--reconnect-max-ms=200", "--connect-timeout-ms=3000"];

/** One wrapper process running the scripted ACP agent in its own directory. */
interface AcpRun extends AsyncDisposable {
  run: Run;
  dir: string;
  exit: Promise<number>;
  stderr(): string;
  /** What the agent recorded (`--log`), but the updates it sent. */
  agentLog(): Promise<Record<string, unknown>[]>;
  /** The updates the agent sent, in order. */
  agentUpdates(): Promise<unknown[]>;
}

async function readLog(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

/** Starts `wrapper/main.ts --acp` for `run` (through `ingestUrl` when given). */
async function startAcpWrapper(
  run: Run,
  options: { flags?: string[]; wrapperArgs?: string[]; ingestUrl?: string } = {},
): Promise<AcpRun> {
  const dir = await Deno.makeTempDir({ prefix: "tether-acp-e2e-" });
  const log = `${dir}/agent.log`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "--acp",
      `--ingest-url=${options.ingestUrl ?? run.ingestUrl}`,
      `--token=${run.ingestToken}`,
      ...FAST,
      ...(options.wrapperArgs ?? []),
      "--",
      ...acpAgentCommand("--log", log, ...(options.flags ?? [])),
    ],
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (text) => void (stderr += text) }),
  );
  const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const exit = child.status.then(async (status) => {
    clearTimeout(guard);
    await reading;
    return status.code;
  });
  return {
    run,
    dir,
    exit,
    stderr: () => stderr,
    agentLog: async () => (await readLog(log)).filter((e) => e.event !== "update"),
    agentUpdates: async () =>
      (await readLog(log)).filter((e) => e.event === "update").map((e) => e.update),
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // It has exited.
      }
      await exit;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Sends one input; returns its inputId. */
async function sendInput(server: TestServer, run: Run, body: unknown): Promise<number> {
  const res = await server.call<{ inputId: number }>(
    `/v1/sessions/${run.sessionId}/executions/${run.executionId}/input`,
    { method: "POST", json: body },
  );
  assert.equal(res.status, 202, JSON.stringify(res));
  return res.body.inputId;
}

/** Waits until the session holds an event matching `match`; returns the events. */
async function waitForEvent(
  server: TestServer,
  run: Run,
  match: (e: Envelope) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<Envelope[]> {
  let events: Envelope[] = [];
  await eventually(
    async () => {
      events = await storedEvents(server, run.sessionId);
      return events.some(match);
    },
    what,
    timeoutMs,
  );
  return events;
}

const ofType = (events: Envelope[], type: string) =>
  events.filter((e) => e.streamEventType === type);
const isType = (type: string) => (e: Envelope) => e.streamEventType === type;
/** Events that are not the agent's: an input, its confirmation, a reconnect's marker. */
const BOOKKEEPING: ReadonlySet<string> = new Set([
  InputEventType.input,
  InputEventType.delivered,
  "wrapper_resumed",
]);
const delivered = (events: Envelope[]) =>
  ofType(events, "input_delivered").map((e) => (e.data as { inputId: number }).inputId);

/**
 * The run of the issue: two prompts sent before the wrapper connects, the first turn's
 * permission request answered from the API, `endOfInput` after both turns. Checks every
 * promise of section 14 on the stored log and on what the agent itself saw.
 */
async function twoTurnRun(
  server: TestServer,
  sessionId: string,
  options: {
    flags?: string[];
    ingestUrl?: (run: Run) => string;
    beforeAnswer?: () => Promise<void>;
    beforeEnd?: () => Promise<void>;
  } = {},
): Promise<void> {
  const run = await createRun(server, sessionId);
  assert.equal(await sendInput(server, run, { data: "Please edit notes.md" }), 1);
  assert.equal(
    await sendInput(server, run, { data: { prompt: [{ type: "text", text: "Sum it up" }] } }),
    2,
  );
  await using wrapper = await startAcpWrapper(run, {
    flags: options.flags,
    ingestUrl: options.ingestUrl?.(run),
  });
  const asked = await waitForEvent(server, run, isType(AcpEventType.permissionRequest), "ask");
  const [request] = ofType(asked, AcpEventType.permissionRequest);
  assert.equal(request.executionId, run.executionId);
  assert.deepEqual(
    (request.data as { options: { optionId: string }[] }).options.map((o) => o.optionId),
    ["allow", "reject"],
  );
  await options.beforeAnswer?.();
  const answer = { permission: { requestId: 1, optionId: "allow" } };
  assert.equal(await sendInput(server, run, { data: answer }), 3);
  await waitForEvent(
    server,
    run,
    (e) => e.streamEventType === AcpEventType.turn && (e.data as { inputId: number }).inputId === 2,
    "the second turn's end",
    30_000,
  );
  await options.beforeEnd?.();
  assert.equal(await sendInput(server, run, { endOfInput: true }), 4);
  assert.equal(await wrapper.exit, 0, wrapper.stderr());

  const events = await storedEvents(server, run.sessionId);
  const exec = await getExecution(server, run);
  assert.equal(exec.status, "completed", JSON.stringify(exec));
  assert.equal(exec.deliveredInputId, 4);
  // Every update once and in order, exactly as the agent sent it.
  const updates = ofType(events, AcpEventType.update).map((e) => e.data);
  assert.deepEqual(updates, await wrapper.agentUpdates());
  assert.ok(updates.length >= 14, `${updates.length} updates`);
  assert.deepEqual(ofType(events, AcpEventType.turn).map((e) => e.data), [
    { inputId: 1, stopReason: "end_turn" },
    { inputId: 2, stopReason: "end_turn" },
  ]);
  assert.deepEqual(ofType(events, AcpEventType.permissionRequest).length, 1);
  // Inputs, confirmations and a reconnect's marker may fall between any two agent frames.
  const agentEvents = events.filter((e) => !BOOKKEEPING.has(e.streamEventType));
  const types = agentEvents.map((e) => e.streamEventType);
  const lastTurn = types.lastIndexOf(AcpEventType.turn);
  assert.equal(types.lastIndexOf(AcpEventType.update), lastTurn - 1, "the turn ends last");
  assert.deepEqual(
    agentEvents.slice(lastTurn + 1).map((e) => [e.streamEventType, e.data]),
    [["complete", { exitCode: 0 }], ["execution_status", {
      status: "completed",
      previousStatus: "running",
      active: false,
    }]],
  );
  assert.deepEqual([...new Set(delivered(events))], delivered(events), "each confirmed once");
  assert.equal(Math.max(...delivered(events)), 4);
  // What reached the agent: each prompt once, in order; the answer once.
  const log = await wrapper.agentLog();
  assert.deepEqual(log.filter((e) => e.event === "prompt").map((e) => e.text), [
    "Please edit notes.md",
    "Sum it up",
  ]);
  const answers = log.filter((e) => e.event === "permission").map((e) => e.outcome);
  assert.deepEqual(answers, [{ outcome: "selected", optionId: "allow" }]);
  assert.equal(await Deno.readTextFile(`${wrapper.dir}/notes.md`), "Edited in turn 1.\n");
}

Deno.test({
  name: "acp e2e: two prompts queued before the wrapper, one permission answered, completed",
  async fn() {
    const server = await startServer();
    try {
      await twoTurnRun(server, "acp-e2e");
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "acp e2e: through a cutting proxy (≥ 30 cuts) nothing is sent twice, lost or duplicated",
  async fn() {
    const seed = seedFrom("TETHER_ACP_CHAOS_SEED");
    const server = await startServer({ config: { disconnectGraceMs: 10_000 } });
    const proxy = startChaosProxy({
      targetPort: Number(new URL(server.url).port),
      seed,
      cutAfterMs: [40, 160],
      delayChance: 0.02,
      delayMs: [1, 30],
    });
    const cuts = (n: number) => () =>
      eventually(() => proxy.stats.scheduledCuts >= n, `${n} cuts`, 30_000);
    try {
      await twoTurnRun(server, "acp-chaos", {
        flags: ["--chunks", "30", "--delay-ms", "10"],
        ingestUrl: (run) => proxy.via(run.ingestUrl),
        // The answer and the end travel while connections keep being cut.
        beforeAnswer: cuts(15),
        beforeEnd: cuts(30),
      });
      console.log(`acp chaos: seed ${seed}, ${proxy.stats.scheduledCuts} cuts`);
    } catch (error) {
      throw new Error(`acp chaos failed: seed ${seed} (replay: TETHER_ACP_CHAOS_SEED=${seed})`, {
        cause: error,
      });
    } finally {
      await proxy.close();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "acp e2e: a permission answer sent while a later prompt waits for its turn is given at once",
  async fn() {
    const server = await startServer();
    try {
      const run = await createRun(server, "acp-answer");
      await using wrapper = await startAcpWrapper(run);
      await sendInput(server, run, { data: "edit please" });
      await waitForEvent(server, run, isType(AcpEventType.permissionRequest), "ask");
      await sendInput(server, run, { data: "a prompt that waits for its turn" });
      const taken = await waitForEvent(server, run, (e) => delivered([e]).includes(2), "taken");
      assert.equal(ofType(taken, AcpEventType.turn).length, 0, "turn 1 still waits");
      await sendInput(server, run, { data: { permission: { requestId: 1, optionId: "reject" } } });
      const events = await waitForEvent(
        server,
        run,
        (e) => e.streamEventType === AcpEventType.turn,
        "turn 1 ends once answered",
      );
      const types = events.map((e) => e.streamEventType);
      const turnEnd = types.indexOf(AcpEventType.turn);
      const answerTaken = events.findIndex((e) => delivered([e]).includes(3));
      assert.ok(answerTaken >= 0 && answerTaken < turnEnd, "the answer is confirmed first");
      const log = await wrapper.agentLog();
      assert.deepEqual(log.filter((e) => e.event === "permission").map((e) => e.outcome), [{
        outcome: "selected",
        optionId: "reject",
      }]);
    } finally {
      await server.close();
    }
  },
});

/** Interrupts the run once its permission request is stored; returns ms until it ended. */
async function interruptAtPermission(server: TestServer, run: Run): Promise<number> {
  await waitForEvent(server, run, isType(AcpEventType.permissionRequest), "ask");
  const t0 = performance.now();
  const res = await server.call(
    `/v1/sessions/${run.sessionId}/executions/${run.executionId}/interrupt`,
    { method: "POST", json: { reason: "stop it" } },
  );
  assert.equal(res.status, 202);
  await waitForEvent(server, run, isType("interrupted"), "interrupted");
  return performance.now() - t0;
}

Deno.test({
  name: "acp e2e: kill during a turn cancels it and answers the open request cancelled",
  async fn() {
    const server = await startServer();
    try {
      const run = await createRun(server, "acp-kill");
      await sendInput(server, run, { data: "edit" });
      await sendInput(server, run, { data: "never sent" });
      await using wrapper = await startAcpWrapper(run);
      await interruptAtPermission(server, run);
      assert.equal(await wrapper.exit, 130, wrapper.stderr());
      const events = await storedEvents(server, run.sessionId);
      assert.deepEqual(ofType(events, AcpEventType.turn).map((e) => e.data), [
        { inputId: 1, stopReason: "cancelled" },
      ]);
      assert.deepEqual(ofType(events, "interrupted").map((e) => e.data), [{ reason: "stop it" }]);
      assert.equal((await getExecution(server, run)).status, "interrupted");
      const log = await wrapper.agentLog();
      assert.ok(log.some((e) => e.event === "cancel"), "session/cancel reached the agent");
      assert.deepEqual(log.filter((e) => e.event === "permission").map((e) => e.outcome), [{
        outcome: "cancelled",
      }]);
      assert.equal(log.filter((e) => e.event === "prompt").length, 1);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "acp e2e: an agent that ignores the cancel is signalled after --kill-grace-ms",
  async fn() {
    const server = await startServer();
    try {
      const run = await createRun(server, "acp-stubborn");
      await sendInput(server, run, { data: "edit" });
      await using wrapper = await startAcpWrapper(run, {
        flags: ["--ignore-cancel"],
        wrapperArgs: ["--kill-grace-ms=600"],
      });
      const ms = await interruptAtPermission(server, run);
      assert.equal(await wrapper.exit, 130, wrapper.stderr());
      assert.ok(ms >= 600, `ended ${Math.round(ms)} ms after the interrupt`);
      const log = (await wrapper.agentLog()).map((e) => e.event);
      assert.ok(log.includes("cancel"), log.join());
      assert.equal(log.at(-1), "SIGTERM");
      assert.equal((await getExecution(server, run)).status, "interrupted");
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "acp e2e: an agent that fails initialize or exits at once fails the run",
  async fn() {
    const server = await startServer();
    try {
      for (const flag of ["--fail-initialize", "--exit-at-once"]) {
        const run = await createRun(server, `acp-broken${flag}`);
        await sendInput(server, run, { data: "hello" });
        await using wrapper = await startAcpWrapper(run, { flags: [flag] });
        assert.equal(await wrapper.exit, 1, wrapper.stderr());
        const exec = await getExecution(server, run);
        assert.equal(exec.status, "failed", JSON.stringify(exec));
        const errors = ofType(await storedEvents(server, run.sessionId), "error");
        assert.equal(errors.length, 1, flag);
        const data = errors[0].data as { code: string; fatal: boolean; error: string };
        assert.equal(data.code, ErrorCode.agentProtocolError, flag);
        assert.equal(data.fatal, true);
        assert.equal(exec.error, data.error);
      }
    } finally {
      await server.close();
    }
  },
});

Deno.test("acp e2e: --acp with --input, --sse or --done-event is a usage error (64)", async () => {
  const url = "http://127.0.0.1:9/v1/sessions/s/executions/e/ingest";
  const base = [`--ingest-url=${url}`, "--token=t"];
  const cases: [string[], Record<string, string>, RegExp][] = [
    [[...base, "--acp", "--input", "jsonl", "--", "x"], {}, /--acp.*--input|--input.*--acp/],
    [[...base, "--acp", "--input=none", "--", "x"], {}, /--input/],
    [[...base, "--acp", "--sse", "http://127.0.0.1:9/e", "--", "x"], {}, /--sse/],
    [[...base, "--acp", "--done-event", "idle", "--", "x"], {}, /--done-event/],
    [[...base, "--input", "text", "--", "x"], { TETHER_WRAPPER_ACP: "1" }, /--input/],
    [[...base, "--", "x"], { TETHER_WRAPPER_ACP: "1", TETHER_WRAPPER_SSE: "http://h/e" }, /--sse/],
    [[...base, "--acp=maybe", "--", "x"], {}, /--acp/],
    [[...base, "--", "x"], { TETHER_WRAPPER_ACP: "yes please" }, /TETHER_WRAPPER_ACP/],
    [[...base, "--acp"], {}, /agent command/],
  ];
  for (const [args, env, message] of cases) {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args],
      env: { TETHER_INGEST_URL: "", TETHER_INGEST_TOKEN: "", ...env },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stderr);
    assert.equal(code, 64, `${args.join(" ")} ${JSON.stringify(env)}: ${text}`);
    assert.match(text, message, text);
  }
});

Deno.test("acp e2e: `deno task demo --acp` runs the scripted ACP agent to completion", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "demo/main.ts", "--acp", "--duration-ms", "1000", "--exit", "--port", "0"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, text);
  assert.match(text, /"optionId":"allow"/);
  assert.match(text, /The run ended: completed\./);
});
