/**
 * The frames the wrapper stores for an ACP agent (PROTOCOL.md section 14): `acp` updates,
 * `acp_turn` ends, `permission_request`s, `acp_input_ignored` and the fatal
 * `AGENT_PROTOCOL_ERROR`. Each frame fits the frame limit: an update, request or ignored
 * input too large to store whole keeps what identifies it and says `truncated: true` with
 * its size, so a viewer still sees that it happened. Each frame also fits the nesting limit
 * (PROTOCOL.md 10): a value nested deeper loses only its objects and arrays below the limit
 * and says `truncated: true` with its size, as the service would refuse the whole frame.
 *
 * @module
 */
import { jsonDepth, MAX_JSON_DEPTH } from "../src/json_depth.ts";
import { AcpEventType, ErrorCode, EventType } from "../src/protocol.ts";
import { fitText } from "./frames.ts";
import { utf8Bytes } from "../src/bytes.ts";
import { frameBytes, type OutgoingFrame } from "./outbox.ts";

/** How a turn ended: an ACP `StopReason`, or `error` when `session/prompt` failed. */
export type TurnEnd = { stopReason: string } | { stopReason: "error"; error: string };

/** Fields of an update or tool call that identify it; kept when the rest does not fit. */
const IDENTITY_KEYS = ["sessionUpdate", "toolCallId", "title", "kind", "status"] as const;

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

/** The identifying fields of `value` plus `truncated: true` and its serialized size. */
function truncated(value: unknown): Record<string, unknown> {
  const source = record(value);
  const kept: Record<string, unknown> = {};
  for (const key of IDENTITY_KEYS) {
    const field = source[key];
    if (typeof field === "string" && field.length <= 256) kept[key] = field;
  }
  return { ...kept, truncated: true, bytes: utf8Bytes(JSON.stringify(value) ?? "") };
}

/**
 * `value` as the service can store it `depth` levels into a frame's data: unchanged when it
 * nests no deeper, else a copy without the objects and arrays below that depth (an object
 * also gets `truncated: true` and its size).
 */
function withinDepth(value: unknown, depth: number): unknown {
  if (jsonDepth(value, depth) <= depth) return value;
  const copy = pruned(value, depth);
  if (Array.isArray(copy) || typeof copy !== "object" || copy === null) return copy;
  return { ...copy, truncated: true, bytes: utf8Bytes(JSON.stringify(value)) };
}

/** A copy of `value` nested at most `depth` (≥ 1) levels: deeper objects and arrays are left out. */
function pruned(value: unknown, depth: number): unknown {
  if (typeof value !== "object" || value === null) return value;
  const keep = (child: unknown) => depth > 1 || typeof child !== "object" || child === null;
  if (Array.isArray(value)) return value.filter(keep).map((child) => pruned(child, depth - 1));
  return Object.fromEntries(
    Object.entries(value).filter(([, child]) => keep(child))
      .map(([key, child]) => [key, pruned(child, depth - 1)]),
  );
}

/**
 * `acp` with the `session/update` notification's `update` object as data. A text chunk too
 * large for one frame keeps the start of its text; any other update keeps its identifying
 * fields (`sessionUpdate`, `toolCallId`, `title`, `kind`, `status`). An update nested deeper
 * than the service stores loses what lies below the limit.
 *
 * @example
 * ```ts
 * acpUpdateFrame({ sessionUpdate: "agent_message_chunk", content: { type: "text", text: "Hi" } }, 524288);
 * // { streamEventType: "acp", data: { sessionUpdate: "agent_message_chunk", content: { type: "text", text: "Hi" } } }
 * ```
 */
export function acpUpdateFrame(update: unknown, maxFrameBytes: number): OutgoingFrame {
  const frame = { streamEventType: AcpEventType.update, data: withinDepth(update, MAX_JSON_DEPTH) };
  if (frameBytes(frame) <= maxFrameBytes) return frame;
  const content = record(record(update).content);
  const slim = { streamEventType: AcpEventType.update, data: truncated(update) };
  if (content.type === "text" && typeof content.text === "string") {
    return fitText(
      (text) => ({ ...slim, data: { ...slim.data, content: { type: "text", text } } }),
      content.text,
      maxFrameBytes,
    );
  }
  return slim;
}

/**
 * `acp_turn {inputId, stopReason}` (plus `error` when the prompt request itself failed,
 * keeping the start of its text when it does not fit the frame).
 *
 * @example
 * ```ts
 * acpTurnFrame(1, { stopReason: "end_turn" }, 524288);
 * // { streamEventType: "acp_turn", data: { inputId: 1, stopReason: "end_turn" } }
 * ```
 */
export function acpTurnFrame(inputId: number, end: TurnEnd, maxFrameBytes: number): OutgoingFrame {
  const build = (error?: string): OutgoingFrame => ({
    streamEventType: AcpEventType.turn,
    data: error === undefined ? { inputId, ...end } : { inputId, ...end, error },
  });
  const frame = build();
  if (!("error" in end) || frameBytes(frame) <= maxFrameBytes) return frame;
  return fitText(build, end.error, maxFrameBytes);
}

/**
 * `permission_request {requestId, toolCall, options}`; a tool call too large for one frame
 * keeps its identifying fields (the options always stay: they are the answers). A tool call
 * or options nested deeper than the service stores lose what lies below the limit.
 *
 * @example
 * ```ts
 * permissionRequestFrame(1, { toolCallId: "t1", title: "Edit a.ts" }, [
 *   { optionId: "allow", name: "Allow", kind: "allow_once" },
 * ], 524288).data; // { requestId: 1, toolCall: { … }, options: [ … ] }
 * ```
 */
export function permissionRequestFrame(
  requestId: number,
  toolCall: unknown,
  options: unknown,
  maxFrameBytes: number,
): OutgoingFrame {
  // The data object is one level: its fields may nest one level less.
  const storedOptions = withinDepth(options, MAX_JSON_DEPTH - 1);
  const frame = {
    streamEventType: AcpEventType.permissionRequest,
    data: {
      requestId,
      toolCall: withinDepth(toolCall, MAX_JSON_DEPTH - 1),
      options: storedOptions,
    },
  };
  if (frameBytes(frame) <= maxFrameBytes) return frame;
  const slim = {
    ...frame,
    data: { requestId, toolCall: truncated(toolCall), options: storedOptions },
  };
  if (frameBytes(slim) <= maxFrameBytes) return slim;
  // Still too large: each option keeps what answers it (`optionId`, `kind`) and a short name.
  const answers = (Array.isArray(options) ? options : []).map((option) => {
    const { optionId, kind, name } = record(option);
    return { optionId, kind, name: typeof name === "string" ? name.slice(0, 256) : name };
  });
  return { ...slim, data: { ...slim.data, options: answers, truncated: true } };
}

/**
 * `acp_input_ignored {inputId, data, reason}`; `data` is left out when it does not fit, and
 * loses what lies below the nesting limit when it nests too deep for the frame.
 *
 * @example
 * ```ts
 * acpInputIgnoredFrame(3, 42, "not a prompt", 524288);
 * // { streamEventType: "acp_input_ignored", data: { inputId: 3, data: 42, reason: "not a prompt" } }
 * ```
 */
export function acpInputIgnoredFrame(
  inputId: number,
  data: unknown,
  reason: string,
  maxFrameBytes: number,
): OutgoingFrame {
  const frame = {
    streamEventType: AcpEventType.inputIgnored,
    data: { inputId, data: withinDepth(data, MAX_JSON_DEPTH - 1), reason },
  };
  if (frameBytes(frame) <= maxFrameBytes) return frame;
  return { ...frame, data: { inputId, reason, truncated: true } };
}

/**
 * The fatal `error` frame of an agent that failed `initialize` or `session/new`, or exited
 * before answering them.
 *
 * @example
 * ```ts
 * agentProtocolErrorFrame("initialize failed: Internal error", 524288).data;
 * // { fatal: true, code: "AGENT_PROTOCOL_ERROR", error: "initialize failed: Internal error" }
 * ```
 */
export function agentProtocolErrorFrame(message: string, maxFrameBytes: number): OutgoingFrame {
  return fitText(
    (error) => ({
      streamEventType: EventType.error,
      data: { fatal: true, code: ErrorCode.agentProtocolError, error },
    }),
    message,
    maxFrameBytes,
  );
}
