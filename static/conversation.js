// @ts-check
/**
 * Turns a session's envelopes into a conversation: a small view model of messages, tool calls
 * (name, arguments, result, diffs), errors, inputs, ACP plans, turns and permission requests,
 * plus usage and cost totals per execution. No DOM access: the viewer page renders the items
 * with `textContent`, a CLI prints them with {@link renderText}. Unknown shapes become `event`
 * items (a one-line summary and the JSON).
 *
 * Formats: Claude Code stream-json, Codex `exec --json`, Gemini CLI stream-json, opencode
 * `run --format json`, Kilo / opencode server events (`kilocode`), ACP (`acp`, `acp_turn`,
 * `permission_request`), and the service's own events.
 *
 * @example
 * ```js
 * import { Conversation, renderText } from "./conversation.js";
 * const conversation = new Conversation();
 * for (const envelope of envelopes) {
 *   for (const item of conversation.add(envelope)) console.log(renderText(item));
 * }
 * console.log(conversation.usage("exc_…"));
 * ```
 *
 * @module
 */
import { EventType, OutputStream, TERMINAL_STATUSES } from "./protocol.js";

/**
 * @typedef {object} Envelope A stored event (PROTOCOL.md 6).
 * @property {number} eventId
 * @property {string} executionId
 * @property {string} sessionId
 * @property {string} streamEventType
 * @property {string} timestamp
 * @property {unknown} data
 */

/**
 * @typedef {object} Usage Token and cost totals of one execution, as far as its format says.
 * @property {number} inputTokens
 * @property {number} outputTokens
 * @property {number} cacheReadTokens
 * @property {number} cacheWriteTokens
 * @property {number} reasoningTokens
 * @property {number | null} costUsd null while no event carried a cost
 */

/**
 * @typedef {object} DiffLine
 * @property {" " | "+" | "-"} op
 * @property {string} text
 */

/**
 * @typedef {object} FileDiff A file edit: the lines removed and added.
 * @property {string} path
 * @property {DiffLine[]} lines
 */

/**
 * @typedef {object} PermissionOption
 * @property {string} optionId
 * @property {string} name
 * @property {string} kind
 */

/**
 * @typedef {object} PermissionAnswer
 * @property {number} inputId
 * @property {string} [optionId]
 * @property {boolean} [cancelled]
 * @property {boolean} delivered
 */

/**
 * @typedef {object} Item One entry of the conversation. `kind` says which fields are set:
 * - `execution`: the start of an execution's part (`executionId`);
 * - `status`: a quiet line (`text`, `tone`);
 * - `message`: `role` (`assistant`, `user`, `thought`, `system`) and `text`;
 * - `tool`: `name`, `args`, `output`, `status`, `isError`, `toolKind`, `locations`, `diffs`;
 * - `files`: changed files (`files`) without their content;
 * - `error`: `text`, `code`, `fatal`;
 * - `output`: `stream` and `lines` of plain output (stderr labelled);
 * - `result`: the final result `text` (whole), `isError`, `usage`;
 * - `input`: `inputId`, `text`, `endOfInput`, `delivered`, `permission`;
 * - `plan`: `entries`;
 * - `turn`: the end of a turn (`stopReason`, `text`);
 * - `permission`: `requestId`, `title`, `options`, `answer`, `closed`;
 * - `event`: anything else (`type`, `text` = a one-line summary).
 * @property {string} key stable identity (the first event's id plus a suffix)
 * @property {string} kind
 * @property {string} executionId
 * @property {Envelope[]} events the envelopes this item shows (raw JSON is one click away)
 * @property {number} rev bumped on every change, so renderers know what to redraw
 * @property {string} [text]
 * @property {string} [role]
 * @property {string} [tone] `info`, `warn`, `error` or `ok`
 * @property {string} [name]
 * @property {unknown} [args]
 * @property {string} [output]
 * @property {string} [status]
 * @property {boolean} [isError]
 * @property {string} [toolKind]
 * @property {string[]} [locations]
 * @property {FileDiff[]} [diffs]
 * @property {{path: string, kind: string}[]} [files]
 * @property {string} [code]
 * @property {boolean} [fatal]
 * @property {string} [stream]
 * @property {string[]} [lines]
 * @property {Usage} [usage]
 * @property {number} [inputId]
 * @property {boolean} [endOfInput]
 * @property {boolean} [delivered]
 * @property {{requestId: number, optionId?: string, cancelled?: boolean}} [permission]
 * @property {{content: string, status: string, priority?: string}[]} [entries]
 * @property {string} [stopReason]
 * @property {number} [requestId]
 * @property {string} [title]
 * @property {PermissionOption[]} [options]
 * @property {PermissionAnswer | null} [answer]
 * @property {boolean} [closed]
 * @property {string} [type]
 * @property {string} [joinKey] consecutive chunks with the same key are one message
 */

/** Text longer than this many characters (or lines) is shown collapsed. */
export const COLLAPSE_CHARS = 600;
/** See {@link COLLAPSE_CHARS}. */
export const COLLAPSE_LINES = 12;
/** Consecutive output lines of one stream join into one item up to this many lines. */
const MAX_JOINED_LINES = 200;
/** Beyond this many changed lines a diff is shown as all removed, then all added. */
const MAX_DIFF_CELLS = 250_000;

/**
 * Whether a text is long enough to be shown collapsed.
 *
 * @example
 * ```js
 * isLong("short"); // false
 * ```
 * @param {string} text
 * @returns {boolean}
 */
export function isLong(text) {
  if (text.length > COLLAPSE_CHARS) return true;
  let lines = 1;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) {
    if (++lines > COLLAPSE_LINES) return true;
  }
  return false;
}

// ------------------------------------------------------------------ small value helpers

/**
 * @param {unknown} value
 * @returns {Record<string, any>}
 */
function obj(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? /** @type {Record<string, any>} */ (value)
    : {};
}

/**
 * @param {unknown} value
 * @returns {string}
 */
function str(value) {
  if (typeof value === "string") return value;
  if (value === undefined || value === null) return "";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/**
 * @param {unknown} value
 * @returns {number}
 */
function num(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/**
 * The text of content in any of the common shapes: a string, a content block
 * (`{type:"text", text}`, a resource, a link), or an array of them.
 *
 * @param {unknown} content
 * @returns {string}
 */
export function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map(contentText).filter(Boolean).join("\n");
  const block = obj(content);
  if (typeof block.text === "string") return block.text;
  if (block.type === "resource_link") return `[${str(block.name || block.uri)}] ${str(block.uri)}`;
  if (block.type === "resource") return contentText(obj(block.resource).text ?? "");
  if (block.type === "image" || block.type === "audio") return `[${block.type}]`;
  if (block.type === "content") return contentText(block.content);
  if (Object.keys(block).length === 0) return "";
  return JSON.stringify(content);
}

/** @returns {Usage} */
function emptyUsage() {
  return {
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    costUsd: null,
  };
}

// ------------------------------------------------------------------ diffs

/**
 * A line diff of two texts (longest common subsequence after trimming the common start and
 * end; very large changes fall back to all removed, then all added).
 *
 * @example
 * ```js
 * diffLines("a\nb", "a\nc"); // [{op:" ",text:"a"},{op:"-",text:"b"},{op:"+",text:"c"}]
 * ```
 * @param {string} oldText
 * @param {string} newText
 * @returns {DiffLine[]}
 */
export function diffLines(oldText, newText) {
  const a = lines(oldText);
  const b = lines(newText);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) endA--, endB--;
  /** @type {DiffLine[]} */
  const out = a.slice(0, start).map((text) => ({ op: " ", text }));
  out.push(...middleDiff(a.slice(start, endA), b.slice(start, endB)));
  for (const text of a.slice(endA)) out.push({ op: " ", text });
  return out;
}

/**
 * A text's lines; a final line end does not start another line.
 *
 * @param {string} text
 * @returns {string[]}
 */
function lines(text) {
  if (text === "") return [];
  const all = text.split("\n");
  if (all.at(-1) === "") all.pop();
  return all;
}

/**
 * @param {string[]} a
 * @param {string[]} b
 * @returns {DiffLine[]}
 */
function middleDiff(a, b) {
  /** @type {(op: " " | "+" | "-") => (text: string) => DiffLine} */
  const line = (op) => (text) => ({ op, text });
  if (a.length * b.length > MAX_DIFF_CELLS || a.length === 0 || b.length === 0) {
    return [...a.map(line("-")), ...b.map(line("+"))];
  }
  // lengths[i][j] = LCS length of a[i..] and b[j..]
  const lengths = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lengths[i][j] = a[i] === b[j]
        ? lengths[i + 1][j + 1] + 1
        : Math.max(lengths[i + 1][j], lengths[i][j + 1]);
    }
  }
  /** @type {DiffLine[]} */
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) out.push({ op: " ", text: a[i++] }), j++;
    else if (lengths[i + 1][j] >= lengths[i][j + 1]) out.push({ op: "-", text: a[i++] });
    else out.push({ op: "+", text: b[j++] });
  }
  out.push(...a.slice(i).map(line("-")), ...b.slice(j).map(line("+")));
  return out;
}

/**
 * File edits found in a tool call's arguments, whatever the agent calls the fields
 * (`file_path`/`filePath`/`path`, `old_string`/`oldString`, `new_string`/`newString`,
 * `content` for a write, `edits` for several edits of one file).
 *
 * @param {string} toolName
 * @param {unknown} args
 * @returns {FileDiff[]}
 */
export function diffsFromArgs(toolName, args) {
  const a = obj(args);
  const path = str(a.file_path ?? a.filePath ?? a.path ?? a.absolute_path);
  if (!path) return [];
  const oldText = a.old_string ?? a.oldString;
  const newText = a.new_string ?? a.newString;
  if (typeof oldText === "string" && typeof newText === "string") {
    return [{ path, lines: diffLines(oldText, newText) }];
  }
  if (Array.isArray(a.edits)) {
    const lines = a.edits.flatMap((/** @type {unknown} */ edit) => {
      const e = obj(edit);
      return diffLines(str(e.old_string ?? e.oldString), str(e.new_string ?? e.newString));
    });
    return [{ path, lines }];
  }
  if (typeof a.content === "string" && /write|create/i.test(toolName)) {
    return [{ path, lines: diffLines("", a.content) }];
  }
  return [];
}

// ------------------------------------------------------------------ one-line summaries

/**
 * A one-line summary of any envelope (the events view of the page, the CLI's fallback).
 *
 * @example
 * ```js
 * summarizeEvent({ streamEventType: "complete", data: { exitCode: 0 } }); // "completed · exit code 0"
 * ```
 * @param {Pick<Envelope, "streamEventType" | "data">} env
 * @returns {string}
 */
export function summarizeEvent(env) {
  const d = obj(env.data);
  switch (env.streamEventType) {
    case EventType.executionStatus:
      return `${d.previousStatus ?? "created"} → ${str(d.status)}${d.active ? " · active" : ""}${
        d.error ? ` · ${str(d.error)}` : ""
      }`;
    case EventType.output:
      return `${d.truncated ? "[truncated] " : ""}${str(d.text)}`;
    case EventType.complete:
      return `completed · exit code ${str(d.exitCode)}`;
    case EventType.interrupted:
      return `${str(d.reason) || "interrupted"}${d.forced ? " · forced" : ""}`;
    case EventType.error:
      return `${str(d.error ?? d.message) || "error"}${d.fatal ? " · fatal" : ""}${
        d.code ? ` · ${str(d.code)}` : ""
      }`;
    case EventType.wrapperDisconnected:
      return `${str(d.error)} · close ${str(d.wsCloseCode)}${
        d.wsCloseReason ? ` ${str(d.wsCloseReason)}` : ""
      }`;
    case EventType.wrapperResumed:
      return `resumed · ${str(d.bufferedEvents)} buffered · ${str(d.droppedEvents)} dropped`;
    case EventType.input:
      return `input #${str(d.inputId)}${d.endOfInput ? " · end of input" : ""}${
        "data" in d ? ` · ${inputText(d.data)}` : ""
      }`;
    case EventType.inputDelivered:
      return `input #${str(d.inputId)} delivered`;
  }
  return genericSummary(env.data);
}

/**
 * @param {unknown} data
 * @returns {string}
 */
function genericSummary(data) {
  const d = obj(data);
  /** @type {unknown[]} */
  const parts = [d.type ?? d.event ?? d.kind ?? d.sessionUpdate, d.tool ?? d.name ?? d.title];
  parts.push(d.text ?? d.message ?? d.summary ?? d.label);
  if (Array.isArray(d.message?.content)) {
    for (const c of d.message.content) parts.push(c?.text ?? c?.name);
  }
  const shown = parts.filter((v) => v !== undefined && v !== null && typeof v !== "object");
  return shown.length > 0 ? shown.map(str).join(" · ") : str(data);
}

/**
 * The readable text of an input's `data`: a string as it is, an ACP prompt or a Claude
 * Code user message as its text, a permission answer named, anything else as JSON.
 *
 * @param {unknown} data
 * @returns {string}
 */
export function inputText(data) {
  if (typeof data === "string") return data;
  const d = obj(data);
  if (d.permission) {
    const p = obj(d.permission);
    return `permission #${str(p.requestId)}: ${p.cancelled ? "cancelled" : str(p.optionId)}`;
  }
  if (Array.isArray(d.prompt)) return contentText(d.prompt);
  if (d.type === "user" && d.message) return contentText(obj(d.message).content);
  return data === undefined ? "" : JSON.stringify(data);
}

/**
 * The item of the events view: one envelope, summarized on one line.
 *
 * @param {Envelope} env
 * @returns {Item}
 */
export function eventItem(env) {
  return {
    key: String(env.eventId),
    kind: "event",
    executionId: env.executionId,
    events: [env],
    rev: 1,
    type: env.streamEventType,
    text: summarizeEvent(env),
    tone: toneOf(env),
  };
}

/**
 * @param {Envelope} env
 * @returns {string | undefined}
 */
function toneOf(env) {
  const d = obj(env.data);
  if (env.streamEventType === EventType.output && d.stream === OutputStream.stderr) return "warn";
  if (env.streamEventType === EventType.error || env.streamEventType === "wrapper_disconnected") {
    return "error";
  }
  return undefined;
}

/**
 * Token and cost totals in one line, e.g. `2,500 in · 67 out · 1,700 cached · $0.0123`.
 *
 * @example
 * ```js
 * formatUsage({ inputTokens: 10, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0,
 *   reasoningTokens: 0, costUsd: null }); // "10 in · 2 out"
 * ```
 * @param {Usage} usage
 * @returns {string}
 */
export function formatUsage(usage) {
  const n = (/** @type {number} */ v) => v.toLocaleString("en-US");
  const parts = [`${n(usage.inputTokens)} in`, `${n(usage.outputTokens)} out`];
  if (usage.cacheReadTokens) parts.push(`${n(usage.cacheReadTokens)} cache read`);
  if (usage.cacheWriteTokens) parts.push(`${n(usage.cacheWriteTokens)} cache write`);
  if (usage.reasoningTokens) parts.push(`${n(usage.reasoningTokens)} reasoning`);
  if (usage.costUsd !== null) parts.push(`$${usage.costUsd.toFixed(4)}`);
  return parts.join(" · ");
}

// ------------------------------------------------------------------ the conversation

/**
 * Folds envelopes, in eventId order, into {@link Item}s. Items change in place as later
 * events complete them (a tool call gets its result, a message its next chunk, an input is
 * delivered); every change bumps the item's `rev`.
 *
 * @example
 * ```js
 * const conversation = new Conversation();
 * conversation.add(envelope); // → the items added or changed by it
 * conversation.items;         // everything so far, in order
 * ```
 */
export class Conversation {
  /** @type {Item[]} every item, in order */
  items = [];
  /** @type {Map<string, Usage>} */
  #usage = new Map();
  /** @type {Map<string, Item>} tool calls, parts and plans by execution and their own id */
  #byId = new Map();
  /** @type {Map<string, Item[]>} inputs not delivered yet, per execution */
  #undelivered = new Map();
  /** @type {Map<string, number>} */
  #delivered = new Map();
  /** @type {Map<string, string>} calls without a result yet, by execution and tool name */
  #openTools = new Map();
  /** @type {Map<string, string>} Kilo message roles by message id */
  #roles = new Map();
  /** @type {Set<string>} */
  #executions = new Set();
  /** @type {Item[]} */
  #touched = [];
  /** @type {Item | undefined} */
  #last;

  /**
   * Adds one envelope (events must come in eventId order; an older or repeated one is
   * ignored) and returns the items it added or changed.
   *
   * @param {Envelope} env
   * @returns {Item[]}
   */
  add(env) {
    const lastEvent = this.#last?.events.at(-1);
    if (lastEvent && env.eventId <= lastEvent.eventId) return [];
    this.#touched = [];
    if (!this.#executions.has(env.executionId)) {
      this.#executions.add(env.executionId);
      this.#push(env, "execution", {}, ":x");
    }
    if (!this.#service(env) && !this.#agentLike(env)) {
      this.#push(env, "event", { type: env.streamEventType, text: summarizeEvent(env) });
    }
    return [...new Set(this.#touched)];
  }

  /**
   * Token and cost totals of an execution, or undefined when its events carried none.
   *
   * @param {string} executionId
   * @returns {Usage | undefined}
   */
  usage(executionId) {
    const usage = this.#usage.get(executionId);
    return usage ? { ...usage } : undefined;
  }

  /**
   * Marks an execution's inputs up to `inputId` delivered (what `input_delivered` does; the
   * page also calls it with an execution's `deliveredInputId`). Returns the changed items.
   *
   * @param {string} executionId
   * @param {number} inputId
   * @returns {Item[]}
   */
  markDelivered(executionId, inputId) {
    if (inputId > (this.#delivered.get(executionId) ?? 0)) {
      this.#delivered.set(executionId, inputId);
    }
    const waiting = this.#undelivered.get(executionId) ?? [];
    /** @type {Item[]} */
    const changed = [];
    for (const item of waiting.filter((i) => (i.inputId ?? 0) <= inputId)) {
      item.delivered = true;
      item.rev++;
      changed.push(item);
      const request = this.#byId.get(`${executionId}\0answer\0${item.inputId}`);
      if (request?.answer) {
        request.answer.delivered = true;
        request.rev++;
        changed.push(request);
      }
    }
    this.#undelivered.set(executionId, waiting.filter((i) => !i.delivered));
    return changed;
  }

  /**
   * Whether input `inputId` of the execution is known delivered (by `input_delivered`, or
   * by the execution's `deliveredInputId` given to {@link Conversation.markDelivered}).
   *
   * @param {string} executionId
   * @param {number} inputId
   * @returns {boolean}
   */
  #isDelivered(executionId, inputId) {
    return inputId <= (this.#delivered.get(executionId) ?? 0);
  }

  // ---------------------------------------------------------------- item bookkeeping

  /**
   * @param {Envelope} env
   * @param {string} kind
   * @param {Partial<Item>} fields
   * @param {string} [suffix] distinguishes several items made from one event
   * @returns {Item}
   */
  #push(env, kind, fields, suffix = "") {
    /** @type {Item} */
    const item = {
      key: `${env.eventId}${suffix}`,
      kind,
      executionId: env.executionId,
      events: [env],
      rev: 1,
      ...fields,
    };
    this.items.push(item);
    this.#last = item;
    this.#touched.push(item);
    return item;
  }

  /**
   * @param {Item} item
   * @param {Envelope} env
   * @param {Partial<Item>} fields
   */
  #update(item, env, fields) {
    Object.assign(item, fields);
    if (!item.events.includes(env)) item.events.push(env);
    item.rev++;
    this.#touched.push(item);
  }

  /**
   * An event with nothing of its own to show: its JSON stays reachable from the item before.
   *
   * @param {Envelope} env
   * @param {string} text shown when there is no item to join
   */
  #absorb(env, text) {
    const last = this.#last;
    if (last && last.executionId === env.executionId && last.kind !== "execution") {
      this.#update(last, env, {});
    } else {
      this.#push(env, "status", { text });
    }
  }

  /**
   * @param {string} executionId
   * @returns {Usage}
   */
  #usageOf(executionId) {
    let usage = this.#usage.get(executionId);
    if (!usage) this.#usage.set(executionId, usage = emptyUsage());
    return usage;
  }

  /**
   * Adds tokens and cost to an execution's totals.
   *
   * @param {string} executionId
   * @param {Partial<Usage>} add
   */
  #addUsage(executionId, add) {
    const usage = this.#usageOf(executionId);
    usage.inputTokens += num(add.inputTokens);
    usage.outputTokens += num(add.outputTokens);
    usage.cacheReadTokens += num(add.cacheReadTokens);
    usage.cacheWriteTokens += num(add.cacheWriteTokens);
    usage.reasoningTokens += num(add.reasoningTokens);
    if (typeof add.costUsd === "number") usage.costUsd = (usage.costUsd ?? 0) + add.costUsd;
  }

  /**
   * A message; consecutive chunks with the same `joinKey` become one.
   *
   * @param {Envelope} env
   * @param {string} role
   * @param {string} text
   * @param {string} [joinKey]
   * @param {string} [suffix]
   */
  #message(env, role, text, joinKey, suffix) {
    const last = this.#last;
    if (
      joinKey && last?.kind === "message" && last.joinKey === joinKey &&
      last.executionId === env.executionId
    ) {
      this.#update(last, env, { text: `${last.text}${text}` });
    } else {
      this.#push(env, "message", { role, text, joinKey }, suffix);
    }
  }

  /**
   * Creates or updates the item with an agent-given id (a tool call, a text part, a plan).
   *
   * @param {Envelope} env
   * @param {string} id
   * @param {string} kind
   * @param {Partial<Item>} fields
   * @param {string} [suffix]
   * @returns {Item}
   */
  #upsert(env, id, kind, fields, suffix) {
    const mapKey = `${env.executionId}\0${kind}\0${id}`;
    const existing = this.#byId.get(mapKey);
    if (existing) {
      this.#update(existing, env, fields);
      return existing;
    }
    const item = this.#push(env, kind, fields, suffix);
    this.#byId.set(mapKey, item);
    return item;
  }

  /**
   * A tool call, created or completed; diffs come from its arguments unless given.
   *
   * @param {Envelope} env
   * @param {string} callId
   * @param {Partial<Item>} fields
   * @param {string} [suffix]
   */
  #tool(env, callId, fields, suffix) {
    const defined = Object.fromEntries(
      Object.entries(fields).filter(([, v]) => v !== undefined),
    );
    const item = this.#upsert(env, callId || String(env.eventId), "tool", defined, suffix);
    item.name ??= "tool";
    if (!fields.diffs && item.args !== undefined && !(item.diffs?.length)) {
      item.diffs = diffsFromArgs(item.name, item.args);
    }
  }

  // ---------------------------------------------------------------- the service's events

  /**
   * Events of the service and the wrapper itself (PROTOCOL.md 5.1, 7, 12, 14).
   *
   * @param {Envelope} env
   * @returns {boolean} whether the event was handled
   */
  #service(env) {
    const d = obj(env.data);
    switch (env.streamEventType) {
      case EventType.executionStatus:
        this.#executionStatus(env, d);
        return true;
      case EventType.input:
        this.#input(env, d);
        return true;
      case EventType.inputDelivered:
        this.#inputDelivered(env, d);
        return true;
      case EventType.output:
        this.#output(env, str(d.stream) || OutputStream.stdout, str(d.text), d.truncated === true);
        return true;
      case EventType.complete:
        this.#push(env, "status", {
          text: summarizeEvent(env),
          tone: d.exitCode === 0 ? "ok" : "warn",
        });
        return true;
      case EventType.interrupted:
      case EventType.wrapperResumed:
        this.#push(env, "status", { text: summarizeEvent(env), tone: "warn" });
        return true;
      case EventType.error:
      case EventType.wrapperDisconnected:
        this.#error(env, str(d.error ?? d.message) || "error", str(d.code), d.fatal === true);
        return true;
      case EventType.acp:
        return this.#acp(env, d);
      case EventType.acpTurn:
        this.#turnEnd(env, `turn ended · ${str(d.stopReason) || "unknown reason"}`, d);
        if (d.error !== undefined) this.#error(env, errorText(d), "", false);
        return true;
      case EventType.permissionRequest:
        return this.#permissionRequest(env, d);
      case EventType.acpInputIgnored:
        this.#push(env, "status", {
          text: `input #${str(d.inputId)} ignored${d.reason ? ` · ${str(d.reason)}` : ""}`,
          tone: "warn",
        });
        return true;
    }
    return false;
  }

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} d
   */
  #executionStatus(env, d) {
    const status = str(d.status);
    const tone = status === "failed" ? "error" : status === "interrupted" ? "warn" : "info";
    this.#push(env, "status", { text: summarizeEvent(env), status, tone });
    if (TERMINAL_STATUSES.includes(status)) this.#closePermissions(env.executionId);
  }

  /**
   * @param {Envelope} env
   * @param {string} text
   * @param {string} code
   * @param {boolean} fatal
   */
  #error(env, text, code, fatal) {
    this.#push(env, "error", { text, code, fatal });
  }

  /**
   * @param {Envelope} env
   * @param {string} stream
   * @param {string} text
   * @param {boolean} truncated
   */
  #output(env, stream, text, truncated) {
    const line = truncated ? `${text} [truncated]` : text;
    const last = this.#last;
    if (
      last?.kind === "output" && last.stream === stream && last.executionId === env.executionId &&
      (last.lines?.length ?? 0) < MAX_JOINED_LINES
    ) {
      last.lines?.push(line);
      this.#update(last, env, {});
    } else {
      this.#push(env, "output", { stream, lines: [line] });
    }
  }

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} d
   */
  #input(env, d) {
    const inputId = num(d.inputId);
    const permission = obj(d.data).permission;
    const item = this.#push(env, "input", {
      inputId,
      text: "data" in d ? inputText(d.data) : "",
      endOfInput: d.endOfInput === true,
      delivered: this.#isDelivered(env.executionId, inputId),
      permission: permission
        ? { ...obj(permission), requestId: num(obj(permission).requestId) }
        : undefined,
    });
    if (item.permission) this.#answer(env, item.permission, inputId);
    if (!item.delivered) {
      const waiting = this.#undelivered.get(env.executionId) ?? [];
      waiting.push(item);
      this.#undelivered.set(env.executionId, waiting);
    }
  }

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} d
   */
  #inputDelivered(env, d) {
    const inputId = num(d.inputId);
    const target = this.items.findLast((i) =>
      i.kind === "input" && i.executionId === env.executionId && i.inputId === inputId
    );
    if (target) this.#update(target, env, {});
    else this.#absorb(env, summarizeEvent(env));
    this.#touched.push(...this.markDelivered(env.executionId, inputId));
  }

  /**
   * @param {Envelope} env
   * @param {string} text
   * @param {Record<string, any>} d
   */
  #turnEnd(env, text, d) {
    this.#push(env, "turn", { text, stopReason: str(d.stopReason) || undefined });
    this.#byId.delete(`${env.executionId}\0plan\0current`);
    this.#closePermissions(env.executionId);
  }

  // ---------------------------------------------------------------- permissions (ACP)

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #permissionRequest(env, d) {
    if (typeof d.requestId !== "number" || !Array.isArray(d.options)) return false;
    const toolCall = obj(d.toolCall);
    const tool = this.#byId.get(`${env.executionId}\0tool\0${str(toolCall.toolCallId)}`);
    // Only an option with an id can be answered (the wrapper refuses any other answer).
    const options = d.options.map((/** @type {unknown} */ o) => obj(o))
      .filter((option) => str(option.optionId) !== "")
      .map((option) => ({
        optionId: str(option.optionId),
        name: str(option.name) || str(option.optionId),
        kind: str(option.kind),
      }));
    const title = str(toolCall.title) || tool?.title || tool?.name || "an action";
    this.#upsert(env, String(d.requestId), "permission", {
      requestId: d.requestId,
      title,
      options,
      answer: null,
      closed: false,
    });
    return true;
  }

  /**
   * Links an input that answers a permission request to the request.
   *
   * @param {Envelope} env
   * @param {{requestId?: unknown, optionId?: unknown, cancelled?: unknown}} permission
   * @param {number} inputId
   */
  #answer(env, permission, inputId) {
    const request = this.#byId.get(`${env.executionId}\0permission\0${str(permission.requestId)}`);
    if (!request || request.answer || request.closed) return;
    this.#update(request, env, {
      answer: {
        inputId,
        optionId: typeof permission.optionId === "string" ? permission.optionId : undefined,
        cancelled: permission.cancelled === true,
        // The page may have marked it delivered before its `input` event arrived.
        delivered: this.#isDelivered(env.executionId, inputId),
      },
    });
    this.#byId.set(`${env.executionId}\0answer\0${inputId}`, request);
  }

  /**
   * A turn or the execution ended: requests still open can no longer be answered.
   *
   * @param {string} executionId
   */
  #closePermissions(executionId) {
    const prefix = `${executionId}\0permission\0`;
    for (const [key, item] of this.#byId) {
      if (key.startsWith(prefix) && !item.closed && !item.answer?.delivered) {
        item.closed = true;
        item.rev++;
        this.#touched.push(item);
      }
    }
  }

  // ---------------------------------------------------------------- ACP session updates

  /**
   * One ACP `session/update` (its `update` object, PROTOCOL.md 14).
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #acp(env, d) {
    switch (d.sessionUpdate) {
      case "agent_message_chunk":
        this.#message(env, "assistant", contentText(d.content), "acp:agent");
        return true;
      case "agent_thought_chunk":
        this.#message(env, "thought", contentText(d.content), "acp:thought");
        return true;
      case "user_message_chunk":
        this.#message(env, "user", contentText(d.content), "acp:user");
        return true;
      case "tool_call":
      case "tool_call_update":
        this.#acpTool(env, d);
        return true;
      case "plan":
        this.#plan(env, Array.isArray(d.entries) ? d.entries : []);
        return true;
      case "current_mode_update":
        this.#push(env, "status", { text: `mode: ${str(d.currentModeId)}` });
        return true;
      case "available_commands_update":
        this.#absorb(env, "commands updated");
        return true;
    }
    return false;
  }

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} d
   */
  #acpTool(env, d) {
    const content = Array.isArray(d.content) ? d.content : undefined;
    const diffs = content?.filter((c) => obj(c).type === "diff").map((c) => ({
      path: str(c.path),
      lines: diffLines(typeof c.oldText === "string" ? c.oldText : "", str(c.newText)),
    }));
    const text = content?.filter((c) => obj(c).type !== "diff").map(contentText).join("\n");
    const rawOutput = d.truncated
      ? `[update too large to store: ${str(d.bytes)} bytes]`
      : d.rawOutput === undefined
      ? undefined
      : contentText(d.rawOutput);
    const status = d.status === undefined ? undefined : str(d.status);
    this.#tool(env, str(d.toolCallId), {
      name: d.title === undefined ? undefined : str(d.title),
      title: d.title === undefined ? undefined : str(d.title),
      toolKind: d.kind === undefined ? undefined : str(d.kind),
      status,
      isError: status === undefined ? undefined : status === "failed",
      args: d.rawInput,
      output: text || rawOutput,
      diffs: diffs?.length ? diffs : undefined,
      locations: Array.isArray(d.locations)
        ? d.locations.map((l) => `${str(obj(l).path)}${obj(l).line ? `:${obj(l).line}` : ""}`)
        : undefined,
    });
  }

  /**
   * A plan replaces the plan of the current turn.
   *
   * @param {Envelope} env
   * @param {unknown[]} entries
   */
  #plan(env, entries) {
    const shaped = entries.map((e) => {
      const entry = obj(e);
      return {
        content: str(entry.content ?? entry.text),
        status: str(entry.status) || (entry.completed ? "completed" : "pending"),
        priority: entry.priority === undefined ? undefined : str(entry.priority),
      };
    });
    this.#upsert(env, "current", "plan", { entries: shaped });
  }

  // ---------------------------------------------------------------- agent formats

  /**
   * `agent` lines and other wrapper events, by the shape of their data.
   *
   * @param {Envelope} env
   * @returns {boolean}
   */
  #agentLike(env) {
    const d = obj(env.data);
    if (env.streamEventType === EventType.kilocode) return this.#kilo(env, d);
    if (typeof d.type !== "string") return false;
    if (d.type.startsWith("item.") || d.type.startsWith("turn.") || d.type.startsWith("thread.")) {
      return this.#codex(env, d);
    }
    switch (d.type) {
      case "system":
      case "assistant":
      case "user":
        return this.#claude(env, d);
      case "result":
        return this.#result(env, d);
      case "init":
        this.#push(env, "status", { text: describeStart(d) });
        return true;
      case "message":
      case "tool_use":
      case "tool_result":
        return d.part ? this.#part(env, obj(d.part), "assistant") : this.#gemini(env, d);
      case "error":
        this.#error(env, errorText(d), str(d.severity ?? d.code), false);
        return true;
    }
    // opencode `run --format json`: text, reasoning, step_start, step_finish … with a part
    return d.part ? this.#part(env, obj(d.part), "assistant") : false;
  }

  /**
   * Claude Code stream-json: `system`, `assistant`, `user` messages.
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #claude(env, d) {
    if (d.type === "system") {
      this.#push(env, "status", { text: describeStart(d) });
      return true;
    }
    if (d.message === undefined && typeof d.text === "string") {
      this.#message(env, d.type === "user" ? "user" : "assistant", d.text); // a plain shape
      return true;
    }
    const message = obj(d.message);
    const content = typeof message.content === "string"
      ? [{ type: "text", text: message.content }]
      : message.content;
    if (!Array.isArray(content)) return false;
    const role = d.type === "user" ? "user" : "assistant";
    content.forEach((c, i) => this.#claudeBlock(env, role, obj(c), `:${i}`));
    if (content.length === 0) this.#absorb(env, `${role} message`);
    return true;
  }

  /**
   * @param {Envelope} env
   * @param {string} role
   * @param {Record<string, any>} block
   * @param {string} suffix
   */
  #claudeBlock(env, role, block, suffix) {
    if (block.type === "text") this.#message(env, role, str(block.text), undefined, suffix);
    else if (block.type === "thinking") {
      this.#message(env, "thought", str(block.thinking), undefined, suffix);
    } else if (block.type === "tool_use") {
      this.#tool(env, str(block.id), { name: str(block.name), args: block.input }, suffix);
    } else if (block.type === "tool_result") {
      const isError = block.is_error === true;
      this.#tool(env, str(block.tool_use_id), {
        output: contentText(block.content),
        isError,
        status: isError ? "failed" : "completed",
      }, suffix);
    } else {
      this.#push(env, "event", { type: str(block.type) || "block", text: str(block) }, suffix);
    }
  }

  /**
   * The final `result` of Claude Code or Gemini CLI: the result text whole, and usage.
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #result(env, d) {
    const u = obj(d.usage ?? d.stats);
    this.#addUsage(env.executionId, {
      inputTokens: u.input_tokens,
      outputTokens: u.output_tokens,
      cacheReadTokens: u.cache_read_input_tokens ?? u.cached,
      cacheWriteTokens: u.cache_creation_input_tokens,
      costUsd: typeof d.total_cost_usd === "number" ? d.total_cost_usd : undefined,
    });
    const isError = d.is_error === true || (d.status !== undefined && d.status !== "success") ||
      (d.subtype !== undefined && d.subtype !== "success");
    const text = typeof d.result === "string"
      ? d.result
      : d.error
      ? errorText(d)
      : str(d.status ?? d.subtype) || "done";
    this.#push(env, "result", { text, isError, usage: this.usage(env.executionId) });
    return true;
  }

  /**
   * Gemini CLI stream-json: `message` (with `delta` chunks), `tool_use`, `tool_result`.
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #gemini(env, d) {
    if (d.type === "message") {
      const role = d.role === "user" ? "user" : "assistant";
      this.#message(env, role, contentText(d.content), d.delta ? `gemini:${role}` : undefined);
    } else if (d.type === "tool_use") {
      const name = str(d.tool_name ?? d.tool ?? d.name) || "tool";
      const id = str(d.tool_id ?? d.id) || `${name}@${env.eventId}`;
      this.#tool(env, id, { name, args: d.parameters ?? d.input, status: "running" });
      this.#openTools.set(`${env.executionId}\0${name}`, id);
    } else {
      this.#toolResult(env, d);
    }
    return true;
  }

  /**
   * A `tool_result` by the call's id, or, in shapes without ids, by the tool's name.
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   */
  #toolResult(env, d) {
    const byName = `${env.executionId}\0${str(d.tool_name ?? d.tool ?? d.name)}`;
    const id = str(d.tool_id ?? d.id) || this.#openTools.get(byName) || "";
    this.#openTools.delete(byName);
    const failed = d.status === "error" || d.error !== undefined ||
      (typeof d.exitCode === "number" && d.exitCode !== 0);
    this.#tool(env, id, {
      output: d.error ? errorText(d) : contentText(d.output ?? d.text ?? d.content),
      isError: failed,
      status: failed ? "failed" : "completed",
    });
  }

  /**
   * Codex `exec --json`: thread and turn events, items started, updated and completed.
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #codex(env, d) {
    if (d.type === "turn.completed") {
      const u = obj(d.usage);
      this.#addUsage(env.executionId, {
        inputTokens: u.input_tokens,
        outputTokens: u.output_tokens,
        cacheReadTokens: u.cached_input_tokens,
        reasoningTokens: u.reasoning_output_tokens,
      });
      this.#push(env, "turn", {
        text: `turn completed · ${formatUsage(this.#usageOf(env.executionId))}`,
      });
    } else if (d.type === "turn.failed") {
      this.#error(env, errorText(d), "", false);
    } else if (d.type.startsWith("item.")) {
      return this.#codexItem(env, obj(d.item));
    } else {
      this.#absorb(env, d.type === "thread.started" ? "thread started" : str(d.type));
    }
    return true;
  }

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} item
   * @returns {boolean}
   */
  #codexItem(env, item) {
    const id = str(item.id);
    const status = item.status === undefined ? undefined : str(item.status);
    switch (item.type) {
      case "agent_message":
        this.#upsert(env, id, "message", { role: "assistant", text: str(item.text) });
        return true;
      case "reasoning":
        this.#upsert(env, id, "message", { role: "thought", text: str(item.text) });
        return true;
      case "command_execution":
        this.#tool(env, id, {
          name: "shell",
          args: { command: item.command },
          output: str(item.aggregated_output),
          status,
          isError: status === "failed" ||
            (typeof item.exit_code === "number" && item.exit_code !== 0),
        });
        return true;
      case "mcp_tool_call":
        this.#tool(env, id, {
          name: `${str(item.server)}.${str(item.tool)}`,
          args: item.arguments,
          output: item.result === undefined
            ? undefined
            : contentText(obj(item.result).content ?? item.result),
          status,
          isError: status === "failed",
        });
        return true;
      case "web_search":
        this.#tool(env, id, { name: "web_search", args: { query: item.query }, status });
        return true;
      case "file_change":
        this.#upsert(env, id, "files", {
          files: (Array.isArray(item.changes) ? item.changes : []).map((c) => ({
            path: str(obj(c).path),
            kind: str(obj(c).kind),
          })),
          status,
        });
        return true;
      case "todo_list":
        this.#plan(env, Array.isArray(item.items) ? item.items : []);
        return true;
      case "error":
        this.#error(env, str(item.message), "", false);
        return true;
    }
    return false;
  }

  /**
   * opencode and Kilo message parts: text, reasoning, tool, step-start, step-finish.
   *
   * @param {Envelope} env
   * @param {Record<string, any>} part
   * @param {string} role
   * @returns {boolean}
   */
  #part(env, part, role) {
    const id = str(part.id);
    switch (part.type) {
      case "text":
        this.#upsert(env, id, "message", { role, text: str(part.text) });
        return true;
      case "reasoning":
        this.#upsert(env, id, "message", { role: "thought", text: str(part.text) });
        return true;
      case "tool": {
        const state = obj(part.state);
        const status = str(state.status) || undefined;
        this.#tool(env, str(part.callID) || id, {
          name: str(part.tool),
          title: state.title === undefined ? undefined : str(state.title),
          args: state.input,
          output: state.output !== undefined
            ? contentText(state.output)
            : state.error !== undefined
            ? str(state.error)
            : undefined,
          status,
          isError: status === "error",
        });
        return true;
      }
      case "step-start":
        this.#absorb(env, "step started");
        return true;
      case "step-finish":
        this.#stepFinish(env, part);
        return true;
    }
    return false;
  }

  /**
   * @param {Envelope} env
   * @param {Record<string, any>} part
   */
  #stepFinish(env, part) {
    const t = obj(part.tokens);
    this.#addUsage(env.executionId, {
      inputTokens: t.input,
      outputTokens: t.output,
      reasoningTokens: t.reasoning,
      cacheReadTokens: obj(t.cache).read,
      cacheWriteTokens: obj(t.cache).write,
      costUsd: typeof part.cost === "number" ? part.cost : undefined,
    });
    const usage = formatUsage(this.#usageOf(env.executionId));
    this.#push(env, "turn", { text: `step finished · ${str(part.reason) || "done"} · ${usage}` });
  }

  /**
   * Kilo / opencode server events (`kilocode`, from the wrapper's `--sse`).
   *
   * @param {Envelope} env
   * @param {Record<string, any>} d
   * @returns {boolean}
   */
  #kilo(env, d) {
    const p = obj(d.properties);
    const type = str(d.type ?? d.event);
    if (d.raw !== undefined) {
      this.#output(env, str(d.event) || "sse", str(d.raw), false);
    } else if (type === "message.updated") {
      const info = obj(p.info);
      if (info.id) this.#roles.set(str(info.id), str(info.role));
      this.#absorb(env, `message ${str(info.role)}`);
    } else if (type === "message.part.updated") {
      const part = obj(p.part);
      return this.#part(env, part, this.#roles.get(str(part.messageID)) ?? "assistant");
    } else if (type === "session.status") {
      this.#push(env, "status", { text: `session ${str(obj(p.status).type ?? p.status)}` });
    } else if (type === "session.idle") {
      this.#turnEnd(env, "session idle", {});
    } else if (type === "session.error") {
      this.#error(env, errorText({ error: p.error }), "", false);
    } else if (type.startsWith("permission.")) {
      const patterns = Array.isArray(p.patterns) ? ` · ${p.patterns.map(str).join(", ")}` : "";
      const what = str(p.permission ?? p.type ?? p.title);
      this.#push(env, "status", { text: `${type}: ${what}${patterns}`, tone: "warn" });
    } else {
      return false;
    }
    return true;
  }
}

/**
 * @param {Record<string, any>} d
 * @returns {string}
 */
function describeStart(d) {
  const parts = [d.subtype === "init" || d.type === "init" ? "session started" : str(d.subtype)];
  if (d.model) parts.push(`model ${str(d.model)}`);
  if (d.cwd) parts.push(str(d.cwd));
  return parts.filter(Boolean).join(" · ");
}

/**
 * The message of an error in any of the common shapes.
 *
 * @param {Record<string, any>} d
 * @returns {string}
 */
function errorText(d) {
  const e = d.error;
  if (typeof e === "string") return e;
  const error = obj(e);
  return str(
    error.message ?? obj(error.data).message ?? error.name ?? d.message ??
      (e === undefined ? "error" : e),
  );
}

// ------------------------------------------------------------------ text rendering

/**
 * @typedef {object} RenderTextOptions
 * @property {number} [maxLines] lines of a long tool output or diff shown before "… n more
 *   lines" (default 12; `Infinity` for everything)
 */

/**
 * An item as plain text, one or more lines (for a terminal; no colors, no markup).
 *
 * @example
 * ```js
 * renderText({ key: "1", kind: "message", role: "assistant", text: "Done.", executionId: "e",
 *   events: [], rev: 1 }); // "Done."
 * ```
 * @param {Item} item
 * @param {RenderTextOptions} [options]
 * @returns {string}
 */
export function renderText(item, options = {}) {
  const maxLines = options.maxLines ?? COLLAPSE_LINES;
  const indent = (/** @type {string} */ text) =>
    clip(text.split("\n"), maxLines).map((l) => `  ${l}`);
  switch (item.kind) {
    case "execution":
      return `━━ execution ${item.executionId}`;
    case "message":
      return item.role === "assistant"
        ? str(item.text)
        : `${ROLE_PREFIX[item.role ?? ""] ?? `${item.role}:`} ${str(item.text)}`;
    case "tool":
      return [toolLine(item), ...toolBody(item, maxLines, indent)].join("\n");
    case "files":
      return `▸ files changed: ${
        (item.files ?? []).map((f) => `${f.path} (${f.kind})`).join(", ")
      }`;
    case "error":
      return `✖ ${item.code ? `${item.code}: ` : ""}${str(item.text)}${
        item.fatal ? " (fatal)" : ""
      }`;
    case "output":
      return (item.lines ?? []).map((l) =>
        item.stream === OutputStream.stdout ? l : `[${item.stream}] ${l}`
      ).join("\n");
    case "result":
      return `${item.isError ? "✖" : "✔"} result: ${str(item.text)}${
        item.usage ? `\n  ${formatUsage(item.usage)}` : ""
      }`;
    case "input":
      return `» input #${item.inputId}${item.endOfInput ? " (end of input)" : ""}: ${
        str(item.text)
      } · ${item.delivered ? "delivered" : "sent"}`;
    case "plan":
      return [
        "plan:",
        ...(item.entries ?? []).map((e) => `  ${PLAN_MARK[e.status] ?? "[ ]"} ${e.content}`),
      ]
        .join("\n");
    case "permission":
      return permissionText(item);
    case "turn":
      return `── ${str(item.text)}`;
    case "status":
      return `· ${str(item.text)}`;
  }
  return `${str(item.type)}: ${str(item.text)}`;
}

/** @type {Record<string, string>} */
const ROLE_PREFIX = { user: ">", thought: "(thinking)", system: "[system]" };
/** @type {Record<string, string>} */
const PLAN_MARK = { completed: "[x]", in_progress: "[~]", pending: "[ ]" };

/**
 * @param {string[]} lines
 * @param {number} max
 * @returns {string[]}
 */
function clip(lines, max) {
  if (lines.length <= max) return lines;
  return [...lines.slice(0, max), `… ${lines.length - max} more lines`];
}

/**
 * A short one-line view of a tool call's arguments.
 *
 * @param {unknown} args
 * @returns {string}
 */
export function argsSummary(args) {
  if (args === undefined) return "";
  const a = obj(args);
  const main = a.command ?? a.file_path ?? a.filePath ?? a.path ?? a.pattern ?? a.query ?? a.url;
  const text = typeof main === "string" ? main : JSON.stringify(args);
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/**
 * @param {Item} item
 * @returns {string}
 */
function toolLine(item) {
  const parts = [`▸ ${str(item.name)}`];
  if (item.toolKind) parts.push(`(${item.toolKind})`);
  if (item.args !== undefined) parts.push(argsSummary(item.args));
  if (item.locations?.length) parts.push(`@ ${item.locations.join(", ")}`);
  if (item.status) parts.push(`[${item.status}]`);
  return parts.filter(Boolean).join(" ");
}

/**
 * @param {Item} item
 * @param {number} maxLines
 * @param {(text: string) => string[]} indent
 * @returns {string[]}
 */
function toolBody(item, maxLines, indent) {
  const lines = [];
  for (const diff of item.diffs ?? []) {
    lines.push(`  ${diff.path}`);
    const shown = clip(diff.lines.map((l) => `${l.op}${l.text}`), maxLines);
    lines.push(...shown.map((l) => `  ${l}`));
  }
  if (item.output) lines.push(...indent(item.output));
  return lines;
}

/**
 * @param {Item} item
 * @returns {string}
 */
function permissionText(item) {
  const options = (item.options ?? []).map((o) => `${o.name} [${o.optionId}]`).join(" | ");
  const head = `? permission #${item.requestId}: ${str(item.title)} — ${options}`;
  const answer = item.answer;
  if (!answer) return item.closed ? `${head}\n  (closed without an answer)` : head;
  const chosen = answer.cancelled
    ? "cancelled"
    : item.options?.find((o) => o.optionId === answer.optionId)?.name ?? str(answer.optionId);
  return `${head}\n  answer: ${chosen} · ${answer.delivered ? "delivered" : "sent"}`;
}
