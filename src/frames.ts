/**
 * The rules of wrapper frames (PROTOCOL.md 5.1), written once: the fields a frame may carry,
 * what each `streamEventType` means (liveness only, a plain event, a terminal transition),
 * and {@link classifyFrame}, the one classifier that the service's ingest path and the
 * wrapper both use. A new frame type is one entry of {@link FRAME_TYPES}.
 *
 * @module
 */
import { MAX_JSON_DEPTH, messageTooDeep, textOpensAtMost } from "./json_depth.ts";
import {
  ErrorText,
  EventType,
  InputDeliveredData,
  InputEventType,
  RESERVED_EVENT_TYPES,
  STREAM_EVENT_TYPE_RE,
  type TerminalStatus,
} from "./protocol.ts";

/** A valid frame from the wrapper (its `timestamp` only when it is an ISO 8601 time). */
export interface WrapperFrame {
  streamEventType: string;
  seq?: number;
  timestamp?: string;
  data?: unknown;
}

/** What a terminal frame ends its execution as. */
export interface FrameEnd {
  status: TerminalStatus;
  error?: string;
}

/** The classifier's verdict on one parsed frame. */
export type FrameVerdict =
  /** Refused with `INVALID_FRAME`; `seq` is the frame's own when it is a valid one. */
  | { kind: "invalid"; message: string; seq?: number }
  /** `heartbeat` / `pong`: liveness only, never stored. */
  | { kind: "liveness" }
  /**
   * Stored and broadcast; `end` is set for a terminal frame, `deliveredInputId` for an
   * `input_delivered` (the commit checks it against the execution's `lastInputId`).
   */
  | { kind: "event"; frame: WrapperFrame } & FrameEffect;

/** What a stored frame does besides being stored. */
export interface FrameEffect {
  end?: FrameEnd;
  deliveredInputId?: number;
}

/** What the rule of one `streamEventType` decides from its `data`. */
export type TypeRule = (data: unknown) => "liveness" | { invalid: string } | FrameEffect;

type Fields = Record<string, unknown>;
const isFields = (value: unknown): value is Fields =>
  typeof value === "object" && value !== null && !Array.isArray(value);
const optional = (value: unknown, type: "string" | "boolean") =>
  value === undefined || typeof value === type;

/**
 * The frame types with a meaning of their own (PROTOCOL.md 5.1 table); any other allowed
 * name is a plain event with any `data`.
 */
export const FRAME_TYPES: Readonly<Record<string, TypeRule>> = {
  [EventType.heartbeat]: () => "liveness",
  [EventType.pong]: () => "liveness",
  [EventType.complete]: (data) =>
    isFields(data) && Number.isFinite(data.exitCode)
      ? { end: { status: "completed" } }
      : { invalid: "complete needs data.exitCode (number)" },
  [EventType.interrupted]: (data) => {
    const fields = data ?? {};
    if (!isFields(fields) || !optional(fields.reason, "string")) {
      return { invalid: "interrupted needs data.reason to be a string" };
    }
    return {
      end: { status: "interrupted", error: (fields.reason ?? ErrorText.userInterrupted) as string },
    };
  },
  [EventType.error]: (data) => {
    if (data === undefined) return {};
    if (
      !isFields(data) || !optional(data.error, "string") || !optional(data.message, "string") ||
      !optional(data.code, "string") || !optional(data.fatal, "boolean")
    ) {
      return { invalid: "error data has fields of the wrong type" };
    }
    if (data.fatal !== true) return {};
    const error = (data.error ?? data.message ?? ErrorText.fatalError) as string;
    return { end: { status: "failed", error } };
  },
  [InputEventType.delivered]: (data) => {
    const parsed = InputDeliveredData.safeParse(data);
    return parsed.success
      ? { deliveredInputId: parsed.data.inputId }
      : { invalid: "input_delivered needs data {inputId: integer ≥ 1}" };
  },
};

const ISO_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

/** The frame's timestamp when it is a valid ISO 8601 time; otherwise the service's clock applies. */
function isoTimestamp(value: unknown): string | undefined {
  const match = typeof value === "string" ? ISO_TIMESTAMP.exec(value) : null;
  if (!match || Number.isNaN(Date.parse(match[0]))) return undefined;
  // V8 takes day 31 of any month; a date that does not exist is no ISO 8601 time.
  const [year, month, day] = [match[1], match[2], match[3]].map(Number);
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // Date.UTC would read years 0–99 as 1900–1999
  return date.getUTCDate() === day ? match[0] : undefined;
}

/** The effect of a plain event: none besides being stored. */
const PLAIN: FrameEffect = Object.freeze({});

/** The nesting limit of a frame (PROTOCOL.md 10): its own top-level object is not counted. */
const MAX_FRAME_DEPTH = MAX_JSON_DEPTH + 1;

/**
 * Classifies a parsed wrapper frame: refused (with the reason), liveness only, or an event to
 * store, terminal or not. `text`, the JSON text `json` was parsed from, when the caller has
 * it: a text with few brackets cannot nest too deep, which spares walking the parsed value.
 *
 * @example
 * ```ts
 * classifyFrame({ streamEventType: "complete", seq: 3, data: { exitCode: 0 } });
 * // { kind: "event", frame: {...}, end: { status: "completed" } }
 * classifyFrame({ streamEventType: "heartbeat" }); // { kind: "liveness" }
 * classifyFrame({ streamEventType: "execution_status" }); // { kind: "invalid", … }
 * ```
 */
export function classifyFrame(json: unknown, text?: string): FrameVerdict {
  if (!isFields(json)) return { kind: "invalid", message: "frame is not a JSON object" };
  const { streamEventType: type, seq, data } = json;
  const ownSeq = Number.isSafeInteger(seq) && (seq as number) >= 1 ? seq as number : undefined;
  if (typeof type !== "string" || !STREAM_EVENT_TYPE_RE.test(type)) {
    return refused("invalid streamEventType", ownSeq);
  }
  if (RESERVED_EVENT_TYPES.has(type)) {
    return refused("streamEventType is reserved for the service", ownSeq);
  }
  if (seq !== undefined && ownSeq === undefined) {
    return refused("seq must be an integer ≥ 1", ownSeq);
  }
  if (
    (text === undefined || !textOpensAtMost(text, MAX_FRAME_DEPTH)) && messageTooDeep(json)
  ) {
    return refused(`frame nests deeper than ${MAX_JSON_DEPTH} levels`, ownSeq);
  }
  const rule = Object.hasOwn(FRAME_TYPES, type) ? FRAME_TYPES[type](data) : PLAIN;
  if (rule === "liveness") {
    // A numbered liveness frame would leave its seq waiting for an ack forever: refuse it.
    return seq === undefined
      ? { kind: "liveness" }
      : refused("heartbeat and pong carry no seq", ownSeq);
  }
  if ("invalid" in rule) return refused(rule.invalid, ownSeq);
  const frame: WrapperFrame = { streamEventType: type };
  if (ownSeq !== undefined) frame.seq = ownSeq;
  const timestamp = isoTimestamp(json.timestamp);
  if (timestamp !== undefined) frame.timestamp = timestamp;
  if (data !== undefined) frame.data = data;
  // A plain event (most frames) is built without copying an empty effect into it.
  return rule === PLAIN ? { kind: "event", frame } : { kind: "event", frame, ...rule };
}

/** The verdict refusing a frame; `seq` is the frame's own when it is a valid one. */
function refused(message: string, seq: number | undefined): FrameVerdict {
  return seq === undefined ? { kind: "invalid", message } : { kind: "invalid", message, seq };
}

/**
 * The status a frame ends its execution with, or `undefined` for a frame that is not
 * terminal (or that the service would refuse).
 *
 * @example
 * ```ts
 * terminalStatusOfFrame({ streamEventType: "complete", data: { exitCode: 0 } }); // "completed"
 * terminalStatusOfFrame({ streamEventType: "error", data: { fatal: false } }); // undefined
 * ```
 */
export function terminalStatusOfFrame(
  frame: { streamEventType: string; data?: unknown },
): TerminalStatus | undefined {
  const verdict = classifyFrame(frame);
  return verdict.kind === "event" ? verdict.end?.status : undefined;
}
