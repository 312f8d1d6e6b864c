/**
 * The ingest WebSocket over real sockets (PROTOCOL.md 5): admission and its close codes,
 * `X-Tether-Dial` ordering, `hello`, kill after hello, seq/ack, resend dedupe, `SEQ_GAP`,
 * liveness frames, pings, terminal frames and the grace record on close.
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
  range,
  rawClose,
  rawUpgrade,
  type Run,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { WsViewer } from "./helpers/viewer.ts";
import { startServer, type TestServer } from "./helpers/server.ts";
import { keys } from "../src/store/keys.ts";
import { envelopeTail, MAX_EVENT_BYTES, storedSize } from "../src/store/events.ts";

const frame = (seq: number | undefined, streamEventType = "output", data: unknown = { n: seq }) =>
  seq === undefined ? { streamEventType, data } : { streamEventType, seq, data };

/** Stored events of the run that came from the wrapper (not the service's own). */
async function wrapperEvents(server: TestServer, run: Run): Promise<Envelope[]> {
  return (await storedEvents(server, run.sessionId)).filter((e) =>
    e.executionId === run.executionId && e.streamEventType !== "execution_status"
  );
}

serverTest("a request without an upgrade is answered 426", async (server) => {
  const run = await createRun(server, "s426");
  const res = await fetch(run.ingestUrl.replace(/^ws/, "http"), {
    headers: { authorization: `Bearer ${run.ingestToken}` },
  });
  assert.equal(res.status, 426);
  assert.equal((await res.json()).error, "UPGRADE_REQUIRED");
});

serverTest("a missing, wrong or deleted session's token closes with 4401", async (server) => {
  const run = await createRun(server, "s4401");
  const forged = run.ingestToken.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
  for (const token of [undefined, "nonsense", forged, `tok.${run.executionId}.x`]) {
    const client = await IngestClient.dial(run.ingestUrl, { token });
    assert.deepEqual((await client.closed).code, 4401, `token ${token}`);
    assert.equal(client.of("hello").length, 0);
  }
  const deleted = await createRun(server, "s4401-deleted");
  assert.equal((await server.api(`/v1/sessions/s4401-deleted`, { method: "DELETE" })).status, 204);
  const client = await IngestClient.dial(deleted.ingestUrl, { token: deleted.ingestToken });
  assert.equal((await client.closed).code, 4401);
});

serverTest("a token of another execution or a mismatched path closes with 4403", async (server) => {
  const a = await createRun(server, "s4403-a");
  const b = await createRun(server, "s4403-b");
  const wrongExec = await IngestClient.dial(a.ingestUrl, { token: b.ingestToken });
  assert.equal((await wrongExec.closed).code, 4403);
  const wrongSession = await IngestClient.dial(
    a.ingestUrl.replace("/s4403-a/", "/s4403-b/"),
    { token: a.ingestToken },
  );
  assert.equal((await wrongSession.closed).code, 4403);
  // Neither attempt touched the execution.
  assert.equal((await getExecution(server, a)).status, "pending");
});

serverTest("a terminal execution closes with 4000 and its status", async (server) => {
  const failed = await createRun(server, "s4000");
  await server.call(`/v1/sessions/s4000/executions/${failed.executionId}/fail`, {
    method: "POST",
    json: { error: "nope" },
  });
  const queued = await createRun(server, "s4000");
  await server.call(`/v1/sessions/s4000/executions/${queued.executionId}/interrupt`, {
    method: "POST",
    json: {},
  });
  for (const [run, status] of [[failed, "failed"], [queued, "interrupted"]] as const) {
    const client = await IngestClient.dial(run.ingestUrl, { token: run.ingestToken });
    assert.deepEqual(await client.closed, { code: 4000, reason: `execution ${status}` });
    assert.equal(client.messages.length, 0);
  }
});

serverTest("a queued execution closes with 4009 `not active yet`", async (server) => {
  await createRun(server, "s4009");
  const queued = await createRun(server, "s4009");
  assert.equal(queued.active, false);
  const client = await IngestClient.dial(queued.ingestUrl, { token: queued.ingestToken });
  assert.deepEqual(await client.closed, { code: 4009, reason: "not active yet" });
  assert.equal((await getExecution(server, queued)).status, "pending");
});

serverTest("admission sends hello and moves pending to running", async (server) => {
  const run = await createRun(server, "s-hello", { graceMs: 4321 });
  const client = await connectRun(run, "w1/1");
  assert.deepEqual(client.messages, [{
    type: "hello",
    executionId: run.executionId,
    lastSeq: 0,
    graceMs: 4321,
    maxFrameBytes: 524288,
    maxInFlight: 1000,
    deliveredInputId: 0,
  }]);
  const exec = await getExecution(server, run);
  assert.equal(exec.status, "running");
  assert.equal(exec.health, "healthy");
  assert.ok(exec.startedAt && exec.lastHeartbeatAt);
  const statuses = (await storedEvents(server, run.sessionId))
    .filter((e) => e.streamEventType === "execution_status").map((e) => e.data);
  assert.deepEqual(statuses.at(-1), { status: "running", previousStatus: "pending", active: true });
  await client.close();
});

serverTest("X-Tether-Dial orders dials of one wrapper", async (server) => {
  const run = await createRun(server, "s-dial", LONG_GRACE);
  const first = await connectRun(run, "w1/2");

  // A late, abandoned dial (lower n) is the one refused, before any hello.
  const late = await IngestClient.dial(run.ingestUrl, { token: run.ingestToken, dial: "w1/1" });
  assert.deepEqual(await late.closed, { code: 4001, reason: "replaced" });
  assert.equal(late.messages.length, 0);
  first.send(frame(1));
  await first.ackOf(1);

  // An equal n replaces the current connection, and so does a higher one.
  const equal = await connectRun(run, "w1/2");
  assert.deepEqual(await first.closed, { code: 4001, reason: "replaced" });
  const higher = await connectRun(run, "w1/3");
  assert.equal((await equal.closed).code, 4001);
  assert.equal(higher.messages[0].lastSeq, 1);

  // Another wrapper, a missing header and a malformed one always replace.
  const other = await connectRun(run, "w2/1");
  assert.equal((await higher.closed).code, 4001);
  const missing = await connectRun(run);
  assert.equal((await other.closed).code, 4001);
  const malformed = await connectRun(run, "not a dial/x");
  assert.equal((await missing.closed).code, 4001);
  const afterUnknown = await connectRun(run, "w1/1");
  assert.equal((await malformed.closed).code, 4001);

  // Replaced sockets never start a grace: the execution stays healthy.
  const exec = await getExecution(server, run);
  assert.equal(exec.health, "healthy");
  afterUnknown.send(frame(2));
  await afterUnknown.ackOf(2);
  assert.deepEqual((await wrapperEvents(server, run)).map((e) => e.data), [{ n: 1 }, { n: 2 }]);
  await afterUnknown.close();
});

serverTest("an interrupt sends kill, and again after every hello", async (server) => {
  const run = await createRun(server, "s-kill", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const res = await server.call(
    `/v1/sessions/s-kill/executions/${run.executionId}/interrupt`,
    { method: "POST", json: {} },
  );
  assert.deepEqual(res.body, { executionId: run.executionId, status: "running" });
  const kill = await client.next((m) => m.type === "kill");
  assert.deepEqual(kill, { type: "kill", signal: "SIGTERM", reason: "User interrupted" });
  await client.close(3001);

  const again = await connectRun(run, "w/2");
  await again.next((m) => m.type === "kill");
  assert.deepEqual(again.messages.map((m) => m.type), ["hello", "kill"]);
  assert.equal(again.messages[1].reason, "User interrupted");
  // Confirming the kill ends the run.
  again.send(frame(1, "interrupted", { reason: "User interrupted" }));
  assert.deepEqual(await again.closed, { code: 4000, reason: "execution interrupted" });
  assert.equal(client.of("kill").length, 1);
});

serverTest("acks cover several frames and never run ahead of storage", async (server) => {
  const run = await createRun(server, "s-ack", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const total = 300;
  for (let seq = 1; seq <= total; seq++) client.send(frame(seq));
  while (client.acked < total) {
    const acked = client.acked;
    const stored = (await wrapperEvents(server, run)).length;
    assert.ok(stored >= acked, `ack ${acked} with only ${stored} stored`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const acks = client.of("ack").map((m) => m.seq as number);
  assert.ok(acks.length < total, `one ack per frame (${acks.length})`);
  assert.deepEqual(acks, [...acks].sort((a, b) => a - b));
  const stored = await wrapperEvents(server, run);
  assert.deepEqual(stored.map((e) => (e.data as { n: number }).n), range(1, total));
  await client.close();
});

serverTest(
  "frames of text beyond Latin-1 that arrive together are stored in commits KV takes",
  async (
    server,
  ) => {
    // 100 frames of 10,000 CJK characters (30 KB of UTF-8 each): KV keeps such text two bytes
    // per character, and a commit sized by the frames' character counts would be refused.
    const run = await createRun(server, "s-wide", LONG_GRACE);
    const client = await connectRun(run, "w/1");
    const text = "漢".repeat(10_000);
    for (let seq = 1; seq <= 100; seq++) {
      client.send({
        streamEventType: "agent",
        seq,
        data: { text },
      });
    }
    await client.ackOf(100, 30_000);
    assert.equal(client.socket.readyState, WebSocket.OPEN);
    const stored = await wrapperEvents(server, run);
    assert.equal(stored.length, 100);
    assert.ok(stored.every((e) => (e.data as { text: string }).text === text));
    await client.close();
  },
);

serverTest("a fatal frame whose event is as large as one may be still ends the execution", async (
  server,
) => {
  // The largest commit ending an execution writes: a 128-character session id, callbacks with
  // 2,048-character URLs on the ended and on the promoted execution, a 1,024-emoji error.
  const sid = "S".padEnd(128, "x");
  const body = { callbackUrl: `https://example.com/${"一".repeat(2000)}`, graceMs: 600_000 };
  const run = await createRun(server, sid, body);
  const next = await server.client.createExecution(sid, body);
  const client = await connectRun(run, "w/1");
  const timestamp = "2026-01-01T00:00:00.000Z";
  const error = "😀".repeat(1024);
  const numbers = Array(30_000).fill("1E20").join(",");
  const tail = (pad: string) =>
    envelopeTail(sid, {
      executionId: run.executionId,
      streamEventType: "error",
      timestamp,
      data: { fatal: true, error, pad, n: Array(30_000).fill(1e20) },
    });
  const pad = "x".repeat(MAX_EVENT_BYTES - storedSize(tail("")).units);
  assert.equal(storedSize(tail(pad)).units, MAX_EVENT_BYTES);
  client.send(
    `{"streamEventType":"error","seq":1,"timestamp":"${timestamp}","data":{"fatal":true,` +
      `"error":"${error}","pad":"${pad}","n":[${numbers}]}}`,
  );
  await client.ackOf(1, 20_000);
  assert.equal((await client.closed).code, 4000);
  assert.equal((await getExecution(server, run)).status, "failed");
  const promoted = await server.client.getExecution(sid, next.executionId);
  assert.equal(promoted.active, true);
});

serverTest("frames sent before hello are served after it, in order", async (server) => {
  // A slow KV keeps the admission going while the frames arrive (a simple wrapper need not
  // wait for hello).
  const run = await createRun(server, "s-early", LONG_GRACE);
  const client = await IngestClient.dial(run.ingestUrl, { token: run.ingestToken });
  client.send({ streamEventType: "output", data: { n: 0 } });
  client.send({ streamEventType: "output", seq: 1, data: { n: 1 } });
  await client.ackOf(1);
  assert.equal(client.messages[0].type, "hello");
  const stored = await wrapperEvents(server, run);
  assert.deepEqual(stored.map((e) => (e.data as { n: number }).n), [0, 1]);
  await client.close();
}, { kvDelayMs: 20 });

serverTest("a resend after a cut stores nothing twice; hello.lastSeq is the last ack", async (
  server,
) => {
  const run = await createRun(server, "s-resend", LONG_GRACE);
  const first = await connectRun(run, "w/1");
  for (let seq = 1; seq <= 10; seq++) first.send(frame(seq));
  await first.ackOf(10);
  await first.close(1000);

  const second = await connectRun(run, "w/2");
  assert.equal(second.messages[0].lastSeq, 10);
  // Resend everything (as a wrapper that lost track would), then more, then cut at once.
  for (let seq = 1; seq <= 25; seq++) second.send(frame(seq));
  second.socket.close(3002);
  const lastAck = second.acked;
  await second.closed;

  const third = await connectRun(run, "w/3");
  const lastSeq = third.messages[0].lastSeq as number;
  // Frames that arrived before the close are committed, and acked ones certainly are.
  assert.ok(lastSeq >= Math.max(10, lastAck), `lastSeq ${lastSeq} < ack ${lastAck}`);
  for (let seq = 1; seq <= 30; seq++) third.send(frame(seq));
  await third.ackOf(30);
  // A resend of an acked frame is acked again.
  third.send(frame(5));
  await third.until(() => third.of("ack").length >= 2 && third.of("ack").at(-1)!.seq === 30);
  const stored = await wrapperEvents(server, run);
  assert.deepEqual(stored.map((e) => (e.data as { n: number }).n), range(1, 30));
  await third.close();

  const fourth = await connectRun(run, "w/4");
  assert.equal(fourth.messages[0].lastSeq, third.acked);
  await fourth.close();
});

serverTest("SEQ_GAP names the expected seq once; gap frames are dropped", async (server) => {
  const run = await createRun(server, "s-gap", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send(frame(3));
  client.send(frame(4));
  client.send(frame(1));
  await client.ackOf(1);
  const gaps1 = client.of("error");
  assert.deepEqual(gaps1, [{
    type: "error",
    code: "SEQ_GAP",
    message: gaps1[0]?.message,
    seq: 3,
    expectedSeq: 1,
  }]);
  client.send(frame(3));
  await client.until(() => client.of("error").length === 2, "second SEQ_GAP");
  assert.equal(client.of("error")[1].expectedSeq, 2);
  // The gap did not use up seq 3: it is stored once 2 arrives.
  client.send(frame(2));
  client.send(frame(3));
  await client.ackOf(3);
  assert.equal(client.of("error").length, 2);
  const stored = await wrapperEvents(server, run);
  assert.deepEqual(stored.map((e) => (e.data as { n: number }).n), [1, 2, 3]);
  await client.close();
});

serverTest("a rejected next frame uses up its seq and is acked at once", async (server) => {
  const run = await createRun(server, "s-reject", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send({ streamEventType: "no spaces allowed", seq: 1, data: {} });
  await client.ackOf(1);
  const error = client.of("error")[0];
  assert.equal(error.code, "INVALID_FRAME");
  assert.equal(error.seq, 1);
  client.send(frame(2));
  await client.ackOf(2);
  assert.equal(client.of("error").length, 1);
  assert.deepEqual((await wrapperEvents(server, run)).map((e) => e.data), [{ n: 2 }]);
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  await client.close();
});

serverTest("frames without seq are stored; timestamps are kept when ISO-8601", async (server) => {
  const run = await createRun(server, "s-noseq", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const ts = "2024-01-02T03:04:05.678Z";
  client.send({ streamEventType: "output", timestamp: ts, data: { a: 1 } });
  client.send({ streamEventType: "output", timestamp: "yesterday", data: { a: 2 } });
  client.send({ streamEventType: "agent", timestamp: 12, data: { a: 3 } });
  client.send({ streamEventType: "progress" });
  await eventually(async () => (await wrapperEvents(server, run)).length === 4, "4 events");
  const stored = await wrapperEvents(server, run);
  assert.deepEqual(stored.map((e) => [e.streamEventType, e.data]), [
    ["output", { a: 1 }],
    ["output", { a: 2 }],
    ["agent", { a: 3 }],
    ["progress", null],
  ]);
  assert.equal(stored[0].timestamp, ts);
  for (const e of stored.slice(1)) {
    assert.ok(Math.abs(Date.parse(e.timestamp) - Date.now()) < 60_000, e.timestamp);
  }
  assert.equal(client.of("ack").length, 0);
  assert.equal(client.of("error").length, 0);
  await client.close();
});

serverTest("heartbeat and pong are neither stored nor broadcast", async (server) => {
  const run = await createRun(server, "s-live", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const viewer = await WsViewer.open(server.wsUrl, run.sessionId);
  client.send({ streamEventType: "heartbeat" });
  client.send({ streamEventType: "pong", data: {} });
  client.send(frame(1));
  await client.ackOf(1);
  await viewer.until((events) => events.some((e) => e.streamEventType === "output"));
  const types = (await storedEvents(server, run.sessionId)).map((e) => e.streamEventType);
  assert.deepEqual(types, ["execution_status", "execution_status", "output"]);
  assert.deepEqual(viewer.events.map((e) => e.streamEventType), types);
  assert.equal(client.of("error").length, 0);
  await viewer.close();
  await client.close();
});

serverTest("the service pings a quiet connection", async (server) => {
  const run = await createRun(server, "s-ping", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  await client.next((m) => m.type === "ping", 3000);
  assert.deepEqual(client.of("ping")[0], { type: "ping" });
  client.send({ streamEventType: "pong" });
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  await client.close();
}, { config: { pingMs: 100 } });

const terminalCases: [string, unknown, string, string | undefined][] = [
  ["complete", { exitCode: 0 }, "completed", undefined],
  ["interrupted", {}, "interrupted", "User interrupted"],
  ["interrupted", { reason: "stopped by user" }, "interrupted", "stopped by user"],
  ["error", { fatal: true, error: "boom", message: "ignored" }, "failed", "boom"],
  ["error", { fatal: true, message: "from message" }, "failed", "from message"],
  ["error", { fatal: true, code: "X" }, "failed", "Fatal error"],
];

serverTest("terminal frames are stored, acked, then closed with 4000", async (server) => {
  for (const [i, [type, data, status, error]] of terminalCases.entries()) {
    const run = await createRun(server, `s-term-${i}`, LONG_GRACE);
    const client = await connectRun(run, "w/1");
    client.send(frame(1));
    client.send({ streamEventType: type, seq: 2, data });
    // Frames after the terminal one are neither stored nor acked.
    client.send(frame(3));
    client.send(frame(undefined, "output", { late: true }));
    assert.deepEqual(await client.closed, { code: 4000, reason: `execution ${status}` });
    assert.equal(client.acked, 2, `${type} acked before the close`);
    const exec = await getExecution(server, run);
    assert.equal(exec.status, status);
    assert.equal(exec.error, error);
    assert.equal(exec.health, null);
    const events = (await storedEvents(server, run.sessionId)).slice(2);
    assert.deepEqual(events.map((e) => e.streamEventType), [
      "output",
      type,
      "execution_status",
    ]);
    assert.deepEqual(events[1].data, data);
    assert.deepEqual(
      events[2].data,
      error === undefined
        ? { status, previousStatus: "running", active: false }
        : { status, previousStatus: "running", active: false, error },
    );
  }
});

serverTest("a non-fatal error frame is just stored and the socket stays open", async (server) => {
  const run = await createRun(server, "s-nonfatal", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send(frame(1, "error", { error: "minor", fatal: false }));
  client.send(frame(2, "error"));
  client.send(frame(3));
  await client.ackOf(3);
  assert.equal((await getExecution(server, run)).status, "running");
  assert.deepEqual(
    (await wrapperEvents(server, run)).map((e) => e.streamEventType),
    ["error", "error", "output"],
  );
  await client.close();
});

serverTest("a close by the wrapper starts a grace; service closes do not", async (server) => {
  for (const code of [1000, 1001, 4321]) {
    const run = await createRun(server, `s-grace-${code}`, LONG_GRACE);
    if (code === 1001) {
      // WebSocket clients may not send 1001; a raw socket can.
      const url = new URL(run.ingestUrl);
      const conn = await rawUpgrade(
        { hostname: url.hostname, port: Number(url.port) },
        url.pathname,
        { authorization: `Bearer ${run.ingestToken}` },
      );
      await conn.read(new Uint8Array(4096)); // hello
      await rawClose(conn, 1001);
      conn.close();
    } else {
      const client = await connectRun(run, "w/1");
      await client.close(code, "bye");
    }
    await eventually(
      async () => (await getExecution(server, run)).health === "disconnected",
      `grace after ${code}`,
    );
    const grace = await server.kv.get<{ wsCloseCode: number }>(keys.grace(run.sessionId));
    assert.equal(grace.value?.wsCloseCode, code);
    // Reconnecting cancels it.
    const back = await connectRun(run, "w/2");
    assert.equal((await getExecution(server, run)).health, "healthy");
    await back.close();
  }
  // 4000 from the service: the execution is over, no grace.
  const done = await createRun(server, "s-grace-4000", LONG_GRACE);
  const client = await connectRun(done, "w/1");
  client.send(frame(1, "complete", { exitCode: 0 }));
  assert.equal((await client.closed).code, 4000);
  const exec = await getExecution(server, done);
  assert.equal(exec.status, "completed");
  const session = await server.call(`/v1/sessions/s-grace-4000`);
  assert.equal(session.body.activeExecutionId, null);
});

/** A real KV whose commits each wait `delay.ms` first (a slow store: frames pile up uncommitted). */
async function slowCommitKv(delay: { ms: number }): Promise<Deno.Kv> {
  const kv = await Deno.openKv(":memory:");
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () => new Promise((r) => setTimeout(r, delay.ms)).then(commit);
          return op;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

for (const numbered of [false, true]) {
  Deno.test({
    name: `more than TETHER_MAX_PENDING_BYTES uncommitted closes with 1008 (frames ${
      numbered ? "with" : "without"
    } seq)`,
    async fn() {
      const slowness = { ms: 0 };
      const server = await startServer({
        kv: await slowCommitKv(slowness),
        config: { maxPendingBytes: 5000, maxFrameBytes: 4096 },
      });
      try {
        const run = await createRun(server, "s-pending", LONG_GRACE);
        const client = await connectRun(run, "w/1");
        const pad = "x".repeat(1900);
        // Under the limit, one frame at a time: never closed.
        for (let n = 1; n <= 5; n++) {
          client.send(frame(numbered ? n : undefined, "output", { n, pad }));
          if (numbered) await client.ackOf(n);
          else {await eventually(async () =>
              (await wrapperEvents(server, run)).length === n, "stored");}
        }
        assert.equal(client.closeInfo, undefined);
        // Commits slow down: three ~2 KB frames wait at once, over 5000 bytes.
        slowness.ms = 300;
        for (let n = 6; n <= 8; n++) {
          client.send(frame(numbered ? n : undefined, "output", { n, pad }));
        }
        const closed = await client.closed;
        assert.deepEqual(closed, { code: 1008, reason: "too many bytes waiting to be stored" });
        const metrics = await (await server.api("/metrics")).text();
        assert.match(metrics, /tether_frames_rejected_total\{code="PENDING_BYTES"\} 1/);
      } finally {
        await server.close();
      }
    },
  });
}

Deno.test("a connection's frame commits read nothing: admission's commit and each commit's own writes are taken as reads (still checked)", async () => {
  const inner = await Deno.openKv(":memory:");
  let reads = 0;
  const kv = new Proxy(inner, {
    get(target, prop) {
      if (prop === "getMany" || prop === "get") {
        return (...args: unknown[]) => {
          reads++;
          return (Reflect.get(target, prop) as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  // Deadlines off: only the connection touches KV while frames flow.
  const server = await startServer({ kv, config: { timerWakeups: [] } });
  try {
    const run = await createRun(server, "no-reads");
    const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    const before = reads;
    for (let n = 1; n <= 5; n++) {
      client.send(frame(n));
      await client.ackOf(n);
    }
    assert.equal(reads - before, 0, "no KV read for five frame commits");
    // Another writer changes the execution (an input): the next commit's check fails, it reads
    // afresh and stores the frame once.
    const res = await server.api(`/v1/sessions/no-reads/executions/${run.executionId}/input`, {
      method: "POST",
      json: { data: { text: "hi" } },
    });
    assert.equal(res.status, 202);
    client.send(frame(6));
    await client.ackOf(6);
    const outputs = (await wrapperEvents(server, run)).filter((e) =>
      e.streamEventType === "output"
    );
    assert.deepEqual(outputs.map((e) => (e.data as { n: number }).n), [1, 2, 3, 4, 5, 6]);
    await client.close();
  } finally {
    await server.close();
  }
});
