import assert from "node:assert/strict";
import { utf8Bytes } from "../src/bytes.ts";
import { frameBytes, Outbox } from "./outbox.ts";

const clock = () => new Date("2026-01-02T03:04:05.678Z");
const frame = (n: number) => ({ streamEventType: "agent", data: { n } });
const hello = (lastSeq = 0, maxInFlight = 1000) => ({ lastSeq, maxInFlight, maxFrameBytes: 1e6 });
const parsed = (texts: string[]) => texts.map((t) => JSON.parse(t));
const seqs = (texts: string[]) => parsed(texts).map((f) => f.seq);

Deno.test("seq is given at first send, with the push time as timestamp", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello(10));
  outbox.push(frame(1));
  assert.deepEqual(parsed(outbox.take()), [
    { seq: 11, streamEventType: "agent", timestamp: "2026-01-02T03:04:05.678Z", data: { n: 1 } },
  ]);
  assert.equal(outbox.nextSeq, 12);
});

Deno.test("the window: at most maxInFlight unacknowledged, acks make room", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello(0, 2));
  for (let i = 1; i <= 5; i++) outbox.push(frame(i));
  assert.deepEqual(seqs(outbox.take()), [1, 2]);
  assert.deepEqual(outbox.take(), []);
  outbox.ack(1);
  assert.deepEqual(seqs(outbox.take()), [3]);
  outbox.ack(3);
  assert.deepEqual(seqs(outbox.take()), [4, 5]);
  assert.equal(outbox.unacknowledged, 2);
});

Deno.test("resume resends kept frames after lastSeq, then the marker, then held frames", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello());
  for (let i = 1; i <= 4; i++) outbox.push(frame(i));
  outbox.take();
  outbox.push(frame(5)); // held back while disconnected
  outbox.resume(hello(2, 1000));
  const texts = parsed(outbox.take());
  assert.deepEqual(texts.map((f) => [f.seq, f.streamEventType]), [
    [3, "agent"],
    [4, "agent"],
    [5, "wrapper_resumed"],
    [6, "agent"],
  ]);
  assert.deepEqual(texts[2].data, { bufferedEvents: 1, eventsLost: false, droppedEvents: 0 });
});

Deno.test("a smaller window after a reconnect resends in slices", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello(0, 10));
  for (let i = 1; i <= 5; i++) outbox.push(frame(i));
  outbox.take();
  outbox.resume(hello(0, 2));
  assert.deepEqual(seqs(outbox.take()), [1, 2]);
  outbox.ack(2);
  assert.deepEqual(seqs(outbox.take()), [3, 4]);
});

Deno.test("rewind resends from expectedSeq; an unknown seq changes nothing", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello());
  for (let i = 1; i <= 4; i++) outbox.push(frame(i));
  outbox.take();
  assert.equal(outbox.rewind(9), false);
  assert.equal(outbox.rewind(2), true);
  assert.deepEqual(seqs(outbox.take()), [2, 3, 4]);
  outbox.ack(4);
  assert.equal(outbox.rewind(2), false);
});

Deno.test("limits: frames and bytes; drops counted; terminal frames kept; nothing after them", () => {
  const outbox = new Outbox({ now: clock, bufferLimit: 2, bufferBytes: 1000 });
  assert.equal(outbox.push(frame(1)), "queued");
  assert.equal(outbox.push({ streamEventType: "output", data: "x".repeat(2000) }), "dropped");
  assert.equal(outbox.push(frame(2)), "queued");
  assert.equal(outbox.push(frame(3)), "dropped");
  assert.equal(outbox.push({ streamEventType: "error", data: { fatal: true } }), "queued");
  assert.equal(outbox.hasTerminal, true);
  assert.equal(outbox.push(frame(4)), "dropped");
  assert.equal(outbox.dropped, 2); // a frame after the terminal one is refused, not lost
  outbox.resume(hello());
  const texts = parsed(outbox.take());
  assert.deepEqual(texts[0].data, { bufferedEvents: 3, eventsLost: true, droppedEvents: 2 });
  assert.equal(outbox.terminalAcked, false);
  outbox.ack(4);
  assert.equal(outbox.terminalAcked, true);
});

Deno.test("frameBytes bounds the real size", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume({ lastSeq: 9_000_000_000_000_000 - 1, maxInFlight: 10, maxFrameBytes: 1e6 });
  const f = { streamEventType: "agent", data: { text: "é😀" } };
  outbox.push(f);
  const [text] = outbox.take();
  assert.ok(utf8Bytes(text) <= frameBytes(f));
});

Deno.test("a kept frame over a lowered frame limit is resent as a stub", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello());
  outbox.push({ streamEventType: "agent", data: { text: "z".repeat(500) } });
  outbox.take();
  outbox.resume({ lastSeq: 0, maxInFlight: 10, maxFrameBytes: 200 });
  const [stub] = parsed(outbox.take());
  assert.equal(stub.seq, 1);
  assert.equal(stub.data.truncated, true);
});

Deno.test("drops not reported yet go out in a marker before the terminal frame", () => {
  const outbox = new Outbox({ now: clock, bufferLimit: 3 });
  outbox.resume(hello(0, 1)); // connected, one frame in flight at a time
  for (let n = 1; n <= 3; n++) assert.equal(outbox.push(frame(n)), "queued");
  assert.equal(outbox.push(frame(4)), "dropped");
  assert.equal(outbox.push({ streamEventType: "complete", data: { exitCode: 0 } }), "queued");
  const sent: string[] = [];
  for (let seq = 1; seq <= 6; seq++) {
    sent.push(...outbox.take());
    outbox.ack(seq);
  }
  const frames = parsed(sent);
  assert.deepEqual(frames.map((f) => [f.seq, f.streamEventType]), [
    [1, "agent"],
    [2, "agent"],
    [3, "agent"],
    [4, "wrapper_resumed"],
    [5, "complete"],
  ]);
  assert.deepEqual(frames[3].data, { bufferedEvents: 1, eventsLost: true, droppedEvents: 1 });
});

Deno.test("a terminal frame over a lowered frame limit is cut to a stub that still ends the run", () => {
  const outbox = new Outbox({ now: clock });
  outbox.resume(hello());
  outbox.push({
    streamEventType: "error",
    data: { fatal: true, code: "AGENT_PROTOCOL_ERROR", error: "x".repeat(5000) },
  });
  outbox.take(); // sent, then the connection is lost before its ack
  outbox.resume({ lastSeq: 0, maxInFlight: 10, maxFrameBytes: 1024 }); // a lower limit
  const [stub] = parsed(outbox.take());
  assert.equal(stub.streamEventType, "error");
  assert.equal(stub.data.fatal, true);
  assert.equal(stub.data.code, "AGENT_PROTOCOL_ERROR");
  assert.equal(stub.data.truncated, true);
});
