import assert from "node:assert/strict";
import { dialNumbers, startFakeService } from "./testdata/fake_service.ts";
import { IngestConnection, toWebSocketUrl } from "./mod.ts";
import { CloseCode, executionDoneReason } from "../src/protocol.ts";
import { eventually, reconnectGate, testConnection } from "./test_util.ts";

const agent = (n: number) => ({ streamEventType: "agent", data: { n } });
const complete = { streamEventType: "complete", data: { exitCode: 0 } };
const seqs = (frames: Record<string, unknown>[]) =>
  frames.filter((f) => f.seq !== undefined).map((f) => f.seq);

Deno.test("toWebSocketUrl rewrites http(s) and rejects other schemes", () => {
  assert.equal(toWebSocketUrl("http://h:1/x?y=1"), "ws://h:1/x?y=1");
  assert.equal(toWebSocketUrl("https://h/x"), "wss://h/x");
  assert.equal(toWebSocketUrl("wss://h/x"), "wss://h/x");
  assert.throws(() => toWebSocketUrl("ftp://h/x"), TypeError);
});

Deno.test("every dial carries the bearer token and X-Tether-Dial with a growing n", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "http", status: 503 }, { kind: "close", code: 1011 });
  await using t = testConnection(service.url);
  await eventually(() => t.of("hello").length === 1);
  assert.deepEqual(service.dials.map((d) => d.authorization), Array(3).fill("Bearer tok-1"));
  assert.deepEqual(dialNumbers(service), [1, 2, 3].map((n) => ({ wrapperId: "w1", n })));
  assert.ok(service.dials.every((d) => d.path?.endsWith("/ingest")));
});

Deno.test("seq starts after hello.lastSeq, every stored frame has a timestamp", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "accept", lastSeq: 41 });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  t.conn.send(agent(1));
  t.conn.send(agent(2));
  await service.waitFor(() => service.stored.length === 2);
  assert.deepEqual(service.stored.map((f) => f.seq), [42, 43]);
  assert.ok(service.stored.every((f) => !Number.isNaN(Date.parse(f.timestamp!))));
  await eventually(() => t.conn.unacknowledged === 0);
});

Deno.test("frames queued before the first hello go out after it, with a marker", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "silent" });
  await using t = testConnection(service.url, { connectTimeoutMs: 100 });
  t.conn.send(agent(1));
  await service.waitFor(() => service.stored.length === 2);
  assert.deepEqual(service.stored.map((f) => f.streamEventType), ["wrapper_resumed", "agent"]);
  assert.deepEqual(service.stored[0].data, {
    bufferedEvents: 1,
    eventsLost: false,
    droppedEvents: 0,
  });
});

// --- The reconnection tests of the reference (wrapper-behaviour.md 12.1), adapted ---------

Deno.test("ref 1, 13: a lost connection reconnects after attempt 1's delay", async () => {
  await using service = await startFakeService();
  const delays: number[] = [];
  await using t = testConnection(service.url, {
    delay: (ms) => (delays.push(ms), new Promise((r) => setTimeout(r, 1))),
  });
  await eventually(() => t.conn.state === "open");
  service.cut();
  await eventually(() => t.of("waiting").length === 1);
  const lost = t.of("disconnected")[0];
  assert.deepEqual([lost.code, lost.wasOpen], [1006, true]);
  assert.deepEqual(t.of("waiting")[0], {
    type: "waiting",
    delayMs: 10,
    attempt: 1,
    cause: "backoff",
  });
  await eventually(() => t.conn.state === "open");
  assert.deepEqual(t.of("hello").map((e) => e.first), [true, false]);
  assert.deepEqual(delays, [10]);
  assert.equal(t.of("ended").length, 0);
});

Deno.test("ref 2, 9: after reconnectAttempts failed dials in a row it gives up", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url, { reconnectAttempts: 4 });
  await eventually(() => t.conn.state === "open");
  service.setDefaultPlan({ kind: "http", status: 503 });
  service.cut();
  const end = await t.conn.closed;
  assert.deepEqual(end, { kind: "gave_up", failedDials: 4 });
  // One dial before the loss, then 4 failed ones; the waits follow the backoff schedule.
  assert.equal(service.dials.length, 5);
  assert.deepEqual(t.of("waiting").map((e) => [e.attempt, e.delayMs]), [
    [1, 10],
    [2, 20],
    [3, 40],
    [4, 40],
  ]);
});

Deno.test("the first dial is made at once and its retries count towards giving up", async () => {
  await using service = await startFakeService();
  service.setDefaultPlan({ kind: "drop" });
  await using t = testConnection(service.url, { reconnectAttempts: 3 });
  assert.deepEqual(await t.conn.closed, { kind: "gave_up", failedDials: 3 });
  assert.equal(service.dials.length, 3);
  assert.deepEqual(t.of("waiting").map((e) => e.attempt), [1, 2]);
});

Deno.test("a refused TCP connection is a failed attempt", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await using t = testConnection(`http://127.0.0.1:${port}/x`, { reconnectAttempts: 2 });
  assert.deepEqual(await t.conn.closed, { kind: "gave_up", failedDials: 2 });
});

Deno.test("ref 3, 6: close() while waiting makes no further dial", async () => {
  await using service = await startFakeService();
  let waits = 0;
  await using t = testConnection(service.url, {
    delay: (
      _ms,
      { signal },
    ) => (waits++,
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)))),
  });
  await eventually(() => t.conn.state === "open");
  service.cut();
  await eventually(() => t.conn.state === "waiting");
  t.conn.close();
  assert.deepEqual(await t.conn.closed, { kind: "closed" });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(service.dials.length, 1);
  assert.equal(waits, 1);
});

Deno.test("ref 15: a dial that completes after close() closes itself unused", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "silent" });
  await using t = testConnection(service.url, { heartbeatMs: 10 });
  await service.waitFor(() => service.connections.length === 1);
  t.conn.close();
  // The service now says hello on the abandoned socket: nothing may be done with it.
  service.connections[0].send({
    type: "hello",
    executionId: "e",
    lastSeq: 0,
    graceMs: 1,
    maxFrameBytes: 1000,
    maxInFlight: 10,
  });
  await service.waitFor(() => service.connections[0].closedWith !== undefined);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(t.of("hello").length, 0);
  assert.deepEqual(service.connections[0].frames, []);
  assert.equal(service.dials.length, 1);
});

Deno.test("ref 4, 14: frames sent while disconnected follow the resend, after the marker", async () => {
  await using service = await startFakeService({ ack: "manual" });
  const gate = reconnectGate();
  await using t = testConnection(service.url, {
    delay: gate.delay,
  });
  await eventually(() => t.conn.state === "open");
  t.conn.send(agent(1));
  await service.waitFor(() => service.lastSeq === 1);
  service.cut();
  await eventually(() => t.conn.state === "waiting");
  t.conn.send(agent(2));
  t.conn.send(agent(3));
  gate.open();
  await service.waitFor(() => service.stored.length === 4);
  const second = service.connections[1].frames;
  assert.deepEqual(second.map((f) => [f.seq, f.streamEventType]), [
    [2, "wrapper_resumed"],
    [3, "agent"],
    [4, "agent"],
  ]);
  assert.deepEqual(second[0].data, { bufferedEvents: 2, eventsLost: false, droppedEvents: 0 });
  assert.equal(service.arrivals.get(1), 1); // seq 1 was stored: hello.lastSeq acked it
});

Deno.test("ref 14: a reconnect with nothing held back sends no marker", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  t.conn.send(agent(1));
  await service.waitFor(() => service.stored.length === 1);
  service.cut();
  await eventually(() => t.of("hello").length === 2);
  t.conn.send(agent(2));
  await service.waitFor(() => service.stored.length === 2);
  assert.deepEqual(service.stored.map((f) => f.streamEventType), ["agent", "agent"]);
});

Deno.test("ref 7: heartbeats pause while disconnected and resume after hello", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  await using t = testConnection(service.url, {
    heartbeatMs: 15,
    delay: gate.delay,
  });
  const heartbeats = (i: number) =>
    service.connections[i]?.frames.filter((f) => f.streamEventType === "heartbeat") ?? [];
  await service.waitFor(() => heartbeats(0).length >= 2);
  service.cut();
  await eventually(() => t.conn.state === "waiting");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(service.connections.length, 1);
  gate.open();
  await service.waitFor(() => heartbeats(1).length >= 2);
  assert.ok(heartbeats(1).every((f) => f.seq === undefined && JSON.stringify(f.data) === "{}"));
});

Deno.test("ref 8: no dial before the backoff delay has passed, exactly one after", async () => {
  await using service = await startFakeService();
  const waits: { ms: number; release: () => void }[] = [];
  await using t = testConnection(service.url, {
    reconnectBaseMs: 1000,
    reconnectMaxMs: 5000,
    delay: (ms) => new Promise((release) => waits.push({ ms, release })),
  });
  await eventually(() => t.conn.state === "open");
  service.setDefaultPlan({ kind: "http", status: 502 });
  service.cut();
  for (const [i, expected] of [1000, 2000, 4000, 5000].entries()) {
    await eventually(() => waits.length === i + 1);
    assert.equal(waits[i].ms, expected);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(service.dials.length, i + 1, "no dial while waiting");
    waits[i].release();
    await service.waitFor(() => service.dials.length === i + 2);
  }
});

Deno.test("backoff jitter stays within ±20 %", async () => {
  await using service = await startFakeService();
  service.setDefaultPlan({ kind: "drop" });
  const delays: number[] = [];
  let r = 0;
  const randoms = [0, 0.999999];
  await using t = testConnection(service.url, {
    reconnectBaseMs: 1000,
    reconnectMaxMs: 5000,
    reconnectAttempts: 3,
    random: () => randoms[r++ % 2],
    delay: (ms) => (delays.push(ms), Promise.resolve()),
  });
  await t.conn.closed;
  assert.deepEqual(delays, [800, 2400]);
});

Deno.test("ref 10: a ping on the reconnected socket is answered with pong", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  service.cut();
  await eventually(() => t.of("hello").length === 2);
  service.current!.send({ type: "ping" });
  await service.waitFor(() => service.connections[1].frames.length === 1);
  assert.deepEqual(service.connections[1].frames[0], { streamEventType: "pong", data: {} });
});

Deno.test("ref 11: silence closes with 4408, reconnects, and the old socket is ignored", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url, { silenceTimeoutMs: 80 });
  await eventually(() => t.of("hello").length === 2, "a reconnect after silence");
  await service.waitFor(() => service.connections[0].closedWith !== undefined);
  assert.equal(service.connections[0].closedWith!.code, 4408);
  assert.equal(t.of("disconnected")[0].code, 4408);
  assert.equal(t.of("disconnected").length, 1, "the old socket's close event is ignored");
});

Deno.test("silence: any message from the service keeps the connection", async () => {
  await using service = await startFakeService();
  // Pings well inside the timeout, for longer than the timeout: a loaded machine may delay a
  // timer by a few hundred ms without the test meaning anything else.
  await using t = testConnection(service.url, { silenceTimeoutMs: 1000 });
  await eventually(() => t.conn.state === "open");
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 150));
    service.current!.send({ type: "ping" });
  }
  assert.equal(t.of("disconnected").length, 0);
});

Deno.test("ref 12: fail, fail, succeed: one reconnect, no end", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  service.plan({ kind: "drop" }, { kind: "http", status: 500 });
  service.cut();
  await eventually(() => t.of("hello").length === 2);
  assert.deepEqual(t.of("waiting").map((e) => e.attempt), [1, 2, 3]);
  assert.equal(t.of("ended").length, 0);
});

Deno.test("ref 16: a closed connection does not affect a new one on the same service", async () => {
  await using service = await startFakeService();
  await using first = testConnection(service.url);
  await eventually(() => first.conn.state === "open");
  first.conn.close();
  await using second = testConnection(service.url);
  await eventually(() => second.conn.state === "open");
  service.cut();
  await eventually(() => second.of("hello").length === 2);
  assert.deepEqual(await first.conn.closed, { kind: "closed" });
});

// --- Close codes ---------------------------------------------------------------------

for (
  const [code, end] of [
    [4401, { kind: "refused", code: 4401 }],
    [4403, { kind: "refused", code: 4403 }],
    [4000, { kind: "done", status: "failed", reason: "execution failed" }],
  ] as const
) {
  Deno.test(`${code} on the first dial ends without reconnecting`, async () => {
    await using service = await startFakeService();
    service.plan({ kind: "close", code, reason: code === 4000 ? "execution failed" : "no" });
    await using t = testConnection(service.url);
    assert.deepEqual(await t.conn.closed, end);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(service.dials.length, 1);
  });
}

Deno.test("4000 with a reason that does not parse ends as done without status", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  service.current!.close(4000, "bye");
  assert.deepEqual(await t.conn.closed, { kind: "done", status: undefined, reason: "bye" });
});

Deno.test("4001 on an open connection is replaced; before hello it is a failed dial", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "close", code: 4001, reason: "replaced" });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  assert.equal(service.dials.length, 2);
  service.current!.close(4001, "replaced");
  assert.deepEqual(await t.conn.closed, { kind: "replaced" });
});

Deno.test("4009 waits reconnectMaxMs and does not use up attempts", async () => {
  await using service = await startFakeService();
  const notActive = { kind: "close", code: 4009, reason: "not active yet" } as const;
  service.plan(notActive, notActive, notActive, notActive);
  await using t = testConnection(service.url, { reconnectAttempts: 2, reconnectMaxMs: 15 });
  await eventually(() => t.conn.state === "open");
  assert.deepEqual(
    t.of("waiting").map((e) => [e.cause, e.delayMs]),
    Array(4).fill(["not_active", 15]),
  );
});

Deno.test("1008, 1009, 1012 and 1000 from the service reconnect with backoff", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  for (const code of [1008, 1009, 1012, 1000]) {
    await eventually(() => t.conn.state === "open");
    service.current!.close(code, "x");
    await eventually(() => t.of("disconnected").some((e) => e.code === code));
  }
  await eventually(() => t.of("hello").length === 5);
});

Deno.test("connect timeout: a socket that gives no hello in time is a failed attempt", async () => {
  await using service = await startFakeService();
  service.setDefaultPlan({ kind: "silent" });
  const t0 = performance.now();
  await using t = testConnection(service.url, { connectTimeoutMs: 60, reconnectAttempts: 3 });
  assert.deepEqual(await t.conn.closed, { kind: "gave_up", failedDials: 3 });
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 3 * 60 + 10 + 20, `took ${elapsed} ms`);
  assert.ok(elapsed < 2000, `took ${elapsed} ms`);
});

// --- Service frames ---------------------------------------------------------------------

Deno.test("garbage from the service is reported and ignored", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  const conn = service.current!;
  conn.send("not json");
  conn.send({ type: "bogus" });
  conn.send({ type: "ack", seq: -1 });
  conn.send([1, 2]);
  conn.send({ type: "hello" });
  conn.send({ type: "error", code: "INVALID_FRAME", message: "bad", seq: 3 });
  conn.send({ type: "ping" });
  await service.waitFor(() => conn.frames.length === 1);
  assert.equal(t.of("warning").length, 6);
  assert.equal(t.conn.state, "open");
});

Deno.test("kill is surfaced with its reason and signal", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "accept", kill: { reason: "stop it" } });
  await using t = testConnection(service.url);
  await eventually(() => t.of("kill").length === 1);
  assert.deepEqual(t.of("kill")[0].kill, { type: "kill", signal: "SIGTERM", reason: "stop it" });
  service.current!.send({ type: "kill" });
  await eventually(() => t.of("kill").length === 2);
  assert.equal(t.of("kill")[1].kill.signal, "SIGTERM");
});

Deno.test("input frames are surfaced as they come, and hello carries deliveredInputId", async () => {
  await using service = await startFakeService();
  service.input({ data: "before" });
  service.plan({ kind: "accept", deliveredInputId: 0 });
  await using t = testConnection(service.url);
  await eventually(() => t.of("input").length === 1);
  service.input({ data: { a: 1 }, endOfInput: true });
  service.current!.send({ type: "input", inputId: 0 }); // not a valid inputId: a warning
  await eventually(() => t.of("input").length === 2 && t.of("warning").length === 1);
  assert.deepEqual(t.of("input").map((e) => e.input), [
    { inputId: 1, data: "before" },
    { inputId: 2, data: { a: 1 }, endOfInput: true },
  ]);
  assert.equal(t.of("hello")[0].hello.deliveredInputId, 0);
});

Deno.test("at most maxInFlight frames are unacknowledged; acks open the window", async () => {
  await using service = await startFakeService({ ack: "manual", maxInFlight: 3 });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  for (let i = 1; i <= 10; i++) t.conn.send(agent(i));
  await service.waitFor(() => service.lastSeq === 3);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(service.received.length, 3);
  assert.deepEqual([t.conn.unacknowledged, t.conn.held], [3, 7]);
  service.ack();
  await service.waitFor(() => service.lastSeq === 6);
  service.setAckMode("auto");
  service.ack();
  await service.waitFor(() => service.lastSeq === 10);
  assert.deepEqual(service.stored.map((f) => (f.data as { n: number }).n), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
  ]);
});

Deno.test("SEQ_GAP resends from expectedSeq", async () => {
  await using service = await startFakeService({ ack: "manual" });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  for (let i = 1; i <= 5; i++) t.conn.send(agent(i));
  await service.waitFor(() => service.lastSeq === 5);
  service.current!.send({ type: "error", code: "SEQ_GAP", message: "gap", seq: 9, expectedSeq: 3 });
  await service.waitFor(() => service.received.length === 8);
  assert.deepEqual(seqs(service.received), [1, 2, 3, 4, 5, 3, 4, 5]);
  assert.deepEqual([...service.arrivals.values()], [1, 1, 2, 2, 2]);
  assert.equal(service.stored.length, 5);
});

// --- Cuts and resends ---------------------------------------------------------------------

Deno.test("a cut after frames were sent but before their ack: resent, stored once", async () => {
  await using service = await startFakeService({ ack: "manual" });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  for (let i = 1; i <= 20; i++) t.conn.send(agent(i));
  await service.waitFor(() => service.lastSeq === 20);
  // The service committed all 20 but its hello lags behind by 5 (say, a slow instance):
  // the wrapper resends 16..20, and the service acks them again without storing them.
  service.plan({ kind: "accept", lastSeq: 15 });
  service.setAckMode("auto");
  service.cut();
  await eventually(() => t.of("hello").length === 2);
  await eventually(() => t.conn.unacknowledged === 0);
  // The ack for the first resend may already cover all five (the service has them), so
  // wait for the rest of the resends to arrive rather than reading them at that moment.
  await service.waitFor(() => service.connections[1].frames.length === 5);
  assert.deepEqual(seqs(service.connections[1].frames), [16, 17, 18, 19, 20]);
  assert.deepEqual(service.stored.map((f) => f.seq), Array.from({ length: 20 }, (_, i) => i + 1));
});

Deno.test("a cut before frames reached the service: they are resent after hello", async () => {
  await using service = await startFakeService({ ack: "manual" });
  const gate = reconnectGate();
  await using t = testConnection(service.url, {
    delay: gate.delay,
  });
  await eventually(() => t.conn.state === "open");
  for (let i = 1; i <= 3; i++) t.conn.send(agent(i));
  await service.waitFor(() => service.lastSeq === 3);
  service.cut();
  await eventually(() => t.conn.state === "waiting");
  // Simulate the loss of the last two frames: the next hello says only seq 1 is durable.
  service.plan({ kind: "accept", lastSeq: 1 });
  service.stored.splice(1);
  service.lastSeq = 1;
  service.setAckMode("auto");
  gate.open();
  await eventually(() => t.conn.unacknowledged === 0);
  assert.deepEqual(seqs(service.connections[1].frames), [2, 3]);
  assert.deepEqual(service.stored.map((f) => f.seq), [1, 2, 3]);
});

Deno.test("a fresh connection for an execution with frames numbers after lastSeq", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "accept", lastSeq: 7 });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  t.conn.send(agent(1));
  await service.waitFor(() => service.stored.length === 1);
  assert.equal(service.stored[0].seq, 8);
});

// --- Buffer limits ---------------------------------------------------------------------

Deno.test("overflow: frames beyond the limits are dropped and counted, terminal kept", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  await using t = testConnection(service.url, {
    bufferLimit: 3,
    bufferBytes: 10_000,
    delay: gate.delay,
  });
  await eventually(() => t.conn.state === "open");
  service.cut();
  await eventually(() => t.conn.state === "waiting");
  const results = [1, 2, 3, 4, 5].map((n) => t.conn.send(agent(n)));
  assert.deepEqual(results, [true, true, true, false, false]);
  const big = { streamEventType: "output", data: { text: "x".repeat(20_000) } };
  assert.equal(t.conn.send(big), false, "over bufferBytes");
  const ended = t.conn.finish(complete);
  gate.open();
  assert.equal((await ended).kind, "done");
  assert.deepEqual(service.stored.map((f) => f.streamEventType), [
    "wrapper_resumed",
    "agent",
    "agent",
    "agent",
    "complete",
  ]);
  assert.deepEqual(service.stored[0].data, {
    bufferedEvents: 4,
    eventsLost: true,
    droppedEvents: 3,
  });
});

Deno.test("a frame over the frame limit goes out as a stub, never as a 1009", async () => {
  await using service = await startFakeService({ maxFrameBytes: 300 });
  await using t = testConnection(service.url, { maxFrameBytes: 1000 });
  await eventually(() => t.conn.state === "open");
  assert.equal(t.conn.maxFrameBytes, 300);
  t.conn.send({ streamEventType: "agent", data: { text: "y".repeat(500) } });
  await service.waitFor(() => service.stored.length === 1);
  assert.equal(service.stored[0].streamEventType, "agent");
  assert.deepEqual(Object.keys(service.stored[0].data as object), ["truncated", "bytes"]);
});

// --- Terminal frames ---------------------------------------------------------------------

Deno.test("finish: the terminal frame is acked, then 4000 gives the outcome", async () => {
  await using service = await startFakeService();
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  t.conn.send(agent(1));
  const end = await t.conn.finish(complete);
  assert.deepEqual(end, { kind: "done", status: "completed", reason: "execution completed" });
  assert.equal(t.conn.send(agent(2)), false);
  assert.deepEqual(service.stored.map((f) => f.seq), [1, 2]);
});

Deno.test("finish: acked but no 4000 within doneWaitMs ends as acknowledged", async () => {
  await using service = await startFakeService({ closeOnTerminal: false });
  await using t = testConnection(service.url, { doneWaitMs: 50 });
  await eventually(() => t.conn.state === "open");
  const t0 = performance.now();
  const end = await t.conn.finish({ streamEventType: "interrupted", data: { reason: "r" } });
  assert.deepEqual(end, { kind: "acknowledged", status: "interrupted" });
  assert.ok(performance.now() - t0 >= 45);
  await service.waitFor(() => service.connections[0].closedWith !== undefined);
  assert.equal(service.connections[0].closedWith!.code, 1000);
});

Deno.test("finish: acked, then the socket drops instead of 4000: no reconnect", async () => {
  await using service = await startFakeService({ closeOnTerminal: false });
  await using t = testConnection(service.url, { doneWaitMs: 5000 });
  await eventually(() => t.conn.state === "open");
  const ended = t.conn.finish({ streamEventType: "error", data: { fatal: true, error: "x" } });
  await eventually(() => t.conn.unacknowledged === 0);
  service.cut();
  assert.deepEqual(await ended, { kind: "acknowledged", status: "failed" });
  assert.equal(service.dials.length, 1);
});

Deno.test("completion while disconnected waits for the reconnect", async () => {
  await using service = await startFakeService();
  const gate = reconnectGate();
  await using t = testConnection(service.url, {
    delay: gate.delay,
  });
  await eventually(() => t.conn.state === "open");
  service.cut();
  await eventually(() => t.conn.state === "waiting");
  t.conn.send(agent(1));
  const ended = t.conn.finish(complete);
  await new Promise((r) => setTimeout(r, 30));
  gate.open();
  assert.deepEqual(await ended, {
    kind: "done",
    status: "completed",
    reason: "execution completed",
  });
  assert.deepEqual(service.stored.map((f) => f.streamEventType), [
    "wrapper_resumed",
    "agent",
    "complete",
  ]);
});

Deno.test("a terminal frame stored but not acked before a cut: the next dial gets 4000", async () => {
  await using service = await startFakeService({ ack: "manual", closeOnTerminal: false });
  await using t = testConnection(service.url);
  await eventually(() => t.conn.state === "open");
  // The fake service acks terminal frames at once; lose that ack by cutting first.
  service.current!.ended = true;
  const ended = t.conn.finish(complete);
  await service.waitFor(() => service.received.length === 1);
  service.status = "completed";
  service.cut();
  assert.deepEqual(await ended, {
    kind: "done",
    status: "completed",
    reason: "execution completed",
  });
});

Deno.test("finish with ackTimeoutMs ends unacknowledged when no ack comes", async () => {
  await using service = await startFakeService();
  service.setDefaultPlan({ kind: "drop" });
  await using t = testConnection(service.url, { reconnectAttempts: 1000 });
  const end = await t.conn.finish({ streamEventType: "interrupted", data: {} }, {
    ackTimeoutMs: 80,
  });
  assert.deepEqual(end, { kind: "unacknowledged", status: "interrupted" });
});

Deno.test("finish with ackTimeoutMs: once the ack came, the 4000 decides, however late", async () => {
  await using service = await startFakeService({ closeOnTerminal: false });
  await using t = testConnection(service.url, { doneWaitMs: 2000 });
  await eventually(() => t.conn.state === "open");
  const ended = t.conn.finish({ streamEventType: "interrupted", data: {} }, { ackTimeoutMs: 80 });
  await service.waitFor(() => service.stored.length === 1);
  const connection = service.current!;
  // The ack went out with the storing; the 4000 comes after the ack timeout.
  await new Promise((r) => setTimeout(r, 200));
  connection.close(CloseCode.executionDone, executionDoneReason("failed"));
  assert.deepEqual(await ended, { kind: "done", status: "failed", reason: "execution failed" });
});

Deno.test("finish rejects a frame that is not terminal", () => {
  const conn = new IngestConnection({ url: "http://127.0.0.1:1/x", token: "t" });
  assert.throws(() => conn.finish(agent(1)), TypeError);
  conn.close();
});
