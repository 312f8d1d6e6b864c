/**
 * Contract probes for PROTOCOL.md 5, 6, 6.1 and 8 over real sockets: the rules the other
 * suites leave implicit, each asserted exactly as the contract words it (admission order,
 * the shape of every service frame, frames on replaced connections, the grace record of
 * the service's own 1008/1009 closes, error-text precedence and cutting, the viewer
 * envelope's key order, cursor validation, deletion, and interrupts of ended executions).
 */
import assert from "node:assert/strict";
import {
  connectRun,
  createRun,
  type Envelope,
  eventually,
  getExecution,
  IngestClient,
  LONG_GRACE,
  type Run,
  serverTest,
  type ServiceMessage,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { SseRefused, SseViewer, WsViewer } from "./helpers/viewer.ts";
import type { TestServer } from "./helpers/server.ts";

/** The envelope's keys, in the contract's order (PROTOCOL.md 6). */
const ENVELOPE_KEYS = [
  "eventId",
  "executionId",
  "sessionId",
  "streamEventType",
  "timestamp",
  "data",
];

/** The exact key set of every frame type the service sends on ingest (PROTOCOL.md 5.2). */
const SERVICE_FRAME_KEYS: Record<string, string[][]> = {
  hello: [[
    "type",
    "executionId",
    "lastSeq",
    "graceMs",
    "maxFrameBytes",
    "maxInFlight",
    "deliveredInputId",
  ]],
  ack: [["type", "seq"]],
  kill: [["type", "signal", "reason"]],
  ping: [["type"]],
  input: [["type", "inputId", "data"], ["type", "inputId", "endOfInput"], [
    "type",
    "inputId",
    "data",
    "endOfInput",
  ]],
  error: [
    ["type", "code", "message"],
    ["type", "code", "message", "seq"],
    ["type", "code", "message", "seq", "expectedSeq"],
  ],
};

/** Asserts that every message a raw client received is one of the documented frames. */
function assertServiceFrames(messages: readonly ServiceMessage[]): void {
  for (const m of messages) {
    const shapes = SERVICE_FRAME_KEYS[m.type];
    assert.ok(shapes, `unknown service frame ${JSON.stringify(m)}`);
    const keys = Object.keys(m).sort();
    assert.ok(
      shapes.some((shape) => JSON.stringify([...shape].sort()) === JSON.stringify(keys)),
      `frame keys ${JSON.stringify(m)}`,
    );
  }
}

/** The events the wrapper of `run` stored (the service's own `execution_status` left out). */
async function wrapperEvents(server: TestServer, run: Run): Promise<Envelope[]> {
  return (await storedEvents(server, run.sessionId)).filter((e) =>
    e.executionId === run.executionId && e.streamEventType !== "execution_status"
  );
}

const post = (server: TestServer, path: string, json: unknown = {}) =>
  server.call(path, { method: "POST", json });

const execPath = (run: Run, action: string) =>
  `/v1/sessions/${run.sessionId}/executions/${run.executionId}/${action}`;

// ---------------------------------------------------------------------------------------
// 5: admission

serverTest("admission: the token decides first, then the path, then the status", async (server) => {
  // A terminal execution's token on another execution's path: 4403, not 4000.
  const done = await createRun(server, "adm-a");
  await post(server, execPath(done, "fail"), { error: "x" });
  const other = await createRun(server, "adm-b");
  const cases: [string, string | undefined, number, string][] = [
    [other.ingestUrl, done.ingestToken, 4403, "terminal token, foreign path"],
    [done.ingestUrl, undefined, 4401, "terminal path, no token"],
    [done.ingestUrl, other.ingestToken, 4403, "terminal path, foreign token"],
  ];
  // A queued execution's token on another path: 4403, not 4009.
  const queued = await createRun(server, "adm-b");
  assert.equal(queued.active, false);
  cases.push([done.ingestUrl, queued.ingestToken, 4403, "queued token, foreign path"]);
  cases.push([queued.ingestUrl, done.ingestToken, 4403, "terminal token, queued path"]);
  for (const [url, token, code, what] of cases) {
    const client = await IngestClient.dial(url, { token });
    assert.equal((await client.closed).code, code, what);
    assert.deepEqual(client.messages, [], what);
  }
  // A deleted session's terminal execution: 4401 (the token belongs to nothing any more).
  assert.equal((await server.api("/v1/sessions/adm-a", { method: "DELETE" })).status, 204);
  const gone = await IngestClient.dial(done.ingestUrl, { token: done.ingestToken });
  assert.equal((await gone.closed).code, 4401);
  // None of it touched the others.
  assert.equal((await getExecution(server, other)).status, "pending");
  assert.equal((await getExecution(server, queued)).status, "pending");
});

serverTest(
  "admission: a dial header with n = 0 is malformed and still replaces",
  async (server) => {
    const run = await createRun(server, "adm-dial", LONG_GRACE);
    const first = await connectRun(run, "w/5");
    const zero = await connectRun(run, "w/0");
    assert.deepEqual(await first.closed, { code: 4001, reason: "replaced" });
    assert.deepEqual(zero.messages.map((m) => m.type), ["hello"]);
    await zero.close();
  },
);

serverTest(
  "kill follows hello at once while interrupting; its reason is cut to 1,024 code points",
  async (
    server,
  ) => {
    const run = await createRun(server, "kill-cut", LONG_GRACE);
    const first = await connectRun(run, "w/1");
    // 1,500 astral characters: 3,000 UTF-16 units, cut by code point, never mid-pair.
    const reason = "😀".repeat(1500);
    const res = await post(server, execPath(run, "interrupt"), { reason });
    assert.equal(res.status, 202);
    const kill = await first.next((m) => m.type === "kill");
    assert.deepEqual(kill, { type: "kill", signal: "SIGTERM", reason: "😀".repeat(1024) });
    await first.close(3000);
    const again = await connectRun(run, "w/2");
    await again.until(() => again.messages.length >= 2, "hello and kill");
    assert.deepEqual(again.messages.map((m) => m.type), ["hello", "kill"]);
    assert.deepEqual(again.messages[1], kill);
    // The wrapper's `interrupted` frame carrying the whole reason keeps it whole; the
    // execution and its status event get the cut text.
    again.send({ streamEventType: "interrupted", seq: 1, data: { reason } });
    assert.deepEqual(await again.closed, { code: 4000, reason: "execution interrupted" });
    const exec = await getExecution(server, run);
    assert.equal(exec.error, "😀".repeat(1024));
    const events = await storedEvents(server, run.sessionId);
    const frame = events.find((e) => e.streamEventType === "interrupted")!;
    assert.deepEqual(frame.data, { reason });
    assert.equal((events.at(-1)!.data as { error: string }).error, "😀".repeat(1024));
    assertServiceFrames([...first.messages, ...again.messages]);
  },
);

// ---------------------------------------------------------------------------------------
// 5.1: seq, ack, liveness, frames that must be dropped

serverTest(
  "frames on a replaced connection are neither stored nor acknowledged",
  async (server) => {
    const run = await createRun(server, "replaced", LONG_GRACE);
    const old = await connectRun(run, "w/1");
    const current = await connectRun(run, "w/2");
    // The old socket keeps talking, whether or not its 4001 has reached it yet.
    for (let seq = 1; seq <= 5; seq++) {
      if (old.socket.readyState === WebSocket.OPEN) {
        old.send({ streamEventType: "output", seq, data: { from: "old" } });
      }
    }
    if (old.socket.readyState === WebSocket.OPEN) {
      old.send({ streamEventType: "complete", data: { exitCode: 0 } });
    }
    assert.deepEqual(await old.closed, { code: 4001, reason: "replaced" });
    assert.equal(old.of("ack").length, 0);
    current.send({ streamEventType: "output", seq: 1, data: { from: "current" } });
    await current.ackOf(1);
    assert.deepEqual((await wrapperEvents(server, run)).map((e) => e.data), [{ from: "current" }]);
    assert.equal((await getExecution(server, run)).status, "running");
    assertServiceFrames([...old.messages, ...current.messages]);
    await current.close();
  },
);

serverTest("a resend is acked with the committed seq, never more; acks are {type, seq}", async (
  server,
) => {
  const run = await createRun(server, "resend-ack", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  for (let seq = 1; seq <= 3; seq++) client.send({ streamEventType: "output", seq, data: {} });
  await client.ackOf(3);
  const before = client.of("ack").length;
  client.send({ streamEventType: "output", seq: 2, data: { again: true } });
  await client.until(() => client.of("ack").length > before, "ack of the resend");
  assert.deepEqual(client.of("ack").at(-1), { type: "ack", seq: 3 });
  // A resend of a seq that was used up by a rejected frame is not stored either.
  client.send({ streamEventType: "bad type", seq: 4 });
  await client.ackOf(4);
  client.send({ streamEventType: "output", seq: 4, data: { late: true } });
  client.send({ streamEventType: "output", seq: 5, data: { n: 5 } });
  await client.ackOf(5);
  const stored = await wrapperEvents(server, run);
  assert.equal(stored.length, 4);
  assert.deepEqual(stored.at(-1)!.data, { n: 5 });
  for (const ack of client.of("ack")) assert.ok((ack.seq as number) <= 5);
  assertServiceFrames(client.messages);
  await client.close();
});

serverTest("pings go only to quiet connections; pong and heartbeat {} are accepted", async (
  server,
) => {
  const run = await createRun(server, "ping-quiet", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  // Acks keep the connection busy: no ping while the service sends something every 50 ms.
  const busyUntil = Date.now() + 700;
  let seq = 0;
  while (Date.now() < busyUntil) {
    client.send({ streamEventType: "output", seq: ++seq, data: {} });
    await client.ackOf(seq);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(client.of("ping").length, 0, "pinged a busy connection");
  const quietSince = Date.now();
  await client.next((m) => m.type === "ping", 3000);
  assert.ok(Date.now() - quietSince >= 250, `pinged after ${Date.now() - quietSince} ms`);
  client.send({ streamEventType: "pong" });
  client.send({ streamEventType: "pong", data: {} });
  client.send({ streamEventType: "heartbeat", data: {} });
  client.send({ streamEventType: "output", seq: ++seq, data: {} });
  await client.ackOf(seq);
  assert.equal(client.of("error").length, 0);
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  assertServiceFrames(client.messages);
  await client.close();
}, { config: { pingMs: 300 } });

serverTest("terminal frames: error-text precedence, default texts and the 1,024 cut", async (
  server,
) => {
  const long = "e".repeat(2000);
  const cases: [string, unknown, string, string][] = [
    ["interrupted", undefined, "interrupted", "User interrupted"],
    ["error", { fatal: true, error: "", message: "m" }, "failed", ""],
    ["error", { fatal: true, message: long }, "failed", "e".repeat(1024)],
  ];
  for (const [i, [type, data, status, error]] of cases.entries()) {
    const run = await createRun(server, `term-${i}`, LONG_GRACE);
    const client = await connectRun(run, "w/1");
    client.send(
      data === undefined ? { streamEventType: type, seq: 1 } : {
        streamEventType: type,
        seq: 1,
        data,
      },
    );
    assert.deepEqual(await client.closed, { code: 4000, reason: `execution ${status}` });
    assert.deepEqual(client.of("ack"), [{ type: "ack", seq: 1 }]);
    const exec = await getExecution(server, run);
    assert.equal(exec.status, status);
    assert.equal(exec.error, error, `${type} ${JSON.stringify(data)}`);
    const [frame, statusEvent] = (await storedEvents(server, run.sessionId)).slice(-2);
    assert.equal(frame.streamEventType, type);
    assert.deepEqual(frame.data, data ?? null, "the frame's event keeps its data whole");
    assert.deepEqual(statusEvent.data, { status, previousStatus: "running", active: false, error });
  }
});

serverTest("a terminal frame without seq is stored, ends the run and is not acked", async (
  server,
) => {
  const run = await createRun(server, "term-noseq", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send({ streamEventType: "complete", data: { exitCode: 3, extra: "kept" } });
  assert.deepEqual(await client.closed, { code: 4000, reason: "execution completed" });
  assert.equal(client.of("ack").length, 0);
  const [frame] = await wrapperEvents(server, run);
  assert.deepEqual(frame.data, { exitCode: 3, extra: "kept" });
  assert.equal((await getExecution(server, run)).error, undefined);
});

// ---------------------------------------------------------------------------------------
// 5.3 / 5.4: the service's own 1008 and 1009 closes start a grace with their code

serverTest(
  "a 1009 close starts the grace; its expiry stores the exact wrapper_disconnected",
  async (
    server,
  ) => {
    const run = await createRun(server, "grace-1009");
    const client = await connectRun(run, "w/1");
    assert.equal(client.messages[0].graceMs, 300, "graceMs defaults to the configured grace");
    client.send({ streamEventType: "output", seq: 1, data: "x".repeat(3000) });
    const closed = await client.closed;
    assert.equal(closed.code, 1009);
    await eventually(async () => (await getExecution(server, run)).status === "failed", "failed");
    const exec = await getExecution(server, run);
    assert.equal(exec.error, "Wrapper disconnected");
    const events = await storedEvents(server, run.sessionId);
    const failures = events.filter((e) => e.streamEventType === "wrapper_disconnected");
    assert.equal(failures.length, 1);
    assert.deepEqual(Object.keys(failures[0].data as object), [
      "error",
      "fatal",
      "reason",
      "wsCloseCode",
      "wsCloseReason",
    ]);
    assert.deepEqual(failures[0].data, {
      error: "Wrapper disconnected",
      fatal: true,
      reason: "Wrapper disconnected",
      wsCloseCode: 1009,
      wsCloseReason: closed.reason,
    });
    assert.equal(events.filter((e) => e.streamEventType === "output").length, 0);
  },
  { config: { maxFrameBytes: 2048, disconnectGraceMs: 300 } },
);

serverTest("a 1008 in-flight close starts the grace with code 1008", async (server) => {
  const run = await createRun(server, "grace-1008");
  const client = await connectRun(run, "w/1");
  for (let seq = 1; seq <= 3000; seq++) client.send({ streamEventType: "output", seq, data: {} });
  assert.equal((await client.closed).code, 1008);
  await eventually(async () => (await getExecution(server, run)).status === "failed", "failed");
  const failure = (await storedEvents(server, run.sessionId))
    .find((e) => e.streamEventType === "wrapper_disconnected")!;
  assert.equal((failure.data as { wsCloseCode: number }).wsCloseCode, 1008);
}, { config: { maxInFlight: 2, disconnectGraceMs: 300 } });

// ---------------------------------------------------------------------------------------
// 6: viewers

serverTest("envelopes keep the contract's key order on WebSocket, SSE and JSON", async (
  server,
) => {
  const run = await createRun(server, "env-keys", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send({ streamEventType: "progress", seq: 1 }); // no data: stored as null
  client.send({ streamEventType: "error", seq: 2, data: { error: "soft" } });
  await client.ackOf(2);
  const ws = await WsViewer.open(server.wsUrl, run.sessionId);
  const sse = await SseViewer.open(server.url, run.sessionId);
  await ws.until((events) => events.length === 4);
  await sse.until((events) => events.length === 4);
  const page = await server.call<{ events: Envelope[] }>(`/v1/sessions/env-keys/events`);
  for (const events of [ws.events, sse.events, page.body.events]) {
    for (const e of events) assert.deepEqual(Object.keys(e), ENVELOPE_KEYS);
    assert.equal(events[2].data, null);
    assert.equal(events[2].sessionId, run.sessionId);
  }
  // SSE: `id:` is the eventId, and no `event:` line (an `error` type stays a message).
  assert.deepEqual(sse.ids, ["1", "2", "3", "4"]);
  assert.deepEqual([...sse.fields].sort(), ["data", "id"]);
  assert.deepEqual(ws.controls, []);
  await ws.close();
  await sse.close();
  await client.close();
});

serverTest("bad cursors: WebSocket closes 1008 (fromId too), SSE answers 400", async (server) => {
  await createRun(server, "cursor-bad", LONG_GRACE);
  const badQueries: Record<string, string>[] = [{ fromId: "x" }, { after: "-1" }, { after: "1.5" }];
  for (const query of badQueries) {
    const viewer = await WsViewer.open(server.wsUrl, "cursor-bad", query);
    assert.equal((await viewer.closed).code, 1008, JSON.stringify(query));
    assert.deepEqual(viewer.events, []);
  }
  const refused = async (query: Record<string, string>, lastEventId?: string) => {
    const err = await SseViewer.open(server.url, "cursor-bad", query, { lastEventId })
      .then(() => null, (e) => e);
    assert.ok(err instanceof SseRefused, JSON.stringify(query));
    assert.equal(err.status, 400);
    assert.equal(JSON.parse(err.body).error, "INVALID_REQUEST");
  };
  await refused({ fromId: "x" });
  await refused({ after: "-3" });
  await refused({}, "not-a-number");
  // Last-Event-ID wins over a valid after, and fromId alone works as its alias.
  const sse = await SseViewer.open(server.url, "cursor-bad", { after: "0" }, { lastEventId: "1" });
  const ws = await WsViewer.open(server.wsUrl, "cursor-bad", { fromId: "1" });
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(sse.events, []);
  assert.deepEqual(ws.events, []);
  await sse.close();
  await ws.close();
});

serverTest("viewer messages are ignored; a deleted session ends SSE and answers 404/4404", async (
  server,
) => {
  const run = await createRun(server, "viewer-del", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const ws = await WsViewer.open(server.wsUrl, run.sessionId);
  const sse = await SseViewer.open(server.url, run.sessionId);
  ws.socket.send("garbage");
  ws.socket.send(new Uint8Array([1, 2, 3]));
  client.send({ streamEventType: "output", seq: 1, data: {} });
  await ws.until((events) => events.length === 3);
  await sse.until((events) => events.length === 3);
  assert.deepEqual(ws.controls, []);
  assert.equal((await server.api("/v1/sessions/viewer-del", { method: "DELETE" })).status, 204);
  assert.deepEqual(await client.closed, { code: 4000, reason: "execution failed" });
  assert.equal((await ws.closed).code, 1000);
  await sse.done; // the SSE response ends
  assert.deepEqual(ws.events.map((e) => e.eventId), sse.events.map((e) => e.eventId));
  const late = await WsViewer.open(server.wsUrl, run.sessionId);
  assert.equal((await late.closed).code, 4404);
  const err = await SseViewer.open(server.url, run.sessionId).then(() => null, (e) => e);
  assert.equal(err?.status, 404);
  const ds = await server.api(`/v1/sessions/viewer-del/ds`, { method: "HEAD" });
  assert.equal(ds.status, 404);
});

// ---------------------------------------------------------------------------------------
// 8: interrupts

serverTest("interrupting an ended execution leaves it as it is and emits nothing", async (
  server,
) => {
  const run = await createRun(server, "int-done", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
  await client.closed;
  const before = await storedEvents(server, run.sessionId);
  const res = await post(server, execPath(run, "interrupt"), { reason: "too late" });
  assert.deepEqual(res, {
    status: 202,
    body: { executionId: run.executionId, status: "completed" },
  });
  assert.deepEqual(await storedEvents(server, run.sessionId), before);
  const exec = await getExecution(server, run);
  assert.equal(exec.status, "completed");
  assert.equal(exec.error, undefined);
});

serverTest("every frame refreshes liveness, also one that is refused or a resend", async (
  server,
) => {
  // Heartbeat timeout 400 ms (liveness written at most every 100 ms): a wrapper that only
  // sends frames the service drops is still alive.
  const run = await createRun(server, "live-dropped", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send({ streamEventType: "output", seq: 1, data: {} });
  await client.ackOf(1);
  const dropped: unknown[] = [
    { streamEventType: "output", seq: 1, data: {} }, // resend
    { streamEventType: "output", seq: 9, data: {} }, // gap
    { streamEventType: "bad type" }, // invalid
    new Uint8Array([1]), // binary
  ];
  const until = Date.now() + 1200;
  for (let i = 0; Date.now() < until; i++) {
    client.send(dropped[i % dropped.length]);
    await new Promise((r) => setTimeout(r, 50));
  }
  const exec = await getExecution(server, run);
  assert.equal(exec.status, "running", JSON.stringify(exec));
  assert.equal(exec.health, "healthy");
  await client.close();
}, { config: { heartbeatTimeoutMs: 400 } });

serverTest("a wrapper's own close with a service code still starts the grace", async (server) => {
  for (const code of [4000, 4001, 4009]) {
    const run = await createRun(server, `own-${code}`, LONG_GRACE);
    const client = await connectRun(run, "w/1");
    await client.close(code, "wrapper said so");
    await eventually(
      async () => (await getExecution(server, run)).health === "disconnected",
      `grace after the wrapper's ${code}`,
    );
  }
});

serverTest("the JSON page takes fromId as after's alias; the streams ignore a page's limit", async (
  server,
) => {
  const run = await createRun(server, "cursor-alias", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  for (let seq = 1; seq <= 4; seq++) client.send({ streamEventType: "output", seq, data: { seq } });
  await client.ackOf(4);
  const page = async (query: string) => {
    const { status, body } = await server.call(`/v1/sessions/cursor-alias/events?${query}`);
    assert.equal(status, 200, query);
    return (body.events as Envelope[]).map((e) => e.eventId);
  };
  // Events 1-2 are the execution's status events, 3-6 the frames.
  assert.deepEqual(await page("fromId=4"), [5, 6]);
  assert.deepEqual(await page("after=5&fromId=2"), [6]);
  // `limit` belongs to the JSON page: a stream given one (even a bad one) streams as usual.
  const ws = await WsViewer.open(server.wsUrl, "cursor-alias", { after: "4", limit: "0" });
  const sse = await SseViewer.open(server.url, "cursor-alias", { after: "4", limit: "5000" });
  await ws.until((events) => events.length === 2);
  await sse.until((events) => events.length === 2);
  assert.deepEqual(ws.events.map((e) => e.eventId), [5, 6]);
  assert.deepEqual(sse.events.map((e) => e.eventId), [5, 6]);
  const { status } = await server.call("/v1/sessions/cursor-alias/events?limit=0");
  assert.equal(status, 400);
  await ws.close();
  await sse.close();
  await client.close();
});
