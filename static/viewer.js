// Tether viewer page: opens one session with an API key (kept in sessionStorage, sent as a
// bearer header) or a ticket from the page URL (read-only), shows its executions and a live
// event timeline (replay, then live over the stream WebSocket). Every piece of event data
// reaches the DOM through textContent, never as markup.

const KEY_STORAGE = "tether.apiKey";
const MAX_ROWS = 5000;
const POLL_MS = 2000;

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
  lastEventId: 0,
  session: null,
  executions: [],
  rows: [],
  pending: [],
  flushTimer: 0,
  following: true,
  /** Where the page itself last scrolled to; only scrolling above it pauses. */
  autoTop: 0,
  unseen: 0,
  types: new Set(),
  execIds: new Set(),
  refreshSoon: 0,
};

const readOnly = () => !state.apiKey;

// ---------------------------------------------------------------- small DOM helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function shortId(id) {
  return id && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : (id ?? "");
}

function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${
    pad(d.getMilliseconds(), 3)
  }`;
}

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
  const headers = new Headers();
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
  $("s-events").textContent = String(Math.max(s.lastEventId, state.lastEventId));
  $("s-queue").textContent = s.queuedExecutionIds.length
    ? `${s.queuedExecutionIds.length} waiting`
    : "empty";
  const hasMeta = s.metadata && Object.keys(s.metadata).length > 0;
  $("s-meta-box").hidden = !hasMeta;
  if (hasMeta) $("s-meta").textContent = JSON.stringify(s.metadata, null, 2);
}

function renderExecutions() {
  const list = $("executions");
  const items = [...state.executions].reverse(); // newest first
  $("exec-count").textContent = items.length ? `(${items.length})` : "";
  $("no-executions").hidden = items.length > 0;
  const nodes = items.map((exec) => {
    const li = el("li", `execution${exec.active ? " active" : ""}`);
    li.dataset.executionId = exec.executionId;
    li.dataset.status = exec.status;
    const head = el("div", "exec-head");
    head.append(el("span", `badge ${exec.status}`, exec.status));
    const id = el("span", "exec-id", exec.executionId);
    id.title = exec.executionId;
    head.append(id);
    if (exec.health) head.append(el("span", `health ${exec.health}`, exec.health));
    li.append(head);

    const meta = el("div", "exec-meta");
    if (exec.active) meta.append(el("span", "", "active"));
    meta.append(el("span", "", `created ${clock(exec.createdAt)}`));
    if (exec.startedAt) {
      const end = exec.completedAt ? Date.parse(exec.completedAt) : Date.now();
      meta.append(el("span", "", `ran ${duration(end - Date.parse(exec.startedAt))}`));
    }
    if (exec.lastHeartbeatAt && exec.status === "running") {
      meta.append(el("span", "", `last heard ${clock(exec.lastHeartbeatAt)}`));
    }
    li.append(meta);
    if (exec.error) li.append(el("div", "exec-error", exec.error));

    if (!readOnly() && exec.active && exec.status === "running") {
      const actions = el("div", "exec-actions");
      actions.append(interruptButton(exec.executionId));
      li.append(actions);
    }
    return li;
  });
  list.replaceChildren(...nodes);
  for (const exec of state.executions) addOption("filter-exec", state.execIds, exec.executionId);
}

// Two clicks, so a stray click never stops an agent.
function interruptButton(executionId) {
  const button = el("button", "interrupt", "Interrupt");
  button.type = "button";
  button.dataset.action = "interrupt";
  let armedUntil = 0;
  button.addEventListener("click", async () => {
    if (Date.now() > armedUntil) {
      armedUntil = Date.now() + 4000;
      button.textContent = "Click again to interrupt";
      button.classList.add("confirm");
      setTimeout(() => {
        if (!button.disabled) {
          button.textContent = "Interrupt";
          button.classList.remove("confirm");
        }
      }, 4000);
      return;
    }
    button.disabled = true;
    button.textContent = "Interrupting…";
    try {
      await api(`${sessionPath()}/executions/${encodeURIComponent(executionId)}/interrupt`, {
        method: "POST",
        json: { reason: "Interrupted from the viewer" },
      });
      banner("Interrupt sent: the wrapper stops the agent and reports back.", "info");
    } catch (err) {
      banner(explain(err));
      button.disabled = false;
      button.textContent = "Interrupt";
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
    // Keep a button that is waiting for its second click: redraw only on a change.
    const before = JSON.stringify(state.executions);
    state.executions = list.executions;
    renderSession();
    if (JSON.stringify(state.executions) !== before) renderExecutions();
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof ApiError && err.status === 404) {
      banner("This session has been deleted.");
      stop();
    }
  }
}

function refreshSoon() {
  clearTimeout(state.refreshSoon);
  state.refreshSoon = setTimeout(() => void refresh(), 150);
}

// ---------------------------------------------------------------- the event timeline

function summarize(env) {
  const d = env.data ?? {};
  const text = (v) => (typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v));
  switch (env.streamEventType) {
    case "execution_status":
      return `${d.previousStatus ?? "created"} → ${d.status}${d.active ? " · active" : ""}${
        d.error ? ` · ${d.error}` : ""
      }`;
    case "output":
      return `${d.truncated ? "[truncated] " : ""}${text(d.text)}`;
    case "complete":
      return `completed · exit code ${text(d.exitCode)}`;
    case "interrupted":
      return `${text(d.reason) || "interrupted"}${d.forced ? " · forced" : ""}`;
    case "error":
      return `${text(d.error ?? d.message) || "error"}${d.fatal ? " · fatal" : ""}${
        d.code ? ` · ${d.code}` : ""
      }`;
    case "wrapper_disconnected":
      return `${text(d.error)} · close ${text(d.wsCloseCode)}${
        d.wsCloseReason ? ` ${d.wsCloseReason}` : ""
      }`;
    case "wrapper_resumed":
      return `resumed · ${text(d.bufferedEvents)} buffered · ${text(d.droppedEvents)} dropped`;
  }
  if (d && typeof d === "object" && !Array.isArray(d)) {
    const parts = [d.type ?? d.event ?? d.kind, d.tool ?? d.name];
    const input = d.input && typeof d.input === "object"
      ? Object.values(d.input).filter((v) => typeof v === "string")[0]
      : undefined;
    parts.push(input, d.text ?? d.message ?? d.content ?? d.summary ?? d.title ?? d.label);
    // Agents in a stream-json mode nest their text and tool calls in message.content.
    if (Array.isArray(d.message?.content)) {
      for (const c of d.message.content) parts.push(c?.text ?? c?.name);
    }
    const shown = parts.filter((v) => v !== undefined && v !== null && typeof v !== "object");
    if (shown.length > 0) return shown.map(text).join(" · ");
  }
  return text(env.data);
}

function matchesFilters(row) {
  const type = $("filter-type").value;
  const exec = $("filter-exec").value;
  const query = $("filter-text").value.trim().toLowerCase();
  if (type && row.env.streamEventType !== type) return false;
  if (exec && row.env.executionId !== exec) return false;
  if (query) {
    row.haystack ??= JSON.stringify(row.env).toLowerCase();
    if (!row.haystack.includes(query)) return false;
  }
  return true;
}

function addOption(selectId, seen, value) {
  if (!value || seen.has(value)) return;
  seen.add(value);
  const select = $(selectId);
  const option = el("option", "", selectId === "filter-exec" ? shortId(value) : value);
  option.value = value;
  option.title = value;
  const after = [...select.options].slice(1).find((o) => o.value > value);
  select.insertBefore(option, after ?? null);
}

function toggleJson(row, open) {
  const show = open ?? !row.node.classList.contains("open");
  row.node.classList.toggle("open", show);
  if (show && !row.pre) {
    row.pre = el("pre", "json", JSON.stringify(row.env, null, 2));
    row.node.append(row.pre);
  }
  if (row.pre) row.pre.hidden = !show;
}

function buildRow(env) {
  const li = el("li", "event");
  li.dataset.eventId = String(env.eventId);
  li.dataset.type = env.streamEventType;
  const line = el("div", "event-row");
  line.append(el("span", "ev-id", env.eventId));
  const time = el("span", "ev-time", clock(env.timestamp));
  time.title = env.timestamp;
  line.append(time);
  const type = el("span", "ev-type", env.streamEventType);
  type.classList.add(`t-${env.streamEventType.replace(/[^A-Za-z0-9_-]/g, "_")}`);
  line.append(type);
  const exec = el("span", "ev-exec", shortId(env.executionId));
  exec.title = env.executionId;
  line.append(exec);
  const summary = el("span", "ev-summary", summarize(env).slice(0, 500));
  if (env.streamEventType === "output" && env.data?.stream === "stderr") {
    summary.classList.add("stderr");
  }
  line.append(summary);
  li.append(line);
  const row = { env, node: li, pre: null, haystack: null };
  line.addEventListener("click", () => toggleJson(row));
  return row;
}

function addEvent(env) {
  if (typeof env.eventId !== "number" || env.eventId <= state.lastEventId) return;
  state.lastEventId = env.eventId;
  state.pending.push(env);
  if (!state.flushTimer) state.flushTimer = setTimeout(flush, 30);
  if (env.streamEventType === "execution_status") refreshSoon();
}

// Rendering in batches keeps a replay of thousands of events smooth.
function flush() {
  state.flushTimer = 0;
  const batch = state.pending;
  state.pending = [];
  const fragment = document.createDocumentFragment();
  const expand = $("expand-all").checked;
  let shown = 0;
  for (const env of batch) {
    addOption("filter-type", state.types, env.streamEventType);
    addOption("filter-exec", state.execIds, env.executionId);
    const row = buildRow(env);
    row.node.hidden = !matchesFilters(row);
    if (!row.node.hidden) {
      shown++;
      if (expand) toggleJson(row, true);
    }
    state.rows.push(row);
    fragment.append(row.node);
  }
  $("events").append(fragment);
  const excess = state.rows.length - MAX_ROWS;
  if (excess > 0) { for (const row of state.rows.splice(0, excess)) row.node.remove(); }
  $("timeline-empty").hidden = state.rows.length > 0;
  if (state.following) stickToBottom();
  else if (shown > 0) {
    state.unseen += shown;
    $("new-count").textContent = String(state.unseen);
    $("resume-scroll").hidden = false;
  }
  updateCounts();
  renderSessionCount();
}

function renderSessionCount() {
  if (state.session) {
    $("s-events").textContent = String(Math.max(state.session.lastEventId, state.lastEventId));
  }
}

function updateCounts() {
  const shown = state.rows.filter((r) => !r.node.hidden).length;
  $("shown-count").textContent = shown === state.rows.length
    ? `${state.rows.length} events`
    : `${shown} of ${state.rows.length} events`;
}

function applyFilters() {
  const expand = $("expand-all").checked;
  for (const row of state.rows) {
    row.node.hidden = !matchesFilters(row);
    if (!row.node.hidden) toggleJson(row, expand ? true : row.node.classList.contains("open"));
  }
  updateCounts();
  scrollToLatest();
}

function stickToBottom() {
  const timeline = $("timeline");
  timeline.scrollTop = timeline.scrollHeight;
  state.autoTop = timeline.scrollTop;
}

function scrollToLatest() {
  stickToBottom();
  state.following = true;
  state.unseen = 0;
  $("resume-scroll").hidden = true;
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
    else if (parsed) addEvent(parsed);
  };
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (event.code === 1000) {
      setConn("closed", "session deleted");
      banner("This session has been deleted.");
      return;
    }
    if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
      setConn("closed", "not connected");
      banner(explain(new ApiError(event.code - 4000, { message: event.reason })));
      return;
    }
    scheduleReconnect(generation);
  };
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
    ws.close(1000, "viewer closed");
  }
  setConn("closed", "not connected");
}

// ---------------------------------------------------------------- opening a session

function resetView() {
  state.lastEventId = 0;
  state.rows = [];
  state.pending = [];
  state.executions = [];
  state.session = null;
  state.types.clear();
  state.execIds.clear();
  state.unseen = 0;
  state.following = true;
  state.attempts = 0;
  $("events").replaceChildren();
  $("executions").replaceChildren();
  for (const id of ["filter-type", "filter-exec"]) {
    const select = $(id);
    while (select.options.length > 1) select.remove(1);
    select.value = "";
  }
  $("timeline-empty").hidden = false;
  $("resume-scroll").hidden = true;
  updateCounts();
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
  } catch (err) {
    if (generation !== state.generation) return;
    $("app").hidden = true;
    $("intro").hidden = false;
    setConn("closed", "not connected");
    banner(explain(err));
    return;
  }
  if (generation !== state.generation) return;
  renderSession();
  await refresh();
  state.pollTimer = setInterval(() => void refresh(), POLL_MS);
  void connect();
}

function init() {
  const ticketMode = Boolean(state.ticket);
  state.apiKey = ticketMode ? "" : (sessionStorage.getItem(KEY_STORAGE) ?? "");
  $("key-label").hidden = ticketMode;
  $("forget-button").hidden = ticketMode || !state.apiKey;
  const sessionId = params.get("session") ?? "";
  $("session-input").value = sessionId;
  if (state.apiKey) $("key-input").placeholder = "saved for this tab";

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
  for (const id of ["filter-type", "filter-exec", "expand-all"]) {
    $(id).addEventListener("change", applyFilters);
  }
  $("filter-text").addEventListener("input", applyFilters);
  $("resume-scroll").addEventListener("click", scrollToLatest);
  // Scrolling up pauses auto-scroll; coming back to the bottom resumes it. A layout change
  // (a banner, a resized window) never pauses it.
  $("timeline").addEventListener("scroll", () => {
    const t = $("timeline");
    if (t.scrollHeight - t.scrollTop - t.clientHeight < 24) {
      state.following = true;
      state.unseen = 0;
      $("resume-scroll").hidden = true;
    } else if (t.scrollTop < state.autoTop - 4) {
      state.following = false;
    }
  });
  new ResizeObserver(() => {
    if (state.following) stickToBottom();
  }).observe($("timeline"));

  if (sessionId && (state.apiKey || state.ticket)) void open(sessionId);
}

init();
