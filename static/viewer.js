// Tether viewer page: opens one session with an API key (kept in sessionStorage, sent as a
// bearer header) or a ticket from the page URL (read-only), shows its executions and the run
// as a conversation. It opens at the tail (the JSON events API from the newest page), pages
// older events in as the user scrolls up, follows live events over the stream WebSocket, and
// keeps the DOM bounded with a virtualized list. With an API key it can interrupt, send input
// and answer permission requests. Event data reaches the DOM only as text (item_view.js).
import {
  ApiErrorCode,
  CLOSE_CODE_HTTP_STATUS,
  CloseCode,
  EventType,
  TERMINAL_STATUSES,
} from "./protocol.js";
import { Conversation, eventItem, formatUsage } from "./conversation.js";
import { readOlder, readTail } from "./event_pages.js";
import { clock, copyButton, el, renderItem } from "./item_view.js";
import { VirtualList } from "./virtual_list.js";

const KEY_STORAGE = "tether.apiKey";
const POLL_MS = 2000;
/** Events read when a session opens (its tail) and per older page. */
const PAGE_EVENTS = 500;
/** Load older events when the viewport is this close to the top (px). */
const NEAR_TOP_PX = 1200;
/** Live events are drawn in batches at most this often (ms). */
const FLUSH_MS = 50;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  sessionId: "",
  apiKey: "",
  ticket: params.get("ticket") ?? "",
  /** Bumped on every open, so callbacks of an earlier session stop. */
  generation: 0,
  ws: null,
  reconnectTimer: 0,
  attempts: 0,
  pollTimer: 0,
  refreshSoon: 0,
  session: null,
  /** @type {any[]} */
  executions: [],
  /** Every loaded envelope, in eventId order. */
  events: [],
  /** The first eventId that might still be older than what is loaded. */
  olderThan: 1,
  startReached: false,
  loadingOlder: false,
  lastEventId: 0,
  conversation: new Conversation(),
  /** Bumped when the conversation is rebuilt, so every element is drawn afresh. */
  folds: 0,
  /** Items of the events view, built as needed. */
  eventItems: [],
  pending: [],
  flushTimer: 0,
  unseen: 0,
  types: new Set(),
  execIds: new Set(),
  view: "conversation",
  openRaw: new Set(),
  openDetails: new Set(),
  answering: new Map(),
  /** Until when each execution's Interrupt button waits for its confirming click. */
  interruptArmed: new Map(),
  /** Idempotency keys of permission answers, by item and option. */
  answerKeys: new Map(),
  composerKey: "",
  /** The usage totals the execution cards show (redrawn when they change). */
  usageStamp: "",
};

const readOnly = () => !state.apiKey;

/** Events after which the execution cards are re-read (status, input counters). */
const REFRESH_ON = new Set([EventType.executionStatus, EventType.input, EventType.inputDelivered]);

/** A random `Idempotency-Key` (getRandomValues works outside secure contexts too). */
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- small helpers

function dateTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

function duration(ms) {
  if (!(ms >= 0)) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m ${s % 60}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

function setConn(kind, text) {
  $("conn").dataset.state = kind;
  $("conn-text").textContent = text;
}

function banner(text, kind = "error") {
  const node = $("banner");
  node.textContent = text;
  node.className = kind === "info" ? "banner info" : "banner";
  node.hidden = !text;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Without clipboard access, select the text so Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents(button.previousElementSibling ?? button);
    getSelection()?.removeAllRanges();
    getSelection()?.addRange(range);
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error;
  }
}

async function api(path, init = {}) {
  const url = new URL(path, location.origin);
  const headers = new Headers(init.headers ?? {});
  if (state.apiKey) headers.set("authorization", `Bearer ${state.apiKey}`);
  else if (state.ticket) url.searchParams.set("ticket", state.ticket);
  let body;
  if (init.json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(init.json);
  }
  const res = await fetch(url, { method: init.method ?? "GET", headers, body });
  const parsed = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}

const sessionPath = () => `/v1/sessions/${encodeURIComponent(state.sessionId)}`;
const executionPath = (eid) => `${sessionPath()}/executions/${encodeURIComponent(eid)}`;

function explain(err) {
  if (!(err instanceof ApiError)) return `Network error: ${err.message}`;
  if (err.status === 401) {
    return readOnly()
      ? "This viewer link has expired or is not valid. Ask for a new one."
      : "The API key was not accepted.";
  }
  if (err.status === 403) return "These credentials do not grant access to this session.";
  if (err.status === 404) return `Session "${state.sessionId}" was not found.`;
  return `${err.code ?? "Error"}: ${err.message}`;
}

// ---------------------------------------------------------------- session and executions

function renderSession() {
  const s = state.session;
  if (!s) return;
  $("s-id").textContent = s.sessionId;
  $("s-created").textContent = dateTime(s.createdAt);
  $("s-access").textContent = readOnly() ? "read-only (ticket)" : "full (API key)";
  $("s-queue").textContent = s.queuedExecutionIds.length
    ? `${s.queuedExecutionIds.length} waiting`
    : "empty";
  const hasMeta = s.metadata && Object.keys(s.metadata).length > 0;
  $("s-meta-box").hidden = !hasMeta;
  if (hasMeta) $("s-meta").textContent = JSON.stringify(s.metadata, null, 2);
  renderSessionCount();
}

function renderSessionCount() {
  if (state.session) {
    $("s-events").textContent = String(Math.max(state.session.lastEventId, state.lastEventId));
  }
}

const viewContext = {
  execution: (eid) => state.executions.find((e) => e.executionId === eid),
  usage: (eid) => state.conversation.usage(eid),
  get canAnswer() {
    return !readOnly();
  },
  openRaw: state.openRaw,
  openDetails: state.openDetails,
  answering: state.answering,
  onAnswer: (item, option) => void answerPermission(item, option),
  onCopy: (text, button) => void copyText(text, button),
  onResize: () => list.refresh(),
};

function executionCard(exec) {
  const li = el("li", `execution${exec.active ? " active" : ""}`);
  li.dataset.executionId = exec.executionId;
  li.dataset.status = exec.status;
  const head = el("div", "exec-head");
  head.append(el("span", `badge ${exec.status}`, exec.status));
  if (exec.health) head.append(el("span", `health ${exec.health}`, exec.health));
  li.append(head);
  const id = el("div", "exec-id-row");
  id.append(el("code", "exec-id", exec.executionId), copyButton(exec.executionId, viewContext));
  li.append(id);
  const meta = el("div", "exec-meta");
  if (exec.active) meta.append(el("span", "", "active"));
  meta.append(el("span", "", `created ${clock(exec.createdAt)}`));
  if (exec.startedAt) {
    const end = exec.completedAt ? Date.parse(exec.completedAt) : Date.now();
    meta.append(el("span", "", `ran ${duration(end - Date.parse(exec.startedAt))}`));
  }
  if (exec.lastInputId > 0) {
    meta.append(el("span", "", `inputs ${exec.deliveredInputId}/${exec.lastInputId} delivered`));
  }
  li.append(meta);
  const usage = state.conversation.usage(exec.executionId);
  if (usage) li.append(el("div", "exec-usage", formatUsage(usage)));
  if (exec.error) li.append(el("div", "exec-error", exec.error));
  if (!readOnly() && exec.active && exec.status === "running") {
    const actions = el("div", "exec-actions");
    actions.append(interruptButton(exec.executionId));
    li.append(actions);
  }
  return li;
}

function renderExecutions() {
  const items = [...state.executions].reverse(); // newest first
  $("exec-count").textContent = items.length ? `(${items.length})` : "";
  $("no-executions").hidden = items.length > 0;
  $("executions").replaceChildren(...items.map(executionCard));
  for (const exec of state.executions) addOption("filter-exec", state.execIds, exec.executionId);
  renderComposerTargets();
}

/** How long the first click on Interrupt waits for the second (ms). */
const INTERRUPT_CONFIRM_MS = 4000;

// Two clicks, so a stray click never stops an agent. The armed state lives in `state`, so
// a card redrawn between the clicks (a refresh) keeps it.
function interruptButton(executionId) {
  const button = el("button", "interrupt", "Interrupt");
  button.type = "button";
  button.dataset.action = "interrupt";
  const armed = () => state.interruptArmed.get(executionId) ?? 0;
  const show = () => {
    const on = Date.now() < armed();
    button.textContent = on ? "Click again to interrupt" : "Interrupt";
    button.classList.toggle("confirm", on);
  };
  show();
  if (Date.now() < armed()) setTimeout(show, armed() - Date.now());
  button.addEventListener("click", async () => {
    if (Date.now() >= armed()) {
      state.interruptArmed.set(executionId, Date.now() + INTERRUPT_CONFIRM_MS);
      show();
      setTimeout(() => !button.disabled && show(), INTERRUPT_CONFIRM_MS);
      return;
    }
    state.interruptArmed.delete(executionId);
    button.disabled = true;
    button.textContent = "Interrupting…";
    try {
      await api(`${executionPath(executionId)}/interrupt`, {
        method: "POST",
        json: { reason: "Interrupted from the viewer" },
      });
      banner("Interrupt sent: the wrapper stops the agent and reports back.", "info");
    } catch (err) {
      banner(explain(err));
      button.disabled = false;
      show();
    }
    void refresh();
  });
  return button;
}

async function refresh() {
  const generation = state.generation;
  try {
    const [session, list] = await Promise.all([
      api(sessionPath()),
      api(`${sessionPath()}/executions?limit=1000`),
    ]);
    if (generation !== state.generation) return;
    state.session = session;
    renderSession();
    // Redraw only on a change (a button keeps its armed state in `state` anyway).
    const before = JSON.stringify(state.executions);
    state.executions = list.executions;
    if (JSON.stringify(state.executions) !== before) {
      applyDelivered();
      renderExecutions();
      refreshList();
    }
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof ApiError && err.status === 404) {
      banner("This session has been deleted.");
      stop();
    } else if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      // An expired ticket: what the page shows can no longer be kept up to date.
      banner(explain(err));
      stop();
    }
  }
}

/** An execution's `deliveredInputId` marks its inputs delivered, even those paged out. */
function applyDelivered() {
  for (const exec of state.executions) {
    if (exec.deliveredInputId > 0) {
      state.conversation.markDelivered(exec.executionId, exec.deliveredInputId);
    }
  }
}

function refreshSoon() {
  clearTimeout(state.refreshSoon);
  state.refreshSoon = setTimeout(() => void refresh(), 150);
}

// ---------------------------------------------------------------- the conversation list

/** What an element depends on besides its item: its execution, usage, a pending answer. */
function itemVersion(item) {
  return `${state.folds}:${itemState(item)}`;
}

function itemState(item) {
  if (item.kind === "execution") {
    const exec = viewContext.execution(item.executionId);
    const usage = state.conversation.usage(item.executionId);
    return `${item.rev}:${exec?.status}:${exec ? "input" : ""}:${usage ? formatUsage(usage) : ""}`;
  }
  if (item.kind === "permission") return `${item.rev}:${state.answering.get(item.key) ?? ""}`;
  return item.rev;
}

const list = new VirtualList($("timeline"), $("events"), {
  render: (item) => renderItem(item, viewContext),
  version: itemVersion,
  onScroll: onListScroll,
});

function currentItems() {
  if (state.view === "conversation") return state.conversation.items;
  for (let i = state.eventItems.length; i < state.events.length; i++) {
    state.eventItems.push(eventItem(state.events[i]));
  }
  return state.eventItems;
}

function filtersActive() {
  return Boolean($("filter-type").value || $("filter-exec").value || $("filter-text").value.trim());
}

function matches(item, type, exec, query) {
  if (exec && item.executionId !== exec) return false;
  if (type && !item.events.some((e) => e.streamEventType === type)) return false;
  if (query) {
    item.haystack ??= JSON.stringify(item.events).toLowerCase();
    if (!item.haystack.includes(query)) return false;
  }
  return true;
}

function visibleItems() {
  const items = currentItems();
  if (!filtersActive()) return items;
  const type = $("filter-type").value;
  const exec = $("filter-exec").value;
  const query = $("filter-text").value.trim().toLowerCase();
  return items.filter((item) => matches(item, type, exec, query));
}

/** Redraws the list after the items or their versions changed. */
function refreshList() {
  const items = visibleItems();
  list.setItems(items);
  $("timeline-empty").hidden = items.length > 0 || state.events.length > 0;
  const total = currentItems().length;
  const unit = state.view === "conversation" ? "items" : "events";
  $("shown-count").textContent = items.length === total
    ? `${total} ${unit}`
    : `${items.length} of ${total} ${unit}`;
  renderOlderHint();
}

function onListScroll() {
  if (list.following) {
    state.unseen = 0;
    $("resume-scroll").hidden = true;
  }
  if ($("timeline").scrollTop < NEAR_TOP_PX) void loadOlder();
}

function scrollToLatest() {
  state.unseen = 0;
  $("resume-scroll").hidden = true;
  list.scrollToBottom();
}

function renderOlderHint() {
  const hint = $("older");
  if (state.loadingOlder) hint.textContent = "Loading older events…";
  else if (state.startReached) hint.textContent = "";
  else hint.textContent = "Scroll up for older events";
  hint.hidden = !hint.textContent || state.events.length === 0;
}

function addOption(selectId, seen, value) {
  if (!value || seen.has(value)) return;
  seen.add(value);
  const select = $(selectId);
  const option = el("option", "", value);
  option.value = value;
  option.title = value;
  const after = [...select.options].slice(1).find((o) => o.value > value);
  select.insertBefore(option, after ?? null);
}

// ---------------------------------------------------------------- loading events

const getEvents = (query) => api(`${sessionPath()}/events?${query}`);

/** Opens at the tail: the newest page of events first, then the live stream from there. */
async function loadTail() {
  const generation = state.generation;
  const tail = await readTail(getEvents, state.session.lastEventId, PAGE_EVENTS);
  if (generation !== state.generation) return;
  state.olderThan = tail.olderThan;
  state.startReached = tail.startReached;
  list.scrollToBottom();
  addEvents(tail.events);
}

/** Pages in events older than those loaded, keeping the viewport where it is. */
async function loadOlder() {
  if (state.loadingOlder || state.startReached || state.events.length === 0) return;
  const generation = state.generation;
  state.loadingOlder = true;
  renderOlderHint();
  try {
    const older = await readOlder(getEvents, state.olderThan, PAGE_EVENTS);
    if (generation !== state.generation) return;
    state.olderThan = older.olderThan;
    state.startReached = older.startReached;
    if (older.events.length > 0) prependEvents(older.events);
  } catch (err) {
    if (generation === state.generation) banner(explain(err));
  } finally {
    if (generation === state.generation) {
      state.loadingOlder = false;
      renderOlderHint();
    }
  }
}

function prependEvents(older) {
  state.events = [...older, ...state.events];
  const conversation = new Conversation();
  for (const env of state.events) conversation.add(env);
  state.conversation = conversation;
  state.folds++;
  state.eventItems = [];
  for (const env of older) noteFilters(env);
  applyDelivered();
  refreshList();
  renderUsageChange();
}

/** Redraws the execution cards when an execution's usage totals changed. */
function renderUsageChange() {
  const stamp = state.executions.map((e) => {
    const usage = state.conversation.usage(e.executionId);
    return usage ? formatUsage(usage) : "";
  }).join("|");
  if (stamp !== state.usageStamp) {
    state.usageStamp = stamp;
    renderExecutions();
  }
}

function noteFilters(env) {
  addOption("filter-type", state.types, env.streamEventType);
  addOption("filter-exec", state.execIds, env.executionId);
}

/** Adds events newer than those loaded (the tail, then live batches). */
function addEvents(batch) {
  const before = currentItems().length;
  let added = 0;
  let statusChanged = false;
  for (const env of batch) {
    if (typeof env.eventId !== "number" || env.eventId <= state.lastEventId) continue;
    state.lastEventId = env.eventId;
    state.events.push(env);
    state.conversation.add(env);
    noteFilters(env);
    added++;
    if (REFRESH_ON.has(env.streamEventType)) statusChanged = true;
  }
  if (added === 0) return;
  if (statusChanged) refreshSoon();
  renderUsageChange();
  refreshList();
  state.unseen = list.following ? 0 : state.unseen + currentItems().length - before;
  $("new-count").textContent = String(state.unseen);
  $("resume-scroll").hidden = state.unseen === 0;
  renderSessionCount();
}

function queueLive(env) {
  state.pending.push(env);
  if (!state.flushTimer) state.flushTimer = setTimeout(flushLive, FLUSH_MS);
}

function flushLive() {
  state.flushTimer = 0;
  const batch = state.pending;
  state.pending = [];
  addEvents(batch);
}

// ---------------------------------------------------------------- the live stream

async function connect() {
  const generation = state.generation;
  setConn("connecting", state.attempts ? "reconnecting…" : "connecting…");
  let ticket = state.ticket;
  try {
    // Browsers cannot set headers on a WebSocket: with a key, trade it for a ticket.
    if (state.apiKey) {
      ticket = (await api(`${sessionPath()}/tickets`, { method: "POST", json: { ttlMs: 60000 } }))
        .ticket;
    }
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof ApiError && err.status < 500) {
      setConn("closed", "not connected");
      banner(explain(err));
      return;
    }
    return scheduleReconnect(generation);
  }
  if (generation !== state.generation) return;
  const url = new URL(`${sessionPath()}/stream`, location.origin);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("after", String(state.lastEventId));
  url.searchParams.set("ticket", ticket);
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onopen = () => {
    if (state.ws !== ws) return;
    state.attempts = 0;
    setConn("live", "live");
  };
  ws.onmessage = (message) => {
    if (state.ws !== ws) return;
    let parsed;
    try {
      parsed = JSON.parse(message.data);
    } catch {
      return;
    }
    if (parsed && parsed.type === "error") banner(`Stream: ${parsed.message ?? parsed.code}`);
    else if (parsed) queueLive(parsed);
  };
  ws.onclose = (event) => onStreamClose(ws, event, generation);
}

function onStreamClose(ws, event, generation) {
  if (state.ws !== ws) return;
  state.ws = null;
  if (event.code === CloseCode.normal) {
    setConn("closed", "session deleted");
    banner("This session has been deleted.");
    return;
  }
  const status = CLOSE_CODE_HTTP_STATUS[event.code];
  if (status !== undefined) {
    banner(explain(new ApiError(status, { message: event.reason })));
    stop(); // the polls would be refused too
    return;
  }
  // Anything else (a restart, a slow-viewer close, a lost network) resumes after the
  // last event drawn.
  flushLive();
  scheduleReconnect(generation);
}

function scheduleReconnect(generation) {
  if (generation !== state.generation) return;
  const delay = Math.min(10_000, 500 * 2 ** state.attempts) * (0.8 + Math.random() * 0.4);
  state.attempts++;
  setConn("connecting", `reconnecting in ${Math.ceil(delay / 1000)}s`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(() => void connect(), delay);
}

function stop() {
  state.generation++;
  clearTimeout(state.reconnectTimer);
  clearInterval(state.pollTimer);
  clearTimeout(state.refreshSoon);
  clearTimeout(state.flushTimer);
  state.flushTimer = 0;
  if (state.ws) {
    const ws = state.ws;
    state.ws = null;
    ws.close(CloseCode.normal, "viewer closed");
  }
  setConn("closed", "not connected");
}

// ---------------------------------------------------------------- input: composer, permissions

/** Executions that accept input: pending (queued or active) or running, active first. */
function inputTargets() {
  return state.executions
    .filter((e) => !TERMINAL_STATUSES.includes(e.status) && !e.inputClosed)
    .sort((a, b) => Number(b.active) - Number(a.active));
}

function renderComposerTargets() {
  const targets = inputTargets();
  $("composer").hidden = readOnly() || targets.length === 0;
  const select = $("composer-exec");
  const chosen = select.value;
  select.replaceChildren(...targets.map((e) => {
    const option = el("option", "", `${e.executionId} · ${e.status}${e.active ? " · active" : ""}`);
    option.value = e.executionId;
    return option;
  }));
  if (targets.some((e) => e.executionId === chosen)) select.value = chosen;
}

const INPUT_ERRORS = {
  [ApiErrorCode.executionEnded]: "The execution has ended: it takes no more input.",
  [ApiErrorCode.inputClosed]: "Input is closed: end of input was already sent.",
  [ApiErrorCode.inputQueueFull]: "Too many inputs wait for delivery; try again shortly.",
};

/** Sends one input; the `Idempotency-Key` makes a retry of the same input safe. */
function sendInput(executionId, body, idempotencyKey) {
  return api(`${executionPath(executionId)}/input`, {
    method: "POST",
    json: body,
    headers: { "idempotency-key": idempotencyKey },
  });
}

function composerBody() {
  const text = $("composer-text").value;
  const end = $("composer-end").checked;
  const body = {};
  if (text.trim() !== "") body.data = $("composer-json").checked ? JSON.parse(text) : text;
  if (end) body.endOfInput = true;
  return body;
}

async function submitComposer(event) {
  event.preventDefault();
  const status = $("composer-status");
  const executionId = $("composer-exec").value;
  let body;
  try {
    body = composerBody();
  } catch (err) {
    status.textContent = `Not valid JSON: ${err.message}`;
    return;
  }
  if (!executionId || Object.keys(body).length === 0) return;
  // The same text retried (after a network error) reuses its key: never sent twice.
  const fingerprint = JSON.stringify([executionId, body]);
  if (state.composerKey.split("\n")[0] !== fingerprint) {
    state.composerKey = `${fingerprint}\n${randomKey()}`;
  }
  $("composer-send").disabled = true;
  status.textContent = "Sending…";
  try {
    const res = await sendInput(executionId, body, state.composerKey.split("\n")[1]);
    status.textContent = `Input #${res.inputId} sent; it shows as delivered once the agent has it.`;
    $("composer-text").value = "";
    $("composer-end").checked = false;
    state.composerKey = "";
    refreshSoon();
  } catch (err) {
    status.textContent = INPUT_ERRORS[err.code] ?? explain(err);
  } finally {
    $("composer-send").disabled = false;
  }
}

/** One click on a permission option sends the answer as an input (PROTOCOL.md 14). */
async function answerPermission(item, option) {
  if (readOnly() || state.answering.has(item.key)) return;
  state.answering.set(item.key, option.optionId);
  list.refresh();
  try {
    const permission = { requestId: item.requestId, optionId: option.optionId };
    // One key per request and option, so a retried click is not a second answer.
    const keyOf = `${item.key}\n${option.optionId}`;
    if (!state.answerKeys.has(keyOf)) state.answerKeys.set(keyOf, randomKey());
    await sendInput(item.executionId, { data: { permission } }, state.answerKeys.get(keyOf));
  } catch (err) {
    state.answering.delete(item.key);
    banner(INPUT_ERRORS[err.code] ?? explain(err));
  }
  list.refresh();
}

// ---------------------------------------------------------------- opening a session

function resetView() {
  state.lastEventId = 0;
  state.events = [];
  state.eventItems = [];
  state.conversation = new Conversation();
  state.folds++;
  state.pending = [];
  state.executions = [];
  state.session = null;
  state.startReached = false;
  state.loadingOlder = false;
  state.types.clear();
  state.execIds.clear();
  state.openRaw.clear();
  state.openDetails.clear();
  state.answering.clear();
  state.answerKeys.clear();
  state.interruptArmed.clear();
  state.unseen = 0;
  state.attempts = 0;
  $("executions").replaceChildren();
  for (const id of ["filter-type", "filter-exec"]) {
    const select = $(id);
    while (select.options.length > 1) select.remove(1);
    select.value = "";
  }
  $("resume-scroll").hidden = true;
  $("composer").hidden = true;
  $("composer-status").textContent = "";
  refreshList();
}

async function open(sessionId) {
  stop();
  resetView();
  banner("");
  state.sessionId = sessionId;
  const generation = state.generation;
  $("intro").hidden = true;
  $("app").hidden = false;
  try {
    state.session = await api(sessionPath());
    if (generation !== state.generation) return;
    renderSession();
    await Promise.all([refresh(), loadTail()]);
  } catch (err) {
    if (generation !== state.generation) return;
    $("app").hidden = true;
    $("intro").hidden = false;
    setConn("closed", "not connected");
    banner(explain(err));
    return;
  }
  if (generation !== state.generation) return;
  state.pollTimer = setInterval(() => void refresh(), POLL_MS);
  void connect();
}

function bindForm(ticketMode) {
  $("open-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("session-input").value.trim();
    const key = $("key-input").value.trim();
    if (!ticketMode && key) {
      state.apiKey = key;
      sessionStorage.setItem(KEY_STORAGE, key);
      $("key-input").value = "";
      $("key-input").placeholder = "saved for this tab";
      $("forget-button").hidden = false;
    }
    if (!id) return;
    if (!state.apiKey && !state.ticket) {
      banner("Enter an API key, or open a viewer link that carries a ticket.");
      return;
    }
    const url = new URL(location.href);
    url.searchParams.set("session", id);
    history.replaceState(null, "", url);
    void open(id);
  });
  $("forget-button").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    state.apiKey = "";
    $("key-input").placeholder = "Bearer key (kept in this tab)";
    $("forget-button").hidden = true;
    stop();
    $("app").hidden = true;
    $("intro").hidden = false;
  });
}

function bindToolbar() {
  for (const radio of document.querySelectorAll('input[name="view"]')) {
    radio.addEventListener("change", () => {
      state.view = radio.value;
      $("timeline").setAttribute(
        "aria-label",
        radio.value === "events" ? "Events" : "Conversation",
      );
      refreshList();
      scrollToLatest();
    });
  }
  for (const id of ["filter-type", "filter-exec"]) {
    $(id).addEventListener("change", () => {
      refreshList();
      scrollToLatest();
    });
  }
  $("filter-text").addEventListener("input", () => {
    refreshList();
    scrollToLatest();
  });
  $("resume-scroll").addEventListener("click", scrollToLatest);
  $("composer").addEventListener("submit", (event) => void submitComposer(event));
  $("composer-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      $("composer").requestSubmit();
    }
  });
}

function init() {
  const ticketMode = Boolean(state.ticket);
  state.apiKey = ticketMode ? "" : (sessionStorage.getItem(KEY_STORAGE) ?? "");
  $("key-label").hidden = ticketMode;
  $("forget-button").hidden = ticketMode || !state.apiKey;
  const sessionId = params.get("session") ?? "";
  $("session-input").value = sessionId;
  if (state.apiKey) $("key-input").placeholder = "saved for this tab";
  bindForm(ticketMode);
  bindToolbar();
  if (sessionId && (state.apiKey || state.ticket)) void open(sessionId);
}

init();
