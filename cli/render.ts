/**
 * One readable line of text per event, for terminals. Agent formats (Claude Code, Codex,
 * Gemini CLI, opencode, Kilo, ACP) go through the viewer page's conversation model
 * (`static/conversation.js`): what the agent said, tool calls with their results, plans,
 * permission requests; streamed message chunks print as they come. The service's own
 * events use the page's one-line summaries. Plain text only: colors are the printer's.
 *
 * @module
 */
import type { Envelope } from "../src/protocol.ts";
import { Conversation, renderText, summarizeEvent } from "../static/conversation.js";
import { EventType, OutputStream } from "../static/protocol.js";

type Item = ReturnType<Conversation["add"]>[number];

/** Event types whose meaning lives in the agent's own format. */
const AGENT_TYPES: ReadonlySet<string> = new Set([
  EventType.agent,
  EventType.kilocode,
  EventType.acp,
  EventType.acpTurn,
  EventType.permissionRequest,
]);

/**
 * Turns envelopes, in eventId order, into one line of text each.
 *
 * @example
 * ```ts
 * const lines = new EventLines();
 * lines.text({ eventId: 1, executionId: "e", sessionId: "s", timestamp: "", streamEventType: "output",
 *   data: { stream: "stdout", text: "ok" } }); // "ok"
 * ```
 */
export class EventLines {
  readonly #conversation = new Conversation();
  /** What was printed of each item so far (messages grow chunk by chunk). */
  readonly #printed = new Map<string, string>();

  /** The line for one envelope. */
  text(event: Envelope): string {
    const items = this.#conversation.add(event);
    if (!AGENT_TYPES.has(event.streamEventType)) return oneLine(summarizeEvent(event));
    const parts = items.filter((item) => item.kind !== "execution").map((item) => this.#delta(item))
      .filter(Boolean);
    return parts.length > 0 ? parts.join(" · ") : oneLine(summarizeEvent(event));
  }

  /** An item's text, or for a message already shown, only what its new chunks added. */
  #delta(item: Item): string {
    const full = renderText(item);
    const before = this.#printed.get(item.key);
    this.#printed.set(item.key, full);
    if (before !== undefined && item.kind === "message" && full.startsWith(before)) {
      return oneLine(full.slice(before.length));
    }
    return oneLine(full);
  }
}

/** Longest line, in characters. */
const MAX_LINE = 400;

/**
 * A text on one line of at most {@link MAX_LINE} characters (line breaks shown as `⏎`).
 *
 * @example
 * ```ts
 * oneLine("a\nb"); // "a ⏎ b"
 * ```
 */
export function oneLine(text: string): string {
  const flat = text.replace(/\s*\n\s*/g, " ⏎ ").trim();
  return flat.length > MAX_LINE ? `${flat.slice(0, MAX_LINE - 1)}…` : flat;
}

/**
 * The kind of an event, for coloring: `status`, `error`, `output`, `input` or `agent`.
 *
 * @example
 * ```ts
 * eventKind({ streamEventType: "execution_status", data: { status: "failed" } }); // "error"
 * ```
 */
export function eventKind(event: Pick<Envelope, "streamEventType" | "data">): string {
  const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as {
    status?: unknown;
    stream?: unknown;
  };
  switch (event.streamEventType) {
    case EventType.executionStatus:
      return data.status === "failed" || data.status === "interrupted" ? "error" : "status";
    case EventType.error:
    case EventType.wrapperDisconnected:
    case EventType.interrupted:
      return "error";
    case EventType.output:
      return data.stream === OutputStream.stderr ? "error" : "output";
    case EventType.input:
    case EventType.inputDelivered:
      return "input";
    default:
      return "agent";
  }
}
