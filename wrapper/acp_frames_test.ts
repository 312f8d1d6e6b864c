import assert from "node:assert/strict";
import {
  acpInputIgnoredFrame,
  acpTurnFrame,
  acpUpdateFrame,
  agentProtocolErrorFrame,
  permissionRequestFrame,
} from "./acp_frames.ts";
import { frameBytes } from "./outbox.ts";

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
  assert.deepEqual(acpTurnFrame(2, { stopReason: "cancelled" }), {
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
  assert.deepEqual(agentProtocolErrorFrame("session/new failed: no").data, {
    fatal: true,
    code: "AGENT_PROTOCOL_ERROR",
    error: "session/new failed: no",
  });
});
