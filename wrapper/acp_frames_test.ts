import assert from "node:assert/strict";
import {
  acpInputIgnoredFrame,
  acpTurnFrame,
  acpUpdateFrame,
  agentProtocolErrorFrame,
  permissionRequestFrame,
} from "./acp_frames.ts";
import { frameBytes } from "./outbox.ts";
import { jsonDepth, MAX_JSON_DEPTH, messageTooDeep } from "../src/json_depth.ts";

const LIMIT = 2048;
const big = "x".repeat(5000);

Deno.test("acp frames: an update that fits is stored as it came", () => {
  const update = { sessionUpdate: "plan", entries: [{ content: "a", status: "pending" }] };
  assert.deepEqual(acpUpdateFrame(update, LIMIT), { streamEventType: "acp", data: update });
});

Deno.test("acp frames: a text chunk too large keeps the start of its text", () => {
  const frame = acpUpdateFrame({
    sessionUpdate: "agent_message_chunk",
    content: { type: "text", text: big },
  }, LIMIT);
  const data = frame.data as { content: { text: string }; truncated: boolean; bytes: number };
  assert.ok(frameBytes(frame) <= LIMIT);
  assert.equal(data.truncated, true);
  assert.ok(data.bytes > 5000);
  assert.ok(data.content.text.length > 1000 && big.startsWith(data.content.text));
});

Deno.test("acp frames: any other update too large keeps what identifies it", () => {
  const update = {
    sessionUpdate: "tool_call_update",
    toolCallId: "t1",
    status: "completed",
    content: [{ type: "diff", path: "/a", newText: big }],
  };
  const frame = acpUpdateFrame(update, LIMIT);
  assert.deepEqual(frame.data, {
    sessionUpdate: "tool_call_update",
    toolCallId: "t1",
    status: "completed",
    truncated: true,
    bytes: JSON.stringify(update).length,
  });
  assert.ok(frameBytes(frame) <= LIMIT);
});

Deno.test("acp frames: a permission request keeps its options whatever the tool call's size", () => {
  const options = [{ optionId: "allow", name: "Allow", kind: "allow_once" }];
  const small = permissionRequestFrame(3, { toolCallId: "t", title: "Edit" }, options, LIMIT);
  assert.deepEqual(small, {
    streamEventType: "permission_request",
    data: { requestId: 3, toolCall: { toolCallId: "t", title: "Edit" }, options },
  });
  const large = permissionRequestFrame(4, { toolCallId: "t", rawInput: big }, options, LIMIT);
  const data = large.data as { toolCall: Record<string, unknown>; options: unknown };
  assert.deepEqual(data.options, options);
  assert.equal(data.toolCall.toolCallId, "t");
  assert.equal(data.toolCall.truncated, true);
  assert.ok(frameBytes(large) <= LIMIT);
});

Deno.test("acp frames: turn ends, ignored inputs and the protocol error", () => {
  assert.deepEqual(acpTurnFrame(2, { stopReason: "cancelled" }, LIMIT), {
    streamEventType: "acp_turn",
    data: { inputId: 2, stopReason: "cancelled" },
  });
  assert.deepEqual(acpInputIgnoredFrame(5, [1], "why", LIMIT).data, {
    inputId: 5,
    data: [1],
    reason: "why",
  });
  assert.deepEqual(acpInputIgnoredFrame(5, big, "why", LIMIT).data, {
    inputId: 5,
    reason: "why",
    truncated: true,
  });
  assert.deepEqual(agentProtocolErrorFrame("session/new failed: no", LIMIT).data, {
    fatal: true,
    code: "AGENT_PROTOCOL_ERROR",
    error: "session/new failed: no",
  });
});

Deno.test("acp frames: a turn end or protocol error too large keeps its fields, cutting the text", () => {
  // Cut to a stub by the outbox, they would lose what matches the turn or ends the run.
  const turn = acpTurnFrame(7, { stopReason: "error", error: big }, LIMIT);
  const turnData = turn.data as { inputId: number; stopReason: string; error: string };
  assert.equal(turnData.inputId, 7);
  assert.equal(turnData.stopReason, "error");
  assert.ok(turnData.error.length > 1000 && big.startsWith(turnData.error));
  assert.ok(frameBytes(turn) <= LIMIT);
  const failure = agentProtocolErrorFrame(`initialize failed: ${big}`, LIMIT);
  const failureData = failure.data as { fatal: boolean; code: string; error: string };
  assert.equal(failureData.fatal, true);
  assert.equal(failureData.code, "AGENT_PROTOCOL_ERROR");
  assert.ok(failureData.error.startsWith("initialize failed: x"));
  assert.ok(frameBytes(failure) <= LIMIT);
});

Deno.test("acp frames: a permission request with options too large keeps what answers them", () => {
  const options = Array.from({ length: 40 }, (_, i) => ({
    optionId: `o${i}`,
    kind: "allow_once",
    name: "n".repeat(2000),
    extra: big,
  }));
  const frame = permissionRequestFrame(9, { toolCallId: "t" }, options, 64 * 1024);
  const data = frame.data as { requestId: number; options: Record<string, unknown>[] };
  assert.equal(data.requestId, 9);
  assert.deepEqual(data.options.map((o) => o.optionId), options.map((o) => o.optionId));
  assert.ok(
    data.options.every((o) => o.kind === "allow_once" && (o.name as string).length === 256),
  );
  assert.ok(frameBytes(frame) <= 64 * 1024);
});

/** An object nested `depth` levels: `{a: {a: … {}}}`. */
function nested(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = {};
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

Deno.test("acp frames: an update nested too deep loses only what lies below the limit", () => {
  const fits = { sessionUpdate: "tool_call", toolCallId: "t1", rawInput: nested(63) };
  assert.deepEqual(acpUpdateFrame(fits, LIMIT * 10).data, fits, "64 levels: as it came");
  const update = {
    sessionUpdate: "tool_call",
    toolCallId: "t1",
    title: "Deep",
    status: "pending",
    locations: [{ path: "/a" }],
    rawInput: { list: [1, nested(63)], n: 2 },
  };
  const frame = acpUpdateFrame(update, LIMIT * 10);
  assert.equal(messageTooDeep(frame), false, "the service stores it");
  assert.equal(jsonDepth(frame.data), MAX_JSON_DEPTH);
  const data = frame.data as Record<string, unknown> & { rawInput: { list: unknown[] } };
  assert.deepEqual({ ...data, rawInput: undefined }, {
    ...update,
    rawInput: undefined,
    truncated: true,
    bytes: JSON.stringify(update).length,
  });
  assert.equal(data.rawInput.list[0], 1);
  assert.equal(jsonDepth(data.rawInput.list[1]), MAX_JSON_DEPTH - 3);
});

Deno.test("acp frames: a permission request or ignored input nested too deep is still stored", () => {
  const options = [{ optionId: "allow", name: "Allow", kind: "allow_once" }];
  const toolCall = { toolCallId: "t", title: "Edit", rawInput: nested(MAX_JSON_DEPTH) };
  const request = permissionRequestFrame(1, toolCall, options, LIMIT * 10);
  assert.equal(messageTooDeep(request), false);
  const data = request.data as { requestId: number; toolCall: Record<string, unknown> };
  assert.equal(data.requestId, 1);
  assert.deepEqual((request.data as { options: unknown }).options, options, "the answers stay");
  assert.equal(data.toolCall.toolCallId, "t");
  assert.equal(data.toolCall.truncated, true);
  assert.equal(data.toolCall.bytes, JSON.stringify(toolCall).length);

  const deepOptions = [{ ...options[0], _meta: nested(MAX_JSON_DEPTH) }];
  const both = permissionRequestFrame(2, toolCall, deepOptions, LIMIT * 10);
  assert.equal(messageTooDeep(both), false);
  assert.equal((both.data as { options: { optionId: string }[] }).options[0].optionId, "allow");

  const ignored = acpInputIgnoredFrame(3, nested(MAX_JSON_DEPTH), "not a prompt", LIMIT * 10);
  assert.equal(messageTooDeep(ignored), false);
  assert.equal((ignored.data as { data: { truncated: boolean } }).data.truncated, true);
  const fine = acpInputIgnoredFrame(3, nested(MAX_JSON_DEPTH - 1), "not a prompt", LIMIT * 10);
  assert.deepEqual((fine.data as { data: unknown }).data, nested(MAX_JSON_DEPTH - 1));
});
