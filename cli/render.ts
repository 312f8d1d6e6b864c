/**
 * One readable line of text per event, for terminals: agent formats (Claude Code
 * stream-json, Codex `exec --json`, Gemini CLI, ACP updates, the demo agent) rendered as
 * what the agent said or did, tool calls and results summarized, everything else as short
 * JSON. Plain text only (colors are the printer's business), so another renderer, such as
 * the viewer page's conversation renderer, can take its place behind {@link eventText}.
 *
 * @module
 */
import type { Envelope } from "../src/protocol.ts";

/** Longest summary of a value, in characters. */
const MAX_TEXT = 240;

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => typeof v === "string" ? v : undefined;

/** Cuts a text to one line of at most {@link MAX_TEXT} characters. */
export function oneLine(text: string): string {
  const flat = text.replace(/\s*\n\s*/g, " ⏎ ").trim();
  return flat.length > MAX_TEXT ? `${flat.slice(0, MAX_TEXT - 1)}…` : flat;
}

const json = (v: unknown) => oneLine(JSON.stringify(v) ?? "");

/**
 * The kind of an event for coloring: `status`, `error`, `agent`, `tool`, `output`, `input`.
 *
 * @example
 * ```ts
 * eventKind({ streamEventType: "execution_status", data: { status: "failed" } }); // "error"
 * ```
 */
export function eventKind(event: Pick<Envelope, "streamEventType" | "data">): string {
  const data = isObj(event.data) ? event.data : {};
  switch (event.streamEventType) {
    case "execution_status":
      return data.status === "failed" || data.status === "interrupted" ? "error" : "status";
    case "error":
    case "wrapper_disconnected":
    case "interrupted":
      return "error";
    case "output":
      return data.stream === "stderr" ? "error" : "output";
    case "input":
    case "input_delivered":
      return "input";
    default:
      return /tool/.test(JSON.stringify(data.type ?? data.sessionUpdate ?? "")) ? "tool" : "agent";
  }
}

/**
 * The text of one event, without its id, time or type.
 *
 * @example
 * ```ts
 * eventText({ streamEventType: "output", data: { stream: "stdout", text: "ok" } }); // "ok"
 * eventText({ streamEventType: "execution_status", data: { status: "running", previousStatus: "pending" } });
 * // "pending → running"
 * ```
 */
export function eventText(event: Pick<Envelope, "streamEventType" | "data">): string {
  const data = event.data;
  const d = isObj(data) ? data : {};
  switch (event.streamEventType) {
    case "execution_status":
      return `${d.previousStatus ?? "new"} → ${d.status}${d.error ? `: ${d.error}` : ""}`;
    case "output":
      return oneLine(String(d.text ?? ""));
    case "error":
    case "wrapper_disconnected":
      return oneLine(String(d.error ?? d.message ?? json(data)));
    case "interrupted":
      return oneLine(String(d.reason ?? "interrupted"));
    case "complete":
      return `exit code ${d.exitCode}`;
    case "input":
      return `#${d.inputId} ${d.endOfInput ? "(end of input) " : ""}${
        d.data === undefined ? "" : oneLine(str(d.data) ?? json(d.data))
      }`.trim();
    case "input_delivered":
      return `#${d.inputId} delivered`;
    case "acp":
      return acpText(d);
    case "acp_turn":
      return `turn ended (${d.stopReason})`;
    case "permission_request":
      return `permission asked: ${toolTitle(d.toolCall)}`;
    case "agent":
    case "kilocode":
      return agentText(d) ?? json(data);
    default:
      return json(data);
  }
}

/** Claude Code, Codex, Gemini CLI, opencode and the demo agent's JSON lines. */
function agentText(d: Obj): string | undefined {
  const message = isObj(d.message) ? d.message : undefined;
  if (message && Array.isArray(message.content)) {
    return oneLine(message.content.map(contentText).filter(Boolean).join(" "));
  }
  const item = isObj(d.item) ? d.item : undefined;
  if (item) return codexItem(item);
  switch (d.type) {
    case "system":
      return `session started${d.model ? ` (${d.model})` : ""}`;
    case "result":
      return `result: ${oneLine(str(d.result) ?? str(d.subtype) ?? json(d))}`;
    case "tool_use":
      return `▸ ${d.tool ?? d.name ?? "tool"} ${json(d.input ?? {})}`;
    case "tool_result":
      return `◂ ${d.tool ?? "tool"}${d.exitCode !== undefined ? ` exit ${d.exitCode}` : ""}: ${
        oneLine(str(d.text) ?? json(d.content ?? ""))
      }`;
  }
  const text = str(d.text) ?? str(d.content) ?? str(d.message);
  return text === undefined ? undefined : oneLine(text);
}

function contentText(block: unknown): string {
  if (!isObj(block)) return "";
  switch (block.type) {
    case "text":
      return String(block.text ?? "");
    case "thinking":
      return `(thinking) ${block.thinking ?? ""}`;
    case "tool_use":
      return `▸ ${block.name} ${json(block.input ?? {})}`;
    case "tool_result":
      return `◂ ${oneLine(str(block.content) ?? json(block.content))}`;
    default:
      return "";
  }
}

function codexItem(item: Obj): string {
  switch (item.type) {
    case "agent_message":
    case "reasoning":
      return oneLine(String(item.text ?? ""));
    case "command_execution":
      return `▸ ${item.command}${item.exit_code !== undefined ? ` (exit ${item.exit_code})` : ""}`;
    default:
      return `${item.type}: ${json(item)}`;
  }
}

function acpText(update: Obj): string {
  const content = isObj(update.content) ? update.content : {};
  switch (update.sessionUpdate) {
    case "agent_message_chunk":
      return oneLine(String(content.text ?? ""));
    case "agent_thought_chunk":
      return `(thinking) ${oneLine(String(content.text ?? ""))}`;
    case "tool_call":
    case "tool_call_update":
      return `▸ ${toolTitle(update)}${update.status ? ` [${update.status}]` : ""}`;
    case "plan":
      return `plan: ${
        Array.isArray(update.entries)
          ? update.entries.map((e) => (isObj(e) ? e.content : "")).join("; ")
          : ""
      }`;
    default:
      return json(update);
  }
}

function toolTitle(call: unknown): string {
  if (!isObj(call)) return "tool";
  return oneLine(String(call.title ?? call.kind ?? call.toolCallId ?? "tool"));
}
