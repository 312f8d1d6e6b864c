/**
 * What the wrapper says about its agent, as ingest frames (PROTOCOL.md 9.1 and 9.2): output
 * lines as `agent` or `output` (truncated to the frame limit when needed), Server-Sent
 * Events as `kilocode`, and the terminal frames that end a run.
 *
 * @module
 */
import { MAX_JSON_DEPTH, textOpensAtMost, tooDeep } from "../src/json_depth.ts";
import { ErrorCode, ErrorText, EventType } from "../src/protocol.ts";
import type { Line } from "./lines.ts";
import { frameBytes, type OutgoingFrame } from "./outbox.ts";
import type { SseEvent } from "./sse.ts";

/** Which output stream a line came from. */
export type OutputStream = "stdout" | "stderr";

/** SSE events that only keep the stream alive: never forwarded. */
const SSE_KEEPALIVE_EVENTS: ReadonlySet<string> = new Set(["server.connected", "server.heartbeat"]);

/**
 * The frame for one output line: a stdout line holding a JSON object becomes `agent` with
 * that object as data; any other line becomes `output {stream, text}`, and so does an object
 * nested deeper than the service stores (PROTOCOL.md 10), so the line is kept as text. A
 * line whose frame would exceed `maxFrameBytes` becomes `output {stream, text, truncated:
 * true, bytes}`.
 *
 * @example
 * ```ts
 * lineFrame({ text: '{"type":"result"}', bytes: 17, cut: false }, "stdout", 524288);
 * // { streamEventType: "agent", data: { type: "result" } }
 * ```
 */
export function lineFrame(line: Line, stream: OutputStream, maxFrameBytes: number): OutgoingFrame {
  if (stream === "stdout" && !line.cut) {
    const object = parseJsonObject(line.text);
    if (object) {
      const frame = { streamEventType: EventType.agent, data: object };
      if (frameBytes(frame) <= maxFrameBytes) return frame;
    }
  }
  return outputFrame(line, stream, maxFrameBytes);
}

/**
 * The `output {stream, text}` frame for one line, whatever it holds; a line whose frame
 * would exceed `maxFrameBytes` becomes `output {stream, text, truncated: true, bytes}`.
 *
 * @example
 * ```ts
 * outputFrame({ text: '{"a":1}', bytes: 7, cut: false }, "stdout", 524288);
 * // { streamEventType: "output", data: { stream: "stdout", text: '{"a":1}' } }
 * ```
 */
export function outputFrame(
  line: Line,
  stream: OutputStream,
  maxFrameBytes: number,
): OutgoingFrame {
  const frame = { streamEventType: EventType.output, data: { stream, text: line.text } };
  if (!line.cut && frameBytes(frame) <= maxFrameBytes) return frame;
  return fitText(
    (text) => ({
      streamEventType: EventType.output,
      data: { stream, text, truncated: true, bytes: line.bytes },
    }),
    line.text,
    maxFrameBytes,
  );
}

/**
 * The event name of an SSE event and, unless it is a keep-alive, its `kilocode` frame: the
 * parsed JSON object (or `{raw}` when the data is no JSON object, or one nested deeper than
 * the service stores) plus `event`, the SSE event name, or `data.type` when there is none
 * (else `message`, the SSE default).
 *
 * @example
 * ```ts
 * const event = { event: undefined, data: '{"type":"message.updated"}', id: undefined };
 * kilocodeFrame(event, 524288);
 * // { name: "message.updated",
 * //   frame: { streamEventType: "kilocode",
 * //     data: { type: "message.updated", event: "message.updated" } } }
 * ```
 */
export function kilocodeFrame(event: SseEvent, maxFrameBytes: number): {
  name: string;
  frame?: OutgoingFrame;
} {
  const object = parseJsonObject(event.data);
  const type = object?.type;
  const name = event.event ?? (typeof type === "string" ? type : "message");
  if (SSE_KEEPALIVE_EVENTS.has(name)) return { name };
  const frame = {
    streamEventType: EventType.kilocode,
    data: { ...(object ?? { raw: event.data }), event: name },
  };
  if (frameBytes(frame) <= maxFrameBytes) return { name, frame };
  const bytes = new TextEncoder().encode(event.data).length;
  return {
    name,
    frame: fitText(
      (raw) => ({
        streamEventType: EventType.kilocode,
        data: { raw, event: name, truncated: true, bytes },
      }),
      event.data,
      maxFrameBytes,
    ),
  };
}

/**
 * The frame `build(prefix)` for the longest prefix of `text` (in whole code points) whose
 * frame fits `maxFrameBytes`.
 *
 * @example
 * ```ts
 * const line = "x".repeat(1_000_000);
 * const build = (text: string) => ({ streamEventType: "output", data: { text } });
 * const frame = fitText(build, line, 524288);
 * // frame's text: the first characters of `line`, as many as keep the frame within 524288 bytes
 * ```
 */
export function fitText(
  build: (text: string) => OutgoingFrame,
  text: string,
  maxFrameBytes: number,
): OutgoingFrame {
  // Binary search over the code point boundaries, so no character is ever split.
  const ends = [0];
  for (const char of text) ends.push(ends[ends.length - 1] + char.length);
  const fits = (index: number) => frameBytes(build(text.slice(0, ends[index]))) <= maxFrameBytes;
  let low = 0;
  let high = ends.length - 1;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid - 1;
  }
  return build(text.slice(0, ends[low]));
}

/**
 * The JSON object a text holds, if the service can store it as a frame's `data`: an object
 * nested deeper than {@link MAX_JSON_DEPTH} would be refused (`INVALID_FRAME`) and lost, so
 * it counts as no object and its text is forwarded instead.
 */
function parseJsonObject(text: string): Record<string, unknown> | undefined {
  if (!text.trimStart().startsWith("{")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  // Few brackets cannot nest deep: most lines skip the walk.
  if (!textOpensAtMost(text, MAX_JSON_DEPTH) && tooDeep(value)) return undefined;
  return value as Record<string, unknown>;
}

/**
 * `complete {exitCode}` (PROTOCOL.md 9.2); the exit code defaults to 0.
 *
 * @example
 * ```ts
 * completeFrame(); // { streamEventType: "complete", data: { exitCode: 0 } }
 * ```
 */
export function completeFrame(exitCode = 0): OutgoingFrame {
  return { streamEventType: EventType.complete, data: { exitCode } };
}

/**
 * The fatal `AGENT_EXIT` error of an agent that exited by itself with a code other than 0
 * (PROTOCOL.md 9.2). An agent killed by a signal the wrapper did not send has code 128 + n;
 * the frame then also names the signal (a key the contract does not list).
 *
 * @example
 * ```ts
 * agentExitFrame(2, null);
 * // { streamEventType: "error",
 * //   data: { fatal: true, code: "AGENT_EXIT", exitCode: 2, error: "agent exited with code 2" } }
 * ```
 */
export function agentExitFrame(exitCode: number, signal: string | null): OutgoingFrame {
  return {
    streamEventType: EventType.error,
    data: {
      fatal: true,
      code: ErrorCode.agentExit,
      exitCode,
      error: `agent exited with code ${exitCode}`,
      ...(signal ? { signal } : {}),
    },
  };
}

/**
 * `interrupted {reason}` (PROTOCOL.md 9.2); the reason defaults to `User interrupted`.
 *
 * @example
 * ```ts
 * interruptedFrame(undefined);
 * // { streamEventType: "interrupted", data: { reason: "User interrupted" } }
 * ```
 */
export function interruptedFrame(reason: string | undefined): OutgoingFrame {
  return {
    streamEventType: EventType.interrupted,
    data: { reason: reason ?? ErrorText.userInterrupted },
  };
}

/**
 * The fatal `AGENT_IDLE_TIMEOUT` error of `--idle-timeout-ms` (PROTOCOL.md 9.1).
 *
 * @example
 * ```ts
 * idleTimeoutFrame(60_000);
 * // { streamEventType: "error", data: { fatal: true, code: "AGENT_IDLE_TIMEOUT",
 * //   error: "agent produced no output for 60000 ms" } }
 * ```
 */
export function idleTimeoutFrame(idleTimeoutMs: number): OutgoingFrame {
  return {
    streamEventType: EventType.error,
    data: {
      fatal: true,
      code: ErrorCode.agentIdleTimeout,
      error: `agent produced no output for ${idleTimeoutMs} ms`,
    },
  };
}

/**
 * The fatal `AGENT_START_FAILED` error of an agent command that could not be started. The
 * contract names no code for this case: the code is this wrapper's own.
 *
 * @example
 * ```ts
 * startFailedFrame("No such file or directory (os error 2)");
 * // { streamEventType: "error", data: { fatal: true, code: "AGENT_START_FAILED",
 * //   error: "cannot start agent: No such file or directory (os error 2)" } }
 * ```
 */
export function startFailedFrame(message: string): OutgoingFrame {
  return {
    streamEventType: EventType.error,
    data: {
      fatal: true,
      code: ErrorCode.agentStartFailed,
      error: `cannot start agent: ${message}`,
    },
  };
}
