/**
 * Bad input on the ingest WebSocket (PROTOCOL.md 5.2, 5.3, 10): every kind of garbage gets
 * the documented error frame or close code, nothing of it is stored, the socket stays open
 * after an error frame, and other sessions carry on untouched.
 */
import assert from "node:assert/strict";
import {
  connectRun,
  createRun,
  eventually,
  getExecution,
  IngestClient,
  LONG_GRACE,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";

/** Event types stored for the session, the service's own `execution_status` left out. */
async function storedTypes(server: TestServer, sessionId: string): Promise<string[]> {
  return (await storedEvents(server, sessionId))
    .map((e) => e.streamEventType)
    .filter((t) => t !== "execution_status");
}

/** A healthy neighbour session whose wrapper keeps streaming while another misbehaves. */
async function neighbour(server: TestServer) {
  const run = await createRun(server, "neighbour", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  let seq = 0;
  return {
    /** Sends one frame and waits for its ack. */
    async roundTrip() {
      client.send({ streamEventType: "output", seq: ++seq, data: { seq } });
      await client.ackOf(seq);
    },
    async check() {
      await this.roundTrip();
      assert.equal(client.socket.readyState, WebSocket.OPEN);
      assert.deepEqual(await storedTypes(server, "neighbour"), Array(seq).fill("output"));
      assert.equal((await getExecution(server, run)).status, "running");
      await client.close();
    },
  };
}

const INVALID: [string, unknown][] = [
  ["not JSON", "{nope"],
  ["a JSON string", JSON.stringify("output")],
  ["a JSON number", "42"],
  ["null", "null"],
  ["an array", JSON.stringify([{ streamEventType: "output" }])],
  ["no streamEventType", { data: {} }],
  ["a numeric streamEventType", { streamEventType: 5 }],
  ["an empty streamEventType", { streamEventType: "" }],
  ["a streamEventType with spaces", { streamEventType: "two words" }],
  ["a 65-character streamEventType", { streamEventType: "x".repeat(65) }],
  ["reserved execution_status", { streamEventType: "execution_status", data: {} }],
  ["reserved wrapper_disconnected", { streamEventType: "wrapper_disconnected", data: {} }],
  ["a string seq", { streamEventType: "output", seq: "1" }],
  ["seq 0", { streamEventType: "output", seq: 0 }],
  ["a fractional seq", { streamEventType: "output", seq: 1.5 }],
  ["complete without exitCode", { streamEventType: "complete", data: {} }],
  ["complete with a string exitCode", { streamEventType: "complete", data: { exitCode: "0" } }],
  ["interrupted with a numeric reason", { streamEventType: "interrupted", data: { reason: 1 } }],
  ["error with a string fatal", { streamEventType: "error", data: { fatal: "yes" } }],
  ["a heartbeat with a seq", { streamEventType: "heartbeat", seq: 1 }],
];

serverTest("invalid frames get INVALID_FRAME, are not stored, keep the socket open", async (
  server,
) => {
  const other = await neighbour(server);
  const run = await createRun(server, "bad", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  for (const [i, [what, frame]] of INVALID.entries()) {
    client.send(typeof frame === "string" ? frame : JSON.stringify(frame));
    await client.until(() => client.of("error").length === i + 1, what);
    const error = client.of("error")[i];
    assert.equal(error.code, "INVALID_FRAME", what);
    assert.equal(typeof error.message, "string", what);
    await other.roundTrip();
  }
  // The socket is still open and usable, the execution untouched. (The numbered heartbeat
  // used up seq 1.)
  assert.equal(client.acked, 1);
  client.send({ streamEventType: "output", seq: 2, data: {} });
  await client.ackOf(2);
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  assert.deepEqual(await storedTypes(server, "bad"), ["output"]);
  assert.equal((await getExecution(server, run)).status, "running");
  await client.close();
  await other.check();
});

serverTest("an invalid numbered frame names its seq in the error", async (server) => {
  const run = await createRun(server, "bad-seq", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send({ streamEventType: "execution_status", seq: 1, data: {} });
  await client.ackOf(1);
  assert.deepEqual(
    client.of("error").map((e) => [e.code, e.seq]),
    [["INVALID_FRAME", 1]],
  );
  assert.deepEqual(await storedTypes(server, "bad-seq"), []);
  await client.close();
});

serverTest("binary frames get BINARY_NOT_SUPPORTED and are not stored", async (server) => {
  const other = await neighbour(server);
  const run = await createRun(server, "binary", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  client.send(new TextEncoder().encode(JSON.stringify({ streamEventType: "output", seq: 1 })));
  const error = await client.next((m) => m.type === "error");
  assert.equal(error.code, "BINARY_NOT_SUPPORTED");
  client.send({ streamEventType: "output", seq: 1, data: { text: true } });
  await client.ackOf(1);
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  assert.deepEqual(await storedTypes(server, "binary"), ["output"]);
  await client.close();
  await other.check();
});

serverTest("an oversize frame closes with 1009 and stores nothing", async (server) => {
  const other = await neighbour(server);
  const run = await createRun(server, "oversize", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  assert.equal(client.messages[0].maxFrameBytes, 2048);
  // Just under the limit is fine, one byte over is not (counted in UTF-8 bytes).
  const fits = JSON.stringify({ streamEventType: "output", seq: 1, data: "" });
  client.send(fits.replace(`""`, `"${"a".repeat(2048 - fits.length)}"`));
  await client.ackOf(1);
  const tooBig = JSON.stringify({ streamEventType: "output", seq: 2, data: "" });
  client.send(tooBig.replace(`""`, `"${"é".repeat((2049 - tooBig.length) / 2 + 1)}"`));
  assert.equal((await client.closed).code, 1009);
  assert.deepEqual(await storedTypes(server, "oversize"), ["output"]);
  // The service's 1009 is a connection loss for the wrapper: a grace starts.
  await eventually(
    async () => (await getExecution(server, run)).health === "disconnected",
    "grace",
  );
  const back = await connectRun(run, "w/2");
  assert.equal(back.messages[0].lastSeq, 1);
  await back.close();
  await other.check();
}, { config: { maxFrameBytes: 2048 } });

serverTest(
  "a frame whose data grows past one commit once stored is refused, not retried forever",
  async (
    server,
  ) => {
    const other = await neighbour(server);
    const run = await createRun(server, "grows", LONG_GRACE);
    const client = await connectRun(run, "w/1");
    // 200 KB of `1E20`s: within the frame limit, but `JSON.stringify` writes each number as
    // 21 digits, and the envelope would not fit one KV commit.
    const numbers = Array(40_000).fill("1E20").join(",");
    client.send(`{"streamEventType":"agent","seq":1,"data":[${numbers}]}`);
    await client.ackOf(1); // its seq is used up: the frames after it are not held back
    assert.deepEqual(client.of("error").map((e) => [e.code, e.seq]), [["INVALID_FRAME", 1]]);
    client.send({ streamEventType: "agent", seq: 2, data: [1e20] });
    await client.ackOf(2);
    assert.equal(client.socket.readyState, WebSocket.OPEN);
    assert.deepEqual(await storedTypes(server, "grows"), ["agent"]);
    await client.close();
    await other.check();
  },
);

serverTest("more than maxPendingBytes sent before hello closes with 1008", async (server) => {
  // A slow KV keeps the admission going while the bytes pile up.
  const run = await createRun(server, "early-flood", LONG_GRACE);
  const client = await IngestClient.dial(run.ingestUrl, { token: run.ingestToken });
  for (let i = 0; i < 4; i++) client.send({ streamEventType: "output", data: "x".repeat(500) });
  assert.equal((await client.closed).code, 1008);
  assert.deepEqual(await storedTypes(server, "early-flood"), []);
}, { kvDelayMs: 20, config: { maxPendingBytes: 1024 } });

serverTest("a flood over the frame rate for 3 seconds closes with 1008", async (server) => {
  const other = await neighbour(server);
  const run = await createRun(server, "flood", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  // 4 frames every 50 ms = 80/s against a limit of 40/s.
  const started = Date.now();
  let seq = 0;
  while (!client.closeInfo && Date.now() - started < 6000) {
    for (let i = 0; i < 4; i++) client.send({ streamEventType: "output", seq: ++seq, data: {} });
    await new Promise((r) => setTimeout(r, 50));
  }
  const closed = await client.closed;
  assert.equal(closed.code, 1008);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 2000, `closed after ${elapsed} ms, before 3 seconds over the limit`);
  // Frames over the limit were not stored.
  const stored = (await storedTypes(server, "flood")).length;
  assert.ok(stored < seq, `${stored} of ${seq} stored`);
  await other.check();
}, { config: { maxFramesPerSec: 40 } });

serverTest("a rate just under the limit is never closed", async (server) => {
  const run = await createRun(server, "steady", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const started = Date.now();
  let seq = 0;
  while (Date.now() - started < 3500) {
    client.send({ streamEventType: "output", seq: ++seq, data: {} });
    await new Promise((r) => setTimeout(r, 40)); // ≤ 25/s against a limit of 40/s
  }
  await client.ackOf(seq);
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  await client.close();
}, { config: { maxFramesPerSec: 40 } });

serverTest("more than twice maxInFlight unacknowledged frames close with 1008", async (server) => {
  const run = await createRun(server, "inflight", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  assert.equal(client.messages[0].maxInFlight, 2);
  // Thousands of frames sent at once: the window (2 × 2) is overrun long before acks return.
  for (let seq = 1; seq <= 3000; seq++) {
    client.send({ streamEventType: "output", seq, data: { seq } });
  }
  assert.equal((await client.closed).code, 1008);
  const stored = (await storedTypes(server, "inflight")).length;
  assert.ok(stored < 3000, `${stored} stored`);
}, { config: { maxInFlight: 2 } });
