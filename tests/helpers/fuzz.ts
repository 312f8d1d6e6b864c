/**
 * Seeded fuzzing of the service's edges (issue 6): random and mutated ingest frames over a
 * real socket, and random and mutated REST requests (methods, paths, queries, headers,
 * bodies). The service must keep answering `/healthz`, never answer 5xx, store only valid
 * envelopes (no reserved type unless the service emitted it), and leave a control session
 * that nobody fuzzes exactly as it was.
 *
 * @module
 */
import assert from "node:assert/strict";
import { delay } from "../../src/async.ts";
import { jsonDepth, MAX_JSON_DEPTH } from "../../src/json_depth.ts";
import {
  CloseCode,
  isTerminal,
  RESERVED_EVENT_TYPES,
  STREAM_EVENT_TYPE_RE,
} from "../../src/protocol.ts";
import { type Envelope, IngestClient, storedEvents } from "./ingest_client.ts";
import { Random } from "./random.ts";
import { API_KEY, startServer, type TestServer } from "./server.ts";

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  /** Seed of every random choice (print it to replay a failure). */
  seed: number;
  /** Frames to send. */
  frames: number;
  /** REST requests to send. */
  requests: number;
  /** Random reads of a session of huge events (JSON pages, Durable Streams, viewers). Default 20. */
  hugeReads?: number;
  /** Longest wait for one fuzzed request's answer (body included) or one fuzzer step. Default 20 s. */
  stepTimeoutMs?: number;
}

/** What a fuzz run sent. */
export interface FuzzStats {
  /** Frames sent. */
  frames: number;
  /** REST requests sent. */
  requests: number;
  /** Executions the frame fuzzer went through (a terminal or fatal frame ends one). */
  executions: number;
  /** REST answers by HTTP status. */
  statuses: Record<string, number>;
}

const CONTROL = "control";
const FUZZ_SESSIONS = ["fz0", "fz1", "fz2"];
const BATCH = 40;
const STEP_TIMEOUT_MS = 20_000;

/**
 * Awaits `work`, failing with `what` named if it takes longer than `ms`: a wedged request or
 * a wait that never ends fails the run loudly instead of hanging it.
 */
async function within<T>(what: string, ms: number, work: (signal: AbortSignal) => Promise<T>) {
  const signal = AbortSignal.timeout(ms);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([work(signal), expired]);
  } catch (err) {
    if (signal.aborted) throw new Error(`timed out after ${ms} ms: ${what}`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------
// Generators

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";
const NASTY = [
  "",
  " ",
  "\u0000",
  "\ud800",
  "\udfff",
  "😀",
  "\u202e",
  "%00",
  "%2F",
  "..",
  "../..",
  "\\",
  "'\"",
  "<script>",
  "null",
  "__proto__",
  "constructor",
  "execution_status",
  "wrapper_disconnected",
  "input",
  "input_delivered",
  "heartbeat",
  "complete",
  "error",
  "x".repeat(65),
  "y".repeat(300),
];

function randomString(r: Random, max = 24): string {
  if (r.chance(0.25)) return r.pick(NASTY);
  const n = r.int(0, max);
  let s = "";
  for (let i = 0; i < n; i++) {
    s += r.chance(0.9)
      ? ALPHABET[r.int(0, ALPHABET.length - 1)]
      : String.fromCharCode(r.int(0, 0xffff));
  }
  return s;
}

function randomNumber(r: Random): number {
  return r.pick([
    0,
    -1,
    1,
    2,
    0.5,
    1e21,
    -1e-7,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 2,
    2 ** 31,
    r.int(-1000, 1000),
    r.next() * 1e6,
  ]);
}

/** Sets an own property, `__proto__` included (as `JSON.parse` would). */
function setOwn(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Percent-encodes a path segment, lone surrogates included (as U+FFFD). */
const segment = (s: string) => encodeURIComponent(s.toWellFormed());

/**
 * A random JSON value, at most `depth` levels deep.
 *
 * @example
 * ```ts
 * const r = new Random(7);
 * const data = randomJson(r); // same seed, same value
 * ```
 */
export function randomJson(r: Random, depth = 3): unknown {
  const kind = r.int(0, depth > 0 ? 7 : 4);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return randomNumber(r);
    case 3:
    case 4:
      return randomString(r);
    case 5:
      return Array.from({ length: r.int(0, 4) }, () => randomJson(r, depth - 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(0, 5); i > 0; i--) {
        setOwn(o, randomString(r, 10), randomJson(r, depth - 1));
      }
      return o;
    }
  }
}

/** Depths around and far past the nesting limit (PROTOCOL.md 10). */
const DEEP_DEPTHS = [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 200, 5000];

/**
 * A value nested about the limit or far deeper: arrays and objects, built without recursion.
 *
 * @example
 * ```ts
 * client.send({ streamEventType: "agent", data: deepJson(new Random(seed)) });
 * ```
 */
export function deepJson(r: Random): unknown {
  let value: unknown = r.chance(0.5) ? [] : {};
  for (let i = r.pick(DEEP_DEPTHS); i > 1; i--) value = r.chance(0.5) ? [value] : { k: value };
  return value;
}

/**
 * Mutates a text: flips, drops, duplicates or inserts characters, or cuts it.
 *
 * @example
 * ```ts
 * const text = JSON.stringify({ streamEventType: "agent", seq: 1, data: {} });
 * client.send(mutateText(new Random(seed), text)); // often no longer valid JSON
 * ```
 */
export function mutateText(r: Random, text: string): string {
  let s = text;
  for (let i = r.int(1, 4); i > 0; i--) {
    const at = r.int(0, Math.max(0, s.length - 1));
    switch (r.int(0, 4)) {
      case 0:
        s = s.slice(0, at) + String.fromCharCode(r.int(0, 0xffff)) + s.slice(at + 1);
        break;
      case 1:
        s = s.slice(0, at) + s.slice(at + r.int(1, 8));
        break;
      case 2:
        s = s.slice(0, at) + s.slice(at, at + r.int(1, 16)) + s.slice(at);
        break;
      case 3:
        s = s.slice(0, at) + r.pick(["{", "}", "[", "]", '"', ",", ":", "\\", "\u0000"]) +
          s.slice(at);
        break;
      default:
        s = s.slice(0, at);
    }
  }
  return s;
}

/** Sets, removes or replaces fields of a JSON object at random. */
function mutateObject(r: Random, value: Record<string, unknown>): Record<string, unknown> {
  const out = { ...value };
  for (let i = r.int(1, 3); i > 0; i--) {
    const keys = Object.keys(out);
    const choice = r.int(0, 2);
    if (choice === 0 && keys.length > 0) delete out[r.pick(keys)];
    else if (choice === 1 && keys.length > 0) setOwn(out, r.pick(keys), randomJson(r, 2));
    else setOwn(out, randomString(r, 12), randomJson(r, 2));
  }
  return out;
}

const WRAPPER_TYPES = ["output", "agent", "kilocode", "status", "progress", "wrapper_resumed"];

/** A frame as a well-meaning wrapper would send it (without seq). */
function plausibleFrame(r: Random): Record<string, unknown> {
  // Terminal frames end the run (and the fuzzer opens the next one): keep them rare.
  const type = r.chance(0.03)
    ? r.pick(["complete", "error", "interrupted"])
    : r.pick([...WRAPPER_TYPES, "heartbeat", "pong", "error", "input_delivered", "input"]);
  const data = type === "complete"
    ? { exitCode: r.int(0, 3) }
    : type === "error"
    ? { error: randomString(r), fatal: r.chance(0.3) }
    : type === "interrupted"
    ? { reason: randomString(r) }
    : type === "input_delivered" || type === "input"
    ? { inputId: r.chance(0.8) ? r.int(0, 6) : randomJson(r, 1) }
    : randomJson(r, 2);
  const frame: Record<string, unknown> = { streamEventType: type, data };
  if (r.chance(0.5)) frame.timestamp = r.chance(0.7) ? new Date().toISOString() : randomString(r);
  return frame;
}

/** One fuzzed ingest frame: random, mutated, binary or oversized. `nextSeq` is a guess. */
function fuzzFrame(r: Random, nextSeq: number): string | Uint8Array {
  const roll = r.next();
  if (roll < 0.03) return new Uint8Array(Array.from({ length: r.int(0, 64) }, () => r.int(0, 255)));
  if (roll < 0.25) return JSON.stringify(randomJson(r, 3));
  if (roll < 0.27) {
    // Data that grows when written again (`1E20` → 21 digits), some of it beyond Latin-1.
    const data = Array(r.int(1, 2000)).fill(r.pick(["1E20", "1e21", "-0", '"漢"', '"\\u00e9"']));
    return `{"streamEventType":"agent","data":[${data.join(",")}]}`;
  }
  const frame = plausibleFrame(r);
  if (r.chance(0.03)) frame.data = deepJson(r);
  if (r.chance(0.6)) {
    frame.seq = r.chance(0.7)
      ? nextSeq + r.int(-2, 2)
      : r.pick([0, -1, 1.5, "1", null, 2 ** 53, nextSeq + 5000]);
  }
  const mutated = r.chance(0.3) ? mutateObject(r, frame) : frame;
  const text = JSON.stringify(mutated);
  return r.chance(0.25) ? mutateText(r, text) : text;
}

// ---------------------------------------------------------------------------------------
// REST requests

const METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"];

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

function fuzzRequest(r: Random, known: { executionIds: string[]; tickets: string[] }): FuzzRequest {
  const sid = r.chance(0.8)
    ? r.pick(FUZZ_SESSIONS)
    : segment(randomString(r, 40)).replace(/^control$/, "x");
  const eid = r.chance(0.6) && known.executionIds.length > 0
    ? r.pick(known.executionIds)
    : r.chance(0.5)
    ? `exc_${"0".repeat(26)}`
    : segment(randomString(r));
  const path = r.pick([
    "/v1/sessions",
    `/v1/sessions/${sid}`,
    `/v1/sessions/${sid}/executions`,
    `/v1/sessions/${sid}/executions/${eid}`,
    `/v1/sessions/${sid}/executions/${eid}/interrupt`,
    `/v1/sessions/${sid}/executions/${eid}/fail`,
    `/v1/sessions/${sid}/executions/${eid}/input`,
    `/v1/sessions/${sid}/executions/${eid}/input`,
    `/v1/sessions/${sid}/executions/${eid}/ingest`,
    `/v1/sessions/${sid}/events`,
    `/v1/sessions/${sid}/stream`,
    `/v1/sessions/${sid}/tickets`,
    `/v1/sessions/${sid}/ds`,
    "/healthz",
    "/metrics",
    "/",
    `/v1/${segment(randomString(r))}`,
    `/v1/sessions/${sid}/${segment(randomString(r))}`,
  ]);
  const query = new URLSearchParams();
  for (let i = r.int(0, 3); i > 0; i--) {
    const name = r.pick([
      "after",
      "limit",
      "executionIds",
      "eventTypes",
      "fromId",
      "ticket",
      "offset",
      "live",
      randomString(r, 8),
    ]);
    const value = r.pick([
      String(r.int(-5, 2000)),
      randomString(r),
      "1e3",
      "0x10",
      "",
      eid,
      known.tickets.length > 0 ? r.pick(known.tickets) : "t",
    ]);
    query.append(name, r.chance(0.03) ? JSON.stringify(deepJson(r)) : value);
  }
  const headers: Record<string, string> = {};
  const auth = r.int(0, 9);
  if (auth < 6) headers.authorization = `Bearer ${API_KEY}`;
  else if (auth < 8) {
    headers.authorization = r.pick([`Bearer ${randomString(r)}`, "Basic eDp5", "Bearer", ""]);
  }
  if (r.chance(0.3)) {
    headers["content-type"] = r.pick([
      "application/json",
      "text/plain",
      "multipart/form-data; boundary=x",
      randomString(r, 10),
    ]);
  }
  if (r.chance(0.2)) headers["idempotency-key"] = randomString(r, 140);
  if (r.chance(0.1)) headers["last-event-id"] = randomString(r, 10);
  if (r.chance(0.1)) headers.accept = r.pick(["text/event-stream", "*/*", randomString(r, 10)]);
  if (r.chance(0.1)) headers.origin = r.pick(["https://evil.example", "null", randomString(r, 10)]);
  if (r.chance(0.05)) headers.upgrade = "websocket";
  const method = r.chance(0.6)
    ? (/(s|interrupt|fail|input)$/.test(path) ? "POST" : "GET")
    : r.pick(METHODS);
  let body: string | undefined;
  if (method !== "GET" && method !== "HEAD") {
    const valid: Record<string, unknown> = path.endsWith("/fail")
      ? { error: "fuzz", streamEventType: "error" }
      : path.endsWith("/interrupt")
      ? { reason: "fuzz" }
      : path.endsWith("/tickets")
      ? { ttlMs: 60_000 }
      : path.endsWith("/input")
      ? { data: randomJson(r, 3), endOfInput: r.chance(0.1) }
      : path.endsWith("/executions")
      ? {
        input: { prompt: "x" },
        graceMs: 1000,
        heartbeatTimeoutMs: 10_000,
        callbackUrl: "http://127.0.0.1:9/cb",
        ifIdle: false,
      }
      : { sessionId: r.pick(FUZZ_SESSIONS), metadata: { a: 1 } };
    if (r.chance(0.05)) {
      if ("metadata" in valid) valid.metadata = { deep: deepJson(r) };
      else valid[r.pick(["input", "reason", "error"])] = deepJson(r);
    }
    const roll = r.next();
    body = roll < 0.3
      ? JSON.stringify(mutateObject(r, valid))
      : roll < 0.5
      ? JSON.stringify(randomJson(r, 4))
      : roll < 0.7
      ? mutateText(r, JSON.stringify(valid))
      : roll < 0.75
      ? "x".repeat(r.int(60_000, 70_000))
      : roll < 0.8
      ? ""
      : JSON.stringify(valid);
  }
  const q = query.toString();
  return { method, path: q ? `${path}?${q}` : path, headers, body };
}

// ---------------------------------------------------------------------------------------
// Checks

/**
 * Every stored event is a valid envelope; reserved types only as the service emits them.
 *
 * @example
 * ```ts
 * const events = await storedEvents(server, "s1");
 * checkEnvelopes("s1", events, new Set([run.executionId]));
 * ```
 */
export function checkEnvelopes(sessionId: string, events: Envelope[], executionIds: Set<string>) {
  let expected = 1;
  for (const e of events) {
    const where = `event ${e.eventId} of ${sessionId}`;
    assert.equal(e.sessionId, sessionId, where);
    assert.ok(Number.isSafeInteger(e.eventId) && e.eventId >= expected, `${where}: eventId`);
    expected = e.eventId + 1;
    assert.ok(executionIds.has(e.executionId), `${where}: executionId ${e.executionId}`);
    assert.match(e.streamEventType, STREAM_EVENT_TYPE_RE, where);
    assert.ok(!Number.isNaN(Date.parse(e.timestamp)), `${where}: timestamp ${e.timestamp}`);
    assert.ok(e.data !== undefined, `${where}: data`);
    assert.ok(jsonDepth(e.data) <= MAX_JSON_DEPTH, `${where}: data nested too deep`);
    assert.ok(!["heartbeat", "pong"].includes(e.streamEventType), `${where}: liveness stored`);
    if (e.streamEventType === "execution_status") {
      const d = e.data as { status: string; previousStatus: unknown; active: unknown };
      assert.ok(
        ["pending", "running", "completed", "failed", "interrupted"].includes(d.status),
        where,
      );
      assert.ok(d.previousStatus === null || typeof d.previousStatus === "string", where);
      assert.equal(typeof d.active, "boolean", where);
    } else if (e.streamEventType === "input") {
      const d = e.data as Record<string, unknown>;
      assert.ok(Number.isSafeInteger(d.inputId) && (d.inputId as number) >= 1, where);
      assert.ok(d.data !== undefined || d.endOfInput === true, `${where}: input has content`);
    } else if (e.streamEventType === "input_delivered") {
      const d = e.data as Record<string, unknown>;
      assert.ok(Number.isSafeInteger(d.inputId) && (d.inputId as number) >= 1, where);
    } else if (e.streamEventType === "wrapper_disconnected") {
      const d = e.data as Record<string, unknown>;
      assert.equal(d.error, "Wrapper disconnected", where);
      assert.equal(typeof d.wsCloseCode, "number", where);
    } else {
      assert.ok(!RESERVED_EVENT_TYPES.has(e.streamEventType), `${where}: reserved type stored`);
    }
  }
}

/** Lists a session's execution ids. */
async function executionIdsOf(server: TestServer, sid: string): Promise<Set<string>> {
  const res = await server.call<{ executions: { executionId: string }[] }>(
    `/v1/sessions/${sid}/executions?limit=1000`,
  );
  return new Set(res.body.executions?.map((e) => e.executionId) ?? []);
}

async function healthy(server: TestServer, signal?: AbortSignal): Promise<void> {
  const res = await server.api("/healthz", { signal });
  assert.equal(res.status, 200, "the service still answers /healthz");
  await res.body?.cancel();
}

// ---------------------------------------------------------------------------------------
// The run

/**
 * Runs the frame and REST fuzzers against a fresh instance; throws with the seed on failure.
 *
 * @example
 * ```ts
 * const seed = seedFrom("TETHER_FUZZ_SEED");
 * const stats = await runFuzz({ seed, frames: 5000, requests: 5000 });
 * ```
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzStats> {
  const r = new Random(options.seed);
  const stats: FuzzStats = { frames: 0, requests: 0, executions: 0, statuses: {} };
  const server = await startServer({ config: { maxFrameBytes: 16_384 } });
  const clients: IngestClient[] = [];
  let failed = false;
  const stepMs = options.stepTimeoutMs ?? STEP_TIMEOUT_MS;
  const step = <T>(what: string, work: (signal: AbortSignal) => Promise<T>) =>
    within(what, stepMs, work);
  try {
    // The control session: a live run nobody fuzzes.
    const control = await step(
      "open the control run",
      (signal) => openRun(server, CONTROL, signal),
    );
    clients.push(control.client);
    control.client.send({ streamEventType: "output", seq: 1, data: { text: "before" } });
    await control.client.ackOf(1);
    const controlBefore = JSON.stringify(await storedEvents(server, CONTROL));

    // Frames.
    let current = await step(
      "open a fuzz run",
      (signal) => openRun(server, FUZZ_SESSIONS[0], signal),
    );
    stats.executions++;
    let nextSeq = 1;
    while (stats.frames < options.frames) {
      if (current.client.closeInfo !== undefined) {
        // No input may make storing fail (a wrapper would resend it into the same error).
        assert.notEqual(current.client.closeInfo.code, CloseCode.internalError, "storage error");
        // Ended (terminal frame) or closed (1008/1009): end it for sure, start the next run.
        const over = `/v1/sessions/${current.sessionId}/executions/${current.executionId}/fail`;
        await step(
          `POST ${over}`,
          (signal) =>
            server.call(over, { method: "POST", json: { error: "fuzz run over" }, signal }),
        );
        const next = FUZZ_SESSIONS[stats.executions % FUZZ_SESSIONS.length];
        current = await step(
          `open a fuzz run in ${next}`,
          (signal) => openRun(server, next, signal),
        );
        clients.push(current.client);
        stats.executions++;
        nextSeq = 1;
      }
      for (let i = 0; i < BATCH && current.client.closeInfo === undefined; i++) {
        const frame = fuzzFrame(r, nextSeq);
        if (r.chance(0.01)) {
          current.client.send("z".repeat(20_000)); // over maxFrameBytes: 1009
        } else current.client.send(frame);
        stats.frames++;
        nextSeq = Math.max(nextSeq, current.client.acked + 1);
      }
      await step(`GET /healthz after frame ${stats.frames}`, (signal) => healthy(server, signal));
      // A service close waits for a quiet moment: give it one, so runs do end.
      await delay(15);
    }

    // REST.
    const known = { executionIds: [] as string[], tickets: [] as string[] };
    for (const sid of FUZZ_SESSIONS) {
      const ids = await step(`list executions of ${sid}`, () => executionIdsOf(server, sid));
      known.executionIds.push(...ids);
    }
    for (let i = 0; stats.requests < options.requests; i++) {
      const req = fuzzRequest(r, known);
      const answer = await within(
        `request ${stats.requests}: ${describe(req)}`,
        stepMs,
        (signal) => sendFuzzRequest(server, req, signal),
      );
      if (answer === undefined) continue;
      const { res, text } = answer;
      stats.requests++;
      stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
      assert.ok(
        res.status < 500,
        `${req.method} ${req.path} ${JSON.stringify(req.headers)} → ${res.status} ${
          text.slice(0, 300)
        }`,
      );
      if (res.status >= 400 && req.method !== "HEAD") {
        assert.equal(
          typeof JSON.parse(text).error,
          "string",
          `${req.method} ${req.path}: error body`,
        );
      }
      if (res.status === 201 && text.includes("executionId")) {
        known.executionIds.push(JSON.parse(text).executionId);
      }
      if (res.status === 201 && text.includes("ticket")) {
        known.tickets.push(JSON.parse(text).ticket);
      }
      if (i % 50 === 0) {
        await step(`GET /healthz after request ${i}`, (signal) => healthy(server, signal));
      }
    }
    await step("GET /healthz after the requests", (signal) => healthy(server, signal));

    // Nothing stored is garbage; the control session is untouched and still works.
    for (const sid of FUZZ_SESSIONS) {
      const view = await step(
        `GET session ${sid}`,
        (signal) => server.call(`/v1/sessions/${sid}`, { signal }),
      );
      if (view.status === 404) continue;
      const ids = await step(`list executions of ${sid}`, () => executionIdsOf(server, sid));
      const events = await step(`read events of ${sid}`, () => storedEvents(server, sid));
      checkEnvelopes(sid, events, ids);
      // The Durable Streams catch-up reads the same log and ends (deleted and re-created
      // sessions leave never-stored eventIds below the first stored one).
      const viaDs = await step(`read ${sid} through /ds`, (signal) => dsLog(server, sid, signal));
      assert.deepEqual(viaDs, events.map((e) => e.eventId), `${sid}: /ds and /events differ`);
    }
    const controlAfter = await step("read the control events", () => storedEvents(server, CONTROL));
    assert.equal(JSON.stringify(controlAfter), controlBefore);
    assert.equal(control.client.closeInfo, undefined, "the control run kept its connection");
    control.client.send({ streamEventType: "output", seq: 2, data: { text: "after" } });
    await control.client.ackOf(2);
    const exec = await step(
      "GET the control execution",
      (signal) =>
        server.call(`/v1/sessions/${CONTROL}/executions/${control.executionId}`, { signal }),
    );
    assert.ok(!isTerminal(exec.body.status as never));
    await fuzzHugeReads(r.fork(), options.hugeReads ?? 20, stepMs);
    return stats;
  } catch (err) {
    failed = true;
    throw new Error(
      `fuzz failed: seed ${options.seed} (replay: TETHER_FUZZ_SEED=${options.seed})`,
      {
        cause: err,
      },
    );
  } finally {
    for (const c of clients) if (c.socket.readyState === WebSocket.OPEN) c.socket.close();
    // A stop that hangs is a failure too, unless the run failed already (that error wins).
    const stopped = step("stop the fuzzed instance", () => server.close());
    await (failed ? stopped.catch(() => {}) : stopped);
  }
}

/** A session's eventIds read through `/ds` catch-ups, from the start until up to date. */
async function dsLog(server: TestServer, sid: string, signal: AbortSignal): Promise<number[]> {
  const ids: number[] = [];
  let offset = "-1";
  for (;;) {
    const res = await server.api(`/v1/sessions/${sid}/ds?offset=${offset}`, { signal });
    assert.equal(res.status, 200, `/ds of ${sid} at ${offset}`);
    ids.push(...(await res.json() as Envelope[]).map((e) => e.eventId));
    if (res.headers.get("stream-up-to-date") === "true") return ids;
    offset = res.headers.get("stream-next-offset")!;
  }
}

/** A fuzzed request as text, to replay it by hand. */
function describe(req: FuzzRequest): string {
  const body = req.body === undefined ? "" : ` body ${JSON.stringify(req.body.slice(0, 300))}`;
  return `${req.method} ${req.path} ${JSON.stringify(req.headers)}${body}`;
}

/**
 * Sends one fuzzed request and reads its answer; `undefined` when fetch refuses the input
 * itself (a header it cannot send), which is no service answer.
 */
async function sendFuzzRequest(server: TestServer, req: FuzzRequest, signal: AbortSignal) {
  let res: Response;
  try {
    res = await fetch(server.url + req.path, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal,
    });
  } catch (err) {
    if (signal.aborted) throw err;
    if (err instanceof TypeError && !/connection|refused|reset/i.test(err.message)) return;
    throw err;
  }
  const text = req.method === "HEAD" || res.status === 101 ? "" : await readSome(res);
  return { res, text };
}

/** Reads a response body as text, cancelling streams that never end (SSE). */
async function readSome(res: Response): Promise<string> {
  if ((res.headers.get("content-type") ?? "").includes("text/event-stream")) {
    await res.body?.cancel();
    return "";
  }
  return await res.text();
}

async function openRun(server: TestServer, sessionId: string, signal?: AbortSignal) {
  const session = await server.call("/v1/sessions", {
    method: "POST",
    json: { sessionId },
    signal,
  });
  assert.ok(session.status === 201 || session.status === 409);
  const created = await server.call<{ executionId: string; ingestToken: string }>(
    `/v1/sessions/${sessionId}/executions`,
    { method: "POST", json: {}, signal },
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { executionId, ingestToken } = created.body;
  // Two inputs, so fuzzed input_delivered frames can name accepted ones (and others not).
  for (const data of ["first", { second: 2 }]) {
    const input = await server.call(`/v1/sessions/${sessionId}/executions/${executionId}/input`, {
      method: "POST",
      json: { data },
      signal,
    });
    assert.equal(input.status, 202, JSON.stringify(input.body));
  }
  const client = await IngestClient.connect(
    `${server.wsUrl}/v1/sessions/${sessionId}/executions/${executionId}/ingest`,
    { token: ingestToken },
  );
  return { sessionId, executionId, client };
}

// ---------------------------------------------------------------------------------------
// Reads of huge events

const HUGE_EVENTS = 8;
const HUGE_BYTES = 400_000;
const hugePad = (n: number) => String.fromCharCode(0x41 + n).repeat(HUGE_BYTES);

/**
 * Random reads of a session holding huge events, on an instance with a small viewer buffer
 * and read budget: JSON pages (random `after`, `limit`, filter), Durable Streams catch-ups
 * (random offset) and WebSocket viewers (random `after`) must each return a contiguous run
 * of whole events and a cursor that continues it.
 */
async function fuzzHugeReads(r: Random, reads: number, stepMs: number): Promise<void> {
  const server = await startServer({
    config: { maxFrameBytes: 524_288, viewerBufferBytes: 256 * 1024, readBudgetBytes: 4 << 20 },
  });
  try {
    const run = await openRun(server, "huge");
    for (let n = 1; n <= HUGE_EVENTS; n++) {
      run.client.send({ streamEventType: "output", seq: n, data: { n, pad: hugePad(n) } });
      await run.client.ackOf(n, 20_000);
    }
    const last = HUGE_EVENTS + 2;
    for (let i = 0; i < reads; i++) {
      const after = r.int(0, last);
      const kind = r.int(0, 2);
      const limit = r.pick([1, 2, 5, 100, 1000]);
      const got = await within(
        `huge read ${kind} after ${after}`,
        stepMs,
        (signal) =>
          kind === 0
            ? hugeJsonPage(server, after, limit, signal)
            : kind === 1
            ? hugeDsRead(server, after, signal)
            : hugeViewer(server, after, last),
      );
      const ids = got.events.map((e) => e.eventId);
      const where = `huge read ${kind} after ${after}: ${JSON.stringify(ids)}`;
      assert.deepEqual(ids, ids.map((_, k) => after + 1 + k), where);
      assert.equal(got.next, ids.at(-1) ?? after, where);
      if (after < last) assert.ok(ids.length >= 1, `${where}: at least one event`);
      for (const e of got.events) {
        const data = e.data as { n?: number; pad?: string };
        if (data.pad !== undefined) assert.equal(data.pad, hugePad(data.n!), `${where}: whole`);
      }
    }
    run.client.socket.close();
  } finally {
    await server.close();
  }
}

type HugeRead = { events: Envelope[]; next: number };

async function hugeJsonPage(
  server: TestServer,
  after: number,
  limit: number,
  signal: AbortSignal,
): Promise<HugeRead> {
  const res = await server.call<{ events: Envelope[]; nextAfter: number; lastEventId: number }>(
    `/v1/sessions/huge/events?after=${after}&limit=${limit}`,
    { signal },
  );
  assert.equal(res.status, 200);
  return { events: res.body.events, next: res.body.nextAfter };
}

async function hugeDsRead(
  server: TestServer,
  after: number,
  signal: AbortSignal,
): Promise<HugeRead> {
  const offset = after === 0 ? "-1" : String(after).padStart(16, "0");
  const res = await server.api(`/v1/sessions/huge/ds?offset=${offset}`, { signal });
  assert.equal(res.status, 200);
  const events = await res.json() as Envelope[];
  return { events, next: Number(res.headers.get("stream-next-offset")) };
}

async function hugeViewer(server: TestServer, after: number, last: number): Promise<HugeRead> {
  const events: Envelope[] = [];
  const socket = new WebSocket(`${server.wsUrl}/v1/sessions/huge/stream?after=${after}`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`viewer after ${after} timed out`)), 20_000);
    const done = () => {
      clearTimeout(timer);
      socket.close();
      resolve();
    };
    socket.onmessage = (ev) => {
      events.push(JSON.parse(ev.data as string));
      if (events.at(-1)!.eventId >= last) done();
    };
    socket.onopen = () => after >= last && done();
    socket.onerror = () => {};
  });
  return { events, next: events.at(-1)?.eventId ?? after };
}
