import assert from "node:assert/strict";
import { agentExitFrame, fitText, interruptedFrame, kilocodeFrame, lineFrame } from "./frames.ts";
import { frameBytes } from "./outbox.ts";
import { MAX_JSON_DEPTH, messageTooDeep } from "../src/json_depth.ts";

const line = (text: string, cut = false) => ({
  text,
  bytes: new TextEncoder().encode(text).length,
  cut,
});

Deno.test("lineFrame: only a JSON object on stdout is an agent frame", () => {
  assert.deepEqual(lineFrame(line('{"a":1}'), "stdout", 1e6), {
    streamEventType: "agent",
    data: { a: 1 },
  });
  for (const text of ["[1]", "null", '"s"', "{not json", "12"]) {
    assert.deepEqual(lineFrame(line(text), "stdout", 1e6), {
      streamEventType: "output",
      data: { stream: "stdout", text },
    });
  }
  assert.deepEqual(lineFrame(line('{"a":1}'), "stderr", 1e6), {
    streamEventType: "output",
    data: { stream: "stderr", text: '{"a":1}' },
  });
});

Deno.test("lineFrame: an oversize line is truncated to fit, whole characters, with its size", () => {
  for (const unit of ["a", "é", "😀", '"', "\u0001"]) {
    const text = unit.repeat(3000);
    const frame = lineFrame(line(text), "stdout", 2000);
    const data = frame.data as { text: string; truncated: boolean; bytes: number };
    assert.equal(data.truncated, true);
    assert.equal(data.bytes, new TextEncoder().encode(text).length);
    assert.ok(frameBytes(frame) <= 2000, unit);
    assert.ok(text.startsWith(data.text) && data.text.length % unit.length === 0, unit);
    // One more character would not have fit.
    const longer = {
      ...frame,
      data: { ...data, text: text.slice(0, data.text.length + unit.length) },
    };
    assert.ok(frameBytes(longer) > 2000, unit);
  }
});

Deno.test("lineFrame: a cut line is truncated output even when it starts like JSON", () => {
  const frame = lineFrame({ text: '{"a":"xxxx', bytes: 99_999, cut: true }, "stdout", 2000);
  assert.deepEqual(frame.data, {
    stream: "stdout",
    text: '{"a":"xxxx',
    truncated: true,
    bytes: 99_999,
  });
});

Deno.test("kilocodeFrame: event name, data.type, the default, keep-alives, raw text", () => {
  const ev = (data: string, event?: string) => ({ event, data, id: undefined });
  assert.deepEqual(kilocodeFrame(ev('{"type":"a.b","properties":{}}'), 1e6), {
    name: "a.b",
    frame: { streamEventType: "kilocode", data: { type: "a.b", properties: {}, event: "a.b" } },
  });
  assert.deepEqual(kilocodeFrame(ev('{"type":"a.b"}', "named"), 1e6).frame?.data, {
    type: "a.b",
    event: "named",
  });
  assert.deepEqual(kilocodeFrame(ev("hi"), 1e6).frame?.data, { raw: "hi", event: "message" });
  assert.deepEqual(kilocodeFrame(ev('{"type":"server.heartbeat"}'), 1e6), {
    name: "server.heartbeat",
  });
  assert.deepEqual(kilocodeFrame(ev("{}", "server.connected"), 1e6), { name: "server.connected" });
  const big = kilocodeFrame(ev(JSON.stringify({ type: "x", text: "y".repeat(5000) })), 2000).frame!;
  assert.ok(frameBytes(big) <= 2000);
  assert.deepEqual(Object.keys(big.data as object), ["raw", "event", "truncated", "bytes"]);
});

Deno.test("fitText returns the empty prefix when nothing fits", () => {
  const frame = fitText((text) => ({ streamEventType: "output", data: { text } }), "abc", 10);
  assert.deepEqual(frame.data, { text: "" });
});

Deno.test("terminal frames", () => {
  assert.deepEqual(interruptedFrame(undefined).data, { reason: "User interrupted" });
  assert.deepEqual(agentExitFrame(2, null).data, {
    fatal: true,
    code: "AGENT_EXIT",
    exitCode: 2,
    error: "agent exited with code 2",
  });
});

/** A JSON object text nested `depth` levels: `{"a":{"a":…{}}}`. */
const nested = (depth: number) => '{"a":'.repeat(depth - 1) + "{}" + "}".repeat(depth - 1);

Deno.test("lineFrame and kilocodeFrame: an object nested deeper than 64 levels is kept as text", () => {
  const deepest = nested(MAX_JSON_DEPTH);
  assert.equal(lineFrame(line(deepest), "stdout", 1e6).streamEventType, "agent");
  assert.equal(messageTooDeep(lineFrame(line(deepest), "stdout", 1e6)), false);
  const tooDeepText = nested(MAX_JSON_DEPTH + 1);
  const frame = lineFrame(line(tooDeepText), "stdout", 1e6);
  assert.deepEqual(frame, {
    streamEventType: "output",
    data: { stream: "stdout", text: tooDeepText },
  });
  const cut = lineFrame(line(tooDeepText), "stdout", 200).data as Record<string, unknown>;
  assert.equal(cut.truncated, true);
  assert.equal(cut.bytes, tooDeepText.length);

  const sse = (data: string) => ({ event: "step", data, id: undefined });
  assert.equal(messageTooDeep(kilocodeFrame(sse(deepest), 1e6).frame), false);
  assert.deepEqual(kilocodeFrame(sse(deepest), 1e6).frame?.data, {
    ...JSON.parse(deepest),
    event: "step",
  });
  assert.deepEqual(kilocodeFrame(sse(tooDeepText), 1e6).frame, {
    streamEventType: "kilocode",
    data: { raw: tooDeepText, event: "step" },
  });
});
