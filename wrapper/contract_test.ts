/**
 * Black-box contract probes of the wrapper CLI (PROTOCOL.md section 9 and its side of
 * section 5): `deno run -A wrapper/main.ts [options] -- <agent>` as a real child process
 * against the fake ingest service on an ephemeral port, with short timers passed as options.
 */
import assert from "node:assert/strict";
import {
  dialNumbers,
  type FakeService,
  startFakeService,
  type StoredFrame,
} from "./testdata/fake_service.ts";
import {
  agent,
  type Cli,
  FAST_CLI_OPTIONS as FAST,
  spawnCli as spawn,
  startSseServer,
} from "./test_util.ts";

/** The CLI against `service` with fast timers, `options`, then `-- command`. */
function wrapper(
  service: FakeService,
  options: string[],
  command: string[] = agent("exit:0"),
  env: Record<string, string> = {},
): Cli {
  return spawn(
    [`--ingest-url=${service.url}`, "--token=tok-1", ...FAST, ...options, "--", ...command],
    env,
  );
}

const types = (frames: StoredFrame[]) => frames.map((f) => f.streamEventType);
const pairs = (frames: StoredFrame[]) => frames.map((f) => [f.streamEventType, f.data]);

Deno.test("usage: every bad or missing option exits 64 with a message naming it", async () => {
  const url = "http://127.0.0.1:9/v1/sessions/s/executions/e/ingest";
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--token=t", "--", "x"], {}, /--ingest-url/],
    [[`--ingest-url=${url}`, "--", "x"], {}, /--token/],
    [["--ingest-url", "ftp://h/x", "--token", "t", "--", "x"], {}, /--ingest-url/],
    [[`--ingest-url=${url}`, "--token=t", "--"], {}, /agent command/],
    [[`--ingest-url=${url}`, "--token=t", "--no-such", "1", "--", "x"], {}, /--no-such/],
    [[`--ingest-url=${url}`, "--token=t", "--sse", "ws://h/e", "--", "x"], {}, /--sse/],
    [[`--ingest-url=${url}`, "--token=t", "--kill-grace-ms"], {}, /--kill-grace-ms/],
    ...[
      "heartbeat-ms",
      "silence-timeout-ms",
      "reconnect-base-ms",
      "reconnect-max-ms",
      "reconnect-attempts",
      "connect-timeout-ms",
      "buffer-limit",
      "buffer-bytes",
      "kill-grace-ms",
      "max-frame-bytes",
      "idle-timeout-ms",
    ].flatMap((name): [string[], Record<string, string>, RegExp][] => [
      [[`--ingest-url=${url}`, "--token=t", `--${name}=soon`, "--", "x"], {}, new RegExp(name)],
      [[`--ingest-url=${url}`, "--token=t", `--${name}`, "-1", "--", "x"], {}, new RegExp(name)],
      [
        [`--ingest-url=${url}`, "--token=t", "--", "x"],
        { [`TETHER_WRAPPER_${name.toUpperCase().replaceAll("-", "_")}`]: "1.5" },
        new RegExp(`--${name} \\(TETHER_WRAPPER_${name.toUpperCase().replaceAll("-", "_")}\\)`),
      ],
    ]),
  ];
  const results = await Promise.all(cases.map(async ([args, env, message]) => {
    const cli = spawn(args, { TETHER_INGEST_URL: "", TETHER_INGEST_TOKEN: "", ...env });
    return { args, env, message, code: await cli.exit, stderr: cli.stderr() };
  }));
  for (const { args, env, message, code, stderr } of results) {
    const what = `${args.join(" ")} ${JSON.stringify(env)}: ${stderr}`;
    assert.equal(code, 64, what);
    assert.match(stderr, message, what);
  }
});

Deno.test("options: `--name value` and env fallbacks drive the run; http:// becomes ws://", async () => {
  await using service = await startFakeService();
  const cli = spawn(["--token", "tok-2", "--", ...agent(`out:${"x".repeat(3000)}`, "exit:0")], {
    TETHER_INGEST_URL: service.url,
    TETHER_INGEST_TOKEN: "not-this-one",
    TETHER_WRAPPER_MAX_FRAME_BYTES: "1024",
  });
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.equal(service.dials[0].authorization, "Bearer tok-2");
  const [line] = service.storedOfType("output");
  assert.deepEqual({ ...line.data as object, text: undefined }, {
    stream: "stdout",
    text: undefined,
    truncated: true,
    bytes: 3000,
  });
  assert.ok(new TextEncoder().encode(JSON.stringify(line)).length <= 1024);

  await using refused = await startFakeService();
  refused.setDefaultPlan({ kind: "http", status: 503 });
  const gaveUp = spawn(["--", ...agent("out:never")], {
    TETHER_INGEST_URL: refused.url.replace("http://", "ws://"),
    TETHER_INGEST_TOKEN: "t",
    TETHER_WRAPPER_RECONNECT_ATTEMPTS: "3",
    TETHER_WRAPPER_RECONNECT_BASE_MS: "10",
    TETHER_WRAPPER_RECONNECT_MAX_MS: "20",
  });
  assert.equal(await gaveUp.exit, 2);
  assert.equal(refused.dials.length, 3);
  assert.equal(refused.dials[0].authorization, "Bearer t");
});

Deno.test("lines: JSON object → agent, anything else → output; CRLF, U+FFFD, blanks, last line", async () => {
  await using service = await startFakeService();
  const cli = wrapper(
    service,
    [],
    agent(
      'out:{"type":"a","n":1}',
      "out:[1]",
      'out:"str"',
      "out:null",
      'err:{"x":1}',
      // "a\r\n", "\n", "\r\n", "b\xffc\n", "last" without newline
      "hex:610d0a0a0d0a62ff630a6c617374",
    ),
  );
  assert.equal(await cli.exit, 0, cli.stderr());
  const stderrLines = service.stored.filter((f) =>
    (f.data as { stream?: string }).stream === "stderr"
  );
  assert.deepEqual(pairs(stderrLines), [["output", { stream: "stderr", text: '{"x":1}' }]]);
  assert.deepEqual(pairs(service.stored.filter((f) => !stderrLines.includes(f))), [
    ["agent", { type: "a", n: 1 }],
    ["output", { stream: "stdout", text: "[1]" }],
    ["output", { stream: "stdout", text: '"str"' }],
    ["output", { stream: "stdout", text: "null" }],
    ["output", { stream: "stdout", text: "a" }],
    ["output", { stream: "stdout", text: "b\uFFFDc" }],
    ["output", { stream: "stdout", text: "last" }],
    ["complete", { exitCode: 0 }],
  ]);
  service.stored.forEach((frame, i) => {
    assert.equal(frame.seq, i + 1);
    assert.ok(!Number.isNaN(Date.parse(frame.timestamp!)), JSON.stringify(frame));
  });
});

Deno.test("lines: an oversize line keeps whole characters within the smallest frame limit", async () => {
  await using service = await startFakeService({ maxFrameBytes: 1500 });
  const big = "é".repeat(3000);
  const cli = wrapper(
    service,
    ["--max-frame-bytes=4096"],
    agent(`out:${big}`, `out:{"big":"${big}"}`, `err:${big}`),
  );
  assert.equal(await cli.exit, 0, cli.stderr());
  const lines = service.storedOfType("output");
  assert.equal(lines.length, 3);
  for (const line of lines) {
    const { stream, text, truncated, bytes } = line.data as Record<string, unknown>;
    const size = new TextEncoder().encode(JSON.stringify(line)).length;
    assert.ok(size <= 1500 && size > 1300, `frame of ${size} bytes`);
    assert.equal(truncated, true);
    assert.ok(typeof text === "string" && text.length > 0);
    assert.ok(big.startsWith(text) || `{"big":"${big}"}`.startsWith(text), "whole characters");
    assert.equal(bytes, text.startsWith("{") ? 6010 : 6000);
    assert.ok(stream === "stdout" || stream === "stderr");
  }
});

Deno.test("endings: exit n → fatal AGENT_EXIT (exit 1); a foreign signal is an exit too", async () => {
  await using service = await startFakeService();
  const cli = wrapper(service, [], agent("out:hi", "exit:3"));
  assert.equal(await cli.exit, 1);
  assert.deepEqual(pairs(service.stored), [
    ["output", { stream: "stdout", text: "hi" }],
    ["error", { fatal: true, code: "AGENT_EXIT", exitCode: 3, error: "agent exited with code 3" }],
  ]);

  await using killed = await startFakeService();
  const selfKilled = wrapper(killed, [], agent("selfkill"));
  assert.equal(await selfKilled.exit, 1);
  const data = killed.stored.at(-1)!.data as Record<string, unknown>;
  assert.equal(data.fatal, true);
  assert.equal(data.code, "AGENT_EXIT");
  assert.equal(data.error, `agent exited with code ${data.exitCode}`);
  assert.equal(data.exitCode, 137);
});

Deno.test("kill: SIGTERM, last output, interrupted {reason}; default reason; no AGENT_EXIT", async () => {
  await using service = await startFakeService();
  const cli = wrapper(service, [], agent("trap:7", "out:ready", "hang"));
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  service.current!.send({ type: "kill", signal: "SIGTERM", reason: "stop please" });
  assert.equal(await cli.exit, 130);
  assert.deepEqual(pairs(service.stored), [
    ["output", { stream: "stdout", text: "ready" }],
    ["output", { stream: "stdout", text: "got SIGTERM" }],
    ["interrupted", { reason: "stop please" }],
  ]);

  await using stubborn = await startFakeService();
  const ignoring = wrapper(
    stubborn,
    ["--kill-grace-ms", "200"],
    agent("ignore-term", "out:ready", "hang"),
  );
  await stubborn.waitFor(() => stubborn.stored.length === 1, { timeoutMs: 10_000 });
  const killedAt = performance.now();
  stubborn.current!.send({ type: "kill", signal: "SIGTERM" });
  assert.equal(await ignoring.exit, 130);
  assert.ok(performance.now() - killedAt < 3000, "SIGKILL after --kill-grace-ms");
  assert.deepEqual(pairs(stubborn.stored.slice(1)), [["interrupted", {
    reason: "User interrupted",
  }]]);
});

Deno.test("kill right after the first hello: the agent never starts, interrupted at once", async () => {
  const runs = await Promise.all(Array.from({ length: 6 }, async () => {
    const service = await startFakeService();
    service.plan({ kind: "accept", kill: { reason: "changed my mind" } });
    const cli = wrapper(service, [], agent("out:started", "sleep:2000"));
    const code = await cli.exit;
    await service.close();
    return { code, stored: pairs(service.stored), stderr: cli.stderr() };
  }));
  for (const { code, stored, stderr } of runs) {
    assert.equal(code, 130, stderr);
    assert.deepEqual(stored, [["interrupted", { reason: "changed my mind" }]], stderr);
    assert.doesNotMatch(stderr, /agent started/);
  }
});

for (
  const [plan, exit] of [
    [{ kind: "close", code: 4000, reason: "execution completed" }, 0],
    [{ kind: "close", code: 4000, reason: "execution failed" }, 1],
    [{ kind: "close", code: 4000, reason: "execution interrupted" }, 130],
    [{ kind: "close", code: 4401, reason: "unauthorized" }, 4],
    [{ kind: "close", code: 4403, reason: "forbidden" }, 4],
  ] as const
) {
  Deno.test(`first connection closed ${plan.code} ${plan.reason}: exit ${exit}, agent never started`, async () => {
    await using service = await startFakeService();
    service.setDefaultPlan(plan);
    const cli = wrapper(service, [], agent("out:started"));
    assert.equal(await cli.exit, exit);
    assert.equal(service.dials.length, 1, "never reconnects");
    assert.deepEqual(service.received, []);
    assert.doesNotMatch(cli.stderr(), /agent started/);
  });
}

Deno.test("while the agent runs: 4001 → exit 3, give up → exit 2, 4000 → exit by reason", async () => {
  const cases: [(service: FakeService) => void, number][] = [
    [(s) => s.current!.close(4001, "replaced"), 3],
    [(s) => s.current!.close(4403, "forbidden"), 4],
    [(s) => s.current!.close(4000, "execution failed"), 1],
    [(s) => (s.setDefaultPlan({ kind: "http", status: 503 }), s.cut()), 2],
  ];
  await Promise.all(cases.map(async ([end, exit]) => {
    await using service = await startFakeService();
    const cli = wrapper(
      service,
      ["--reconnect-attempts=3", "--kill-grace-ms=300"],
      agent("ignore-term", "out:ready", "hang"),
    );
    await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
    const dials = service.dials.length;
    end(service);
    assert.equal(await cli.exit, exit, cli.stderr());
    if (exit !== 2) assert.equal(service.dials.length, dials, "never reconnects");
    else assert.equal(service.dials.length, dials + 3);
  }));
});

Deno.test("signals: before hello exit 130 with no frame; SIGINT after hello → interrupted", async () => {
  await using silent = await startFakeService();
  silent.setDefaultPlan({ kind: "silent" });
  const early = wrapper(silent, ["--connect-timeout-ms=10000"], agent("out:started"));
  await silent.waitFor(() => silent.connections.length === 1);
  early.child.kill("SIGTERM");
  assert.equal(await early.exit, 130);
  assert.deepEqual(silent.received, []);
  assert.doesNotMatch(early.stderr(), /agent started/);

  await using service = await startFakeService();
  const cli = wrapper(service, [], agent("out:ready", "hang"));
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  cli.child.kill("SIGINT");
  assert.equal(await cli.exit, 130);
  assert.deepEqual(pairs(service.stored.slice(1)), [
    ["interrupted", { reason: "Wrapper received SIGINT" }],
  ]);
});

Deno.test("after the terminal ack: up to 2 s for the 4000, whose reason decides", async () => {
  // No 4000 at all: the own frame decides after about 2 s.
  await using quiet = await startFakeService({ closeOnTerminal: false });
  const waiting = wrapper(quiet, [], agent("exit:0"));
  await quiet.waitFor(
    () =>
      quiet.stored.some((f) => f.streamEventType === "complete" || f.streamEventType === "error"),
    {
      timeoutMs: 10_000,
    },
  );
  const ackedAt = performance.now();
  assert.equal(await waiting.exit, 0);
  const waited = performance.now() - ackedAt;
  assert.ok(waited > 1700 && waited < 3500, `waited ${waited} ms`);

  // A late 4000 with another status wins over the own frame.
  await using late = await startFakeService({ closeOnTerminal: false });
  const overruled = wrapper(late, [], agent("exit:0"));
  await late.waitFor(
    () =>
      late.stored.some((f) => f.streamEventType === "complete" || f.streamEventType === "error"),
    {
      timeoutMs: 10_000,
    },
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  late.current!.close(4000, "execution failed");
  assert.equal(await overruled.exit, 1);

  // The socket drops instead: no redial, the own frame decides at once.
  await using dropped = await startFakeService({ closeOnTerminal: false });
  const cut = wrapper(dropped, [], agent("exit:5"));
  await dropped.waitFor(
    () =>
      dropped.stored.some((f) => f.streamEventType === "complete" || f.streamEventType === "error"),
    {
      timeoutMs: 10_000,
    },
  );
  await new Promise((resolve) => setTimeout(resolve, 300)); // the ack reaches the wrapper
  const cutAt = performance.now();
  dropped.cut();
  assert.equal(await cut.exit, 1);
  assert.ok(performance.now() - cutAt < 1500);
  assert.equal(dropped.dials.length, 1);
});

const seqs = (frames: Record<string, unknown>[]) =>
  frames.filter((f) => typeof f.seq === "number").map((f) => f.seq as number);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("dials: X-Tether-Dial n grows per dial; 4009 waits --reconnect-max-ms, uses no attempt", async () => {
  await using service = await startFakeService();
  service.plan(
    { kind: "http", status: 503 },
    { kind: "close", code: 4009, reason: "not active yet" },
    { kind: "close", code: 4009, reason: "not active yet" },
  );
  const cli = wrapper(service, ["--reconnect-attempts=2", "--reconnect-max-ms=150"]);
  assert.equal(await cli.exit, 0, cli.stderr());
  const dials = dialNumbers(service);
  assert.deepEqual(dials.map((d) => d.n), [1, 2, 3, 4]);
  assert.equal(new Set(dials.map((d) => d.wrapperId)).size, 1);
  assert.match(service.dials[0].dial!, /^[A-Za-z0-9_-]{1,64}\/1$/);
  for (const i of [2, 3]) {
    const gap = service.dials[i].at - service.dials[i - 1].at;
    assert.ok(gap >= 140, `dial ${i + 1} came ${gap} ms after a 4009`);
  }
});

Deno.test("dials: a silent upgrade and a refused TCP connection are failed attempts (exit 2)", async () => {
  await using silent = await startFakeService();
  silent.setDefaultPlan({ kind: "silent" });
  const started = performance.now();
  const timedOut = wrapper(silent, ["--connect-timeout-ms=200", "--reconnect-attempts=2"]);
  assert.equal(await timedOut.exit, 2);
  assert.equal(silent.dials.length, 2);
  assert.ok(performance.now() - started >= 400);

  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const refused = spawn([
    `--ingest-url=http://127.0.0.1:${port}/v1/sessions/s/executions/e/ingest`,
    "--token=t",
    ...FAST,
    "--reconnect-attempts=2",
    "--",
    ...agent("out:never"),
  ]);
  assert.equal(await refused.exit, 2);
  assert.doesNotMatch(refused.stderr(), /agent started/);
});

Deno.test("liveness: heartbeats and pongs are {data:{}} without seq or timestamp", async () => {
  await using service = await startFakeService();
  const cli = wrapper(service, ["--heartbeat-ms=50"], agent("out:a", "sleep:400", "out:b"));
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  service.current!.send({ type: "ping" });
  assert.equal(await cli.exit, 0);
  const liveness = service.received.filter((f) => typeof f.seq !== "number");
  assert.ok(liveness.filter((f) => f.streamEventType === "heartbeat").length >= 3);
  assert.equal(liveness.filter((f) => f.streamEventType === "pong").length, 1);
  for (const frame of liveness) {
    assert.ok(frame.streamEventType === "heartbeat" || frame.streamEventType === "pong");
    assert.deepEqual({ ...frame, streamEventType: undefined }, {
      streamEventType: undefined,
      data: {},
    });
  }
  assert.deepEqual(types(service.stored), ["output", "output", "complete"]);
});

Deno.test("liveness: --silence-timeout-ms closes with 4408 silence and reconnects", async () => {
  await using service = await startFakeService();
  const cli = wrapper(service, ["--silence-timeout-ms=300"], agent("out:a", "sleep:700", "out:b"));
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.deepEqual(service.connections[0].closedWith, { code: 4408, reason: "silence" });
  assert.ok(service.dials.length >= 2);
  assert.deepEqual(pairs(service.stored).map(([type]) => type), ["output", "output", "complete"]);
});

Deno.test("seq: numbering continues after hello.lastSeq; kept frames are resent after hello", async () => {
  await using service = await startFakeService({ ack: "manual" });
  service.plan({ kind: "accept", lastSeq: 41 });
  const cli = wrapper(service, [], agent("lines:3", "sleep:600", "exit:0"));
  await service.waitFor(() => service.lastSeq === 44, { timeoutMs: 10_000 });
  // The next dial is told only 42 is durable: 43 and 44 must come again, in order.
  service.plan({ kind: "accept", lastSeq: 42 });
  service.setAckMode("auto");
  service.current!.close(1012, "restarting");
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.deepEqual(seqs(service.connections[0].frames), [42, 43, 44]);
  assert.deepEqual(seqs(service.connections[1].frames), [43, 44, 45]);
  assert.deepEqual(service.stored.map((f) => f.seq), [42, 43, 44, 45]);
  assert.deepEqual(types(service.stored), ["agent", "agent", "agent", "complete"]);
});

Deno.test("seq: SEQ_GAP resends from expectedSeq; at most hello.maxInFlight unacknowledged", async () => {
  await using service = await startFakeService({ ack: "manual", maxInFlight: 2 });
  const cli = wrapper(service, [], agent("lines:5", "sleep:300", "exit:0"));
  await service.waitFor(() => service.received.length === 2, { timeoutMs: 10_000 });
  await sleep(200);
  assert.deepEqual(seqs(service.received), [1, 2], "the window is full");
  service.current!.send({
    type: "error",
    code: "SEQ_GAP",
    message: "expected seq 2",
    seq: 3,
    expectedSeq: 2,
  });
  await service.waitFor(() => service.received.length === 3);
  await sleep(100);
  assert.deepEqual(seqs(service.received), [1, 2, 2]);
  service.setAckMode("auto");
  service.ack();
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.deepEqual(service.stored.map((f) => f.seq), [1, 2, 3, 4, 5, 6]);
});

Deno.test("outage: held-back frames follow wrapper_resumed; limits drop non-terminal frames only", async () => {
  const cases: [string[], Record<string, unknown>, number][] = [
    [[], { bufferedEvents: 6, eventsLost: false, droppedEvents: 0 }, 5],
    [["--buffer-limit=3"], { bufferedEvents: 4, eventsLost: true, droppedEvents: 2 }, 3],
    [["--buffer-bytes", "1"], { bufferedEvents: 1, eventsLost: true, droppedEvents: 5 }, 0],
  ];
  await Promise.all(cases.map(async ([options, marker, kept]) => {
    await using service = await startFakeService();
    const cli = wrapper(
      service,
      ["--reconnect-attempts=1000", ...options],
      agent("out:first", "sleep:300", "lines:5", "exit:0"),
    );
    await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
    service.setDefaultPlan({ kind: "http", status: 503 });
    service.cut();
    await sleep(1000); // the agent ends while the service is away
    service.setDefaultPlan({ kind: "accept" });
    assert.equal(await cli.exit, 0, cli.stderr());
    assert.deepEqual(pairs(service.stored.slice(0, 2)), [
      ["output", { stream: "stdout", text: "first" }],
      ["wrapper_resumed", marker],
    ]);
    assert.deepEqual(
      service.stored.slice(2).map((f) => (f.data as { n?: number }).n ?? f.streamEventType),
      [...Array.from({ length: kept }, (_, i) => i + 1), "complete"],
    );
    assert.deepEqual(service.stored.map((f) => f.seq), service.stored.map((_, i) => i + 1));
  }));
});

Deno.test("--sse without an agent: kilocode events with `event`, keep-alives skipped, done ends", async () => {
  await using sse = startSseServer([
    "event: server.connected\ndata: {}\n\n" +
    'data: {"type":"message.updated","x":1}\n\n' +
    'event: message.part.updated\ndata: {"part":{"text":"hi"}}\n\n' +
    "event: log\ndata: not json\n\n" +
    "event: server.heartbeat\ndata: {}\n\n" +
    'data: {"type":"server.heartbeat"}\n\n' +
    'event: run.done\ndata: {"ok":true}\n\n…',
  ]);
  await using service = await startFakeService();
  const cli = spawn([
    `--ingest-url=${service.url}`,
    "--token=t",
    ...FAST,
    "--sse",
    sse.url,
    "--done-event=run.done",
  ]);
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.deepEqual(pairs(service.stored), [
    ["kilocode", { type: "message.updated", x: 1, event: "message.updated" }],
    ["kilocode", { part: { text: "hi" }, event: "message.part.updated" }],
    ["kilocode", { raw: "not json", event: "log" }],
    ["kilocode", { ok: true, event: "run.done" }],
    ["complete", { exitCode: 0 }],
  ]);
});

Deno.test("--sse from the environment with an agent: session.idle stops it, complete", async () => {
  await using sse = startSseServer(['data: {"type":"session.idle"}\n\n…']);
  await using service = await startFakeService();
  const cli = wrapper(service, [], agent("trap:9", "out:ready", "hang"), {
    TETHER_WRAPPER_SSE: sse.url,
  });
  assert.equal(await cli.exit, 0, cli.stderr());
  const stored = pairs(service.stored);
  assert.deepEqual(stored.at(-1), ["complete", { exitCode: 0 }]);
  assert.ok(stored.some(([, data]) => JSON.stringify(data).includes("session.idle")));
  assert.equal(service.storedOfType("error").length, 0, "no AGENT_EXIT after the wrapper's stop");
});

Deno.test("--idle-timeout-ms: a silent agent is stopped with AGENT_IDLE_TIMEOUT (exit 1)", async () => {
  await using service = await startFakeService();
  const cli = wrapper(service, ["--idle-timeout-ms=300"], agent("out:x", "hang"));
  assert.equal(await cli.exit, 1);
  assert.deepEqual(pairs(service.stored), [
    ["output", { stream: "stdout", text: "x" }],
    ["error", {
      fatal: true,
      code: "AGENT_IDLE_TIMEOUT",
      error: "agent produced no output for 300 ms",
    }],
  ]);
});

Deno.test("kill {signal:SIGKILL} kills at once, whatever --kill-grace-ms", async () => {
  await using service = await startFakeService();
  const cli = wrapper(
    service,
    ["--kill-grace-ms=20000"],
    agent("ignore-term", "out:ready", "hang"),
  );
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  const killedAt = performance.now();
  service.current!.send({ type: "kill", signal: "SIGKILL", reason: "now" });
  assert.equal(await cli.exit, 130);
  assert.ok(performance.now() - killedAt < 3000);
  assert.deepEqual(pairs(service.stored.slice(1)), [["interrupted", { reason: "now" }]]);
});

Deno.test("reconnect: waits grow as min(max, base·2^(n-1)) ±20 %; a hello resets the count", async () => {
  await using service = await startFakeService();
  const failures = Array.from({ length: 4 }, () => ({ kind: "http", status: 503 }) as const);
  service.plan(...failures);
  const cli = wrapper(
    service,
    ["--reconnect-base-ms=80", "--reconnect-max-ms=320", "--reconnect-attempts=5"],
    agent("out:a", "sleep:300", "exit:0"),
  );
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  // Four more failed dials after a hello are not five in a row: no give up.
  service.plan(...failures);
  service.cut();
  assert.equal(await cli.exit, 0, cli.stderr());
  const at = service.dials.map((d) => d.at);
  const expected = [80, 160, 320, 320];
  expected.forEach((ms, i) => {
    const gap = at[i + 1] - at[i];
    assert.ok(gap >= ms * 0.8 - 5 && gap <= ms * 1.2 + 250, `wait ${i + 1}: ${gap} ms`);
  });
  assert.equal(service.dials.length, 10);
  assert.deepEqual(types(service.stored), ["output", "wrapper_resumed", "complete"]);
});

Deno.test("reconnect: 1008, 1009 and 1012 from the service reconnect; nothing stored twice", async () => {
  await Promise.all([1008, 1009, 1012].map(async (code) => {
    await using service = await startFakeService();
    const cli = wrapper(service, [], agent("lines:2", "sleep:400", "lines:2", "exit:0"));
    await service.waitFor(() => service.stored.length === 2, { timeoutMs: 10_000 });
    service.current!.close(code, "bye");
    assert.equal(await cli.exit, 0, cli.stderr());
    assert.equal(service.dials.length, 2);
    assert.deepEqual(service.stored.map((f) => (f.data as { n?: number }).n ?? f.seq), [
      1,
      2,
      1,
      2,
      5,
    ]);
  }));
});

Deno.test("--idle-timeout-ms: time spent disconnected does not count", async () => {
  await using service = await startFakeService();
  const cli = wrapper(
    service,
    ["--idle-timeout-ms=600", "--reconnect-attempts=1000"],
    agent("out:a", "sleep:1200", "out:b", "exit:0"),
  );
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  service.setDefaultPlan({ kind: "http", status: 503 });
  service.cut();
  await sleep(900);
  service.setDefaultPlan({ kind: "accept" });
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.deepEqual(types(service.stored), ["output", "output", "complete"]);
});

Deno.test("SIGTERM while disconnected: interrupted is delivered after the reconnect, exit 130", async () => {
  await using service = await startFakeService();
  const cli = wrapper(service, ["--reconnect-attempts=1000"], agent("out:a", "hang"));
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  service.setDefaultPlan({ kind: "http", status: 503 });
  service.cut();
  await sleep(200);
  cli.child.kill("SIGTERM");
  await sleep(300);
  service.setDefaultPlan({ kind: "accept" });
  assert.equal(await cli.exit, 130, cli.stderr());
  assert.deepEqual(pairs(service.stored.slice(1)), [
    ["wrapper_resumed", { bufferedEvents: 1, eventsLost: false, droppedEvents: 0 }],
    ["interrupted", { reason: "Wrapper received SIGTERM" }],
  ]);
});

/** A bare ingest endpoint that greets with `hello` as given and acks, then 4000s, every terminal frame. */
function startBareIngest(hello: Record<string, unknown>) {
  const frames: Record<string, unknown>[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onopen = () => socket.send(JSON.stringify(hello));
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      frames.push(frame);
      if (typeof frame.seq === "number") {
        socket.send(JSON.stringify({ type: "ack", seq: frame.seq }));
      }
      if (frame.streamEventType === "complete") socket.close(4000, "execution completed");
    };
    return response;
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/v1/sessions/s/executions/e/ingest`,
    frames,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("lenient reading: a hello with only lastSeq still starts the run", async () => {
  await using ingest = startBareIngest({ type: "hello", lastSeq: 4 });
  const cli = spawn([
    `--ingest-url=${ingest.url}`,
    "--token=t",
    ...FAST,
    "--reconnect-attempts=1",
    "--",
    ...agent("out:hi"),
  ]);
  assert.equal(await cli.exit, 0, cli.stderr());
  assert.deepEqual(ingest.frames.map((f) => [f.seq, f.streamEventType]), [
    [5, "output"],
    [6, "complete"],
  ]);
});

Deno.test("lenient reading: SEQ_GAP without message, kill without signal or with another one", async () => {
  await using service = await startFakeService({ ack: "manual" });
  const cli = wrapper(service, [], agent("trap:0", "lines:2", "hang"));
  await service.waitFor(() => service.received.length === 2, { timeoutMs: 10_000 });
  service.current!.send({ type: "error", code: "SEQ_GAP", expectedSeq: 1 });
  await service.waitFor(() => service.received.length === 4);
  assert.deepEqual(seqs(service.received), [1, 2, 1, 2]);
  service.setAckMode("auto");
  service.ack();
  service.current!.send({ type: "kill", reason: "no signal given" });
  assert.equal(await cli.exit, 130);
  assert.deepEqual(service.stored.at(-1)!.data, { reason: "no signal given" });

  await using other = await startFakeService();
  const hup = wrapper(other, [], agent("trap:0", "out:ready", "hang"));
  await other.waitFor(() => other.stored.length === 1, { timeoutMs: 10_000 });
  other.current!.send({ type: "kill", signal: "SIGHUP", reason: "hang up" });
  assert.equal(await hup.exit, 130);
  assert.deepEqual(other.stored.at(-1)!.data, { reason: "hang up" });
});

Deno.test("`deno task wrapper`: SIGINT and SIGTERM end the run as interrupted, exit 130", async () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    await using service = await startFakeService();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "wrapper",
        `--ingest-url=${service.url}`,
        "--token",
        "t",
        "--",
        ...agent("trap:0", "out:ready", "hang"),
      ],
      cwd: new URL("..", import.meta.url).pathname,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
    child.kill(signal);
    const { code, stderr } = await child.output();
    assert.equal(code, 130, new TextDecoder().decode(stderr));
    assert.deepEqual(pairs(service.stored.filter((f) => f.streamEventType !== "output")), [
      ["interrupted", { reason: `Wrapper received ${signal}` }],
    ]);
  }
});

Deno.test("a repeated signal hurries the agent but still reports interrupted", async () => {
  await using service = await startFakeService();
  const cli = wrapper(
    service,
    ["--kill-grace-ms=20000"],
    agent("ignore-term", "out:ready", "hang"),
  );
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  cli.child.kill("SIGTERM");
  await sleep(100);
  const again = performance.now();
  cli.child.kill("SIGTERM");
  assert.equal(await cli.exit, 130);
  assert.ok(performance.now() - again < 3000, "the second signal kills the agent at once");
  assert.deepEqual(pairs(service.stored.slice(1)), [
    ["interrupted", { reason: "Wrapper received SIGTERM" }],
  ]);
});
