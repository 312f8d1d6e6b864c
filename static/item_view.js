// @ts-check
/// <reference lib="dom" />
/**
 * Draws conversation items (`conversation.js`) as DOM elements. Every piece of agent or user
 * data reaches the DOM through `textContent` or an attribute set as plain text (never
 * `innerHTML`, never a URL), so no event data can become markup or a link.
 *
 * @example
 * ```js
 * import { renderItem } from "./item_view.js";
 * list.append(renderItem(item, context));
 * ```
 *
 * @module
 */
import { argsSummary, formatUsage, isLong } from "./conversation.js";

/** @typedef {import("./conversation.js").Item} Item */
/** @typedef {import("./conversation.js").Usage} Usage */
/** @typedef {import("./conversation.js").PermissionOption} PermissionOption */

/**
 * @typedef {object} Execution What the page knows of an execution (PROTOCOL.md 4).
 * @property {string} executionId
 * @property {string} status
 * @property {unknown} [input]
 * @property {number} [lastInputId]
 * @property {number} [deliveredInputId]
 */

/**
 * @typedef {object} ViewContext
 * @property {(executionId: string) => Execution | undefined} execution
 * @property {(executionId: string) => Usage | undefined} usage
 * @property {boolean} canAnswer whether permission buttons are shown (api key only)
 * @property {Set<string>} openRaw keys of items whose raw JSON is shown
 * @property {Set<string>} openDetails `<item key>/<part>` of expanded long texts
 * @property {Map<string, string>} answering item key → option being sent
 * @property {(item: Item, option: PermissionOption) => void} onAnswer
 * @property {(text: string, button: HTMLButtonElement) => void} onCopy
 * @property {() => void} onResize an element changed its height
 */

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {unknown} [text]
 * @returns {HTMLElement}
 */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/**
 * @param {string} iso
 * @returns {string} `hh:mm:ss.mmm` in local time
 */
export function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (/** @type {number} */ n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${
    pad(d.getMilliseconds(), 3)
  }`;
}

/**
 * A button that copies `text`.
 *
 * @param {string} text
 * @param {ViewContext} ctx
 * @returns {HTMLButtonElement}
 */
export function copyButton(text, ctx) {
  const button = /** @type {HTMLButtonElement} */ (el("button", "copy", "Copy"));
  button.type = "button";
  button.title = "Copy to the clipboard";
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    ctx.onCopy(text, button);
  });
  return button;
}

/**
 * An item as a list element: its kind's body, its time and a toggle for its raw JSON.
 *
 * @param {Item} item
 * @param {ViewContext} ctx
 * @returns {HTMLElement}
 */
export function renderItem(item, ctx) {
  const li = el("li", `item k-${item.kind}`);
  li.dataset.key = item.key;
  li.dataset.kind = item.kind;
  li.dataset.executionId = item.executionId;
  if (item.tone) li.dataset.tone = item.tone;
  const body = el("div", "item-body");
  (DRAW[item.kind] ?? drawEvent)(body, item, ctx);
  li.append(body);
  if (item.kind !== "execution") li.append(rawToggle(li, item, ctx));
  return li;
}

/**
 * @param {HTMLElement} li
 * @param {Item} item
 * @param {ViewContext} ctx
 * @returns {HTMLElement}
 */
function rawToggle(li, item, ctx) {
  const side = el("div", "item-side");
  const first = item.events[0];
  const time = el("span", "time", clock(first?.timestamp ?? ""));
  time.title = `event ${first?.eventId} · ${first?.timestamp ?? ""}`;
  const button = /** @type {HTMLButtonElement} */ (el("button", "raw", "{ }"));
  button.type = "button";
  button.title = "Show the raw JSON of this item's events";
  button.setAttribute("aria-expanded", "false");
  const show = (/** @type {boolean} */ open) => {
    button.setAttribute("aria-expanded", String(open));
    li.querySelector(":scope > pre.json")?.remove();
    if (open) {
      const events = item.events.length === 1 ? item.events[0] : item.events;
      li.append(el("pre", "json", JSON.stringify(events, null, 2)));
    }
  };
  button.addEventListener("click", () => {
    const open = !ctx.openRaw.has(item.key);
    if (open) ctx.openRaw.add(item.key);
    else ctx.openRaw.delete(item.key);
    show(open);
    ctx.onResize();
  });
  if (ctx.openRaw.has(item.key)) show(true);
  side.append(time, button);
  return side;
}

/**
 * A text, collapsed into `<details>` when long (its open state kept across redraws).
 *
 * @param {string} text
 * @param {string} label
 * @param {string} id
 * @param {Item} item
 * @param {ViewContext} ctx
 * @param {boolean} [collapse] collapse even a short text
 * @returns {HTMLElement}
 */
function longText(text, label, id, item, ctx, collapse = false) {
  if (!collapse && !isLong(text)) return el("pre", "text", text);
  const details = /** @type {HTMLDetailsElement} */ (el("details", "long"));
  const lines = text.split("\n").length;
  details.append(el("summary", "", `${label} · ${lines} lines · ${text.length} characters`));
  const key = `${item.key}/${id}`;
  const fill = () => {
    if (details.open && !details.querySelector("pre")) details.append(el("pre", "text", text));
  };
  details.open = ctx.openDetails.has(key);
  fill();
  details.addEventListener("toggle", () => {
    if (details.open) ctx.openDetails.add(key);
    else ctx.openDetails.delete(key);
    fill();
    ctx.onResize();
  });
  return details;
}

/** @typedef {(body: HTMLElement, item: Item, ctx: ViewContext) => void} Draw */

/** @type {Record<string, Draw>} */
const DRAW = {
  execution: drawExecution,
  status: (body, item) => body.append(el("span", "status-text", item.text)),
  turn: (body, item) => body.append(el("span", "turn-text", item.text)),
  message: drawMessage,
  tool: drawTool,
  files: drawFiles,
  error: drawError,
  output: drawOutput,
  result: drawResult,
  input: drawInput,
  plan: drawPlan,
  permission: drawPermission,
};

/** @type {Draw} */
function drawExecution(body, item, ctx) {
  const exec = ctx.execution(item.executionId);
  const head = el("div", "exec-title");
  head.append(el("span", "label", "Execution"));
  head.append(el("code", "full-id", item.executionId), copyButton(item.executionId, ctx));
  if (exec) head.append(el("span", `badge ${exec.status}`, exec.status));
  body.append(head);
  if (exec && exec.input !== undefined && exec.input !== null) {
    const prompt = el("div", "prompt");
    prompt.append(el("span", "label", "Prompt"));
    prompt.append(longText(promptText(exec.input), "Prompt", "prompt", item, ctx));
    body.append(prompt);
  }
  const usage = ctx.usage(item.executionId);
  if (usage) body.append(el("div", "usage", `Usage: ${formatUsage(usage)}`));
}

/**
 * An execution's `input` as text: a string, a `prompt` field, or JSON.
 *
 * @param {unknown} input
 * @returns {string}
 */
export function promptText(input) {
  if (typeof input === "string") return input;
  const prompt = /** @type {{prompt?: unknown}} */ (input)?.prompt;
  if (typeof prompt === "string") return prompt;
  return JSON.stringify(input, null, 2);
}

/** @type {Record<string, string>} */
const ROLE_LABEL = { assistant: "Agent", user: "User", thought: "Thinking", system: "System" };

/** @type {Draw} */
function drawMessage(body, item, ctx) {
  body.dataset.role = item.role ?? "";
  body.append(el("span", "label", ROLE_LABEL[item.role ?? ""] ?? item.role));
  const text = item.text ?? "";
  body.append(
    item.role === "thought"
      ? longText(text, "Thinking", "text", item, ctx)
      : el("div", "text", text),
  );
}

/** @type {Draw} */
function drawTool(body, item, ctx) {
  const head = el("div", "tool-head");
  head.append(el("span", "label", "Tool"), el("span", "tool-name", item.name));
  if (item.toolKind) head.append(el("span", "chip", item.toolKind));
  if (item.status) head.append(el("span", `chip status-${item.status}`, item.status));
  if (item.isError) body.dataset.error = "true";
  body.append(head);
  if (item.args !== undefined) {
    const args = JSON.stringify(item.args, null, 2) ?? "";
    const summary = argsSummary(item.args);
    body.append(el("div", "tool-args", summary));
    if (args !== JSON.stringify(summary)) {
      body.append(longText(args, "Arguments", "args", item, ctx, true));
    }
  }
  if (item.locations?.length) body.append(el("div", "locations", item.locations.join(", ")));
  for (const [i, diff] of (item.diffs ?? []).entries()) body.append(drawDiff(diff, i, item, ctx));
  if (item.output) body.append(longText(item.output, "Result", "output", item, ctx));
}

/**
 * @param {import("./conversation.js").FileDiff} diff
 * @param {number} index
 * @param {Item} item
 * @param {ViewContext} ctx
 * @returns {HTMLElement}
 */
function drawDiff(diff, index, item, ctx) {
  const box = el("div", "diff");
  box.append(el("div", "diff-path", diff.path));
  const pre = el("pre", "diff-lines");
  const key = `${item.key}/diff${index}`;
  const shown = diff.lines.length > 40 && !ctx.openDetails.has(key)
    ? diff.lines.slice(0, 40)
    : diff.lines;
  for (const line of shown) {
    const cls = line.op === "+" ? "add" : line.op === "-" ? "del" : "ctx";
    pre.append(el("span", cls, `${line.op} ${line.text}\n`));
  }
  box.append(pre);
  if (shown.length < diff.lines.length) {
    const more = el("button", "more", `Show all ${diff.lines.length} lines`);
    more.addEventListener("click", () => {
      ctx.openDetails.add(key);
      box.replaceWith(drawDiff(diff, index, item, ctx));
      ctx.onResize();
    });
    box.append(more);
  }
  return box;
}

/** @type {Draw} */
function drawFiles(body, item) {
  body.append(el("span", "label", "Files changed"));
  const list = el("ul", "files");
  for (const file of item.files ?? []) list.append(el("li", "", `${file.path} (${file.kind})`));
  body.append(list);
}

/** @type {Draw} */
function drawError(body, item) {
  body.append(el("span", "label", item.fatal ? "Fatal error" : "Error"));
  if (item.code) body.append(el("code", "code", item.code));
  body.append(el("div", "text", item.text));
}

/** @type {Draw} */
function drawOutput(body, item, ctx) {
  body.dataset.stream = item.stream ?? "";
  body.append(el("span", "label stream", item.stream));
  body.append(longText((item.lines ?? []).join("\n"), item.stream ?? "output", "lines", item, ctx));
}

/** @type {Draw} */
function drawResult(body, item) {
  if (item.isError) body.dataset.error = "true";
  body.append(el("span", "label", item.isError ? "Result (error)" : "Result"));
  body.append(el("div", "text", item.text));
  if (item.usage) body.append(el("div", "usage", formatUsage(item.usage)));
}

/** @type {Draw} */
function drawInput(body, item) {
  body.dataset.state = item.delivered ? "delivered" : "sent";
  const head = el("div", "input-head");
  head.append(el("span", "label", `Input #${item.inputId}`));
  if (item.endOfInput) head.append(el("span", "chip", "end of input"));
  head.append(el("span", "chip delivery", item.delivered ? "delivered" : "sent"));
  body.append(head);
  if (item.text) body.append(el("div", "text", item.text));
}

/** @type {Record<string, string>} */
const PLAN_MARK = { completed: "✓", in_progress: "◐", pending: "○" };

/** @type {Draw} */
function drawPlan(body, item) {
  body.append(el("span", "label", "Plan"));
  const list = el("ol", "plan");
  for (const entry of item.entries ?? []) {
    const li = el("li", `plan-${entry.status}`);
    li.append(el("span", "mark", PLAN_MARK[entry.status] ?? "○"), el("span", "", entry.content));
    list.append(li);
  }
  body.append(list);
}

/** @type {Draw} */
function drawPermission(body, item, ctx) {
  body.append(el("span", "label", `Permission request #${item.requestId}`));
  body.append(el("div", "text", item.title));
  const answer = item.answer;
  const chosen = (/** @type {string | undefined} */ id) =>
    item.options?.find((o) => o.optionId === id)?.name ?? id ?? "";
  if (answer) {
    const what = answer.cancelled ? "cancelled" : chosen(answer.optionId);
    const state = answer.delivered ? "delivered" : "sent";
    const line = el("div", "answer", `Answer: ${what} · ${state}`);
    line.dataset.state = state;
    body.append(line);
  } else if (item.closed) {
    body.append(el("div", "answer muted", "Closed without an answer from here."));
  } else if (ctx.canAnswer) {
    body.append(permissionButtons(item, ctx));
  } else {
    body.append(el("div", "answer muted", "Waiting for an answer (an API key can answer)."));
  }
}

/**
 * @param {Item} item
 * @param {ViewContext} ctx
 * @returns {HTMLElement}
 */
function permissionButtons(item, ctx) {
  const row = el("div", "options");
  const sending = ctx.answering.get(item.key);
  for (const option of item.options ?? []) {
    const button = /** @type {HTMLButtonElement} */ (el("button", "option", option.name));
    button.type = "button";
    button.dataset.optionId = option.optionId;
    button.dataset.kind = option.kind;
    button.disabled = sending !== undefined;
    if (sending === option.optionId) button.textContent = `${option.name}…`;
    button.addEventListener("click", () => ctx.onAnswer(item, option));
    row.append(button);
  }
  return row;
}

/** @type {Draw} */
function drawEvent(body, item, ctx) {
  body.append(el("span", "label", item.type ?? item.kind));
  body.append(longText(item.text ?? "", "Event", "text", item, ctx));
}
