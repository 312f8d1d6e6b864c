/**
 * Black-box probes of PROTOCOL.md sections 1–4, 7, 10 and 11, rule by rule, over real HTTP
 * (and WebSockets where a rule needs a wrapper or a viewer): exact bodies and keys, error
 * codes, precedence of 401/403/404/405, defaults and bounds, the events a commit emits and
 * their order and shared timestamp.
 */
import assert from "node:assert/strict";
import type { Envelope } from "../src/protocol.ts";
import { assertError, assertInvalid } from "./helpers/assertions.ts";
import {
  connectRun,
  createRun,
  eventually,
  getExecution,
  LONG_GRACE,
  type Run,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { API_KEY, startServer, tempKvPath, type TestServer } from "./helpers/server.ts";
import { WsViewer } from "./helpers/viewer.ts";

const ULID = "[0-9A-HJKMNP-TV-Z]{26}";
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const keysOf = (o: unknown) => Object.keys(o as object).sort();

async function createSession(server: TestServer, sessionId: string): Promise<void> {
  const res = await server.call("/v1/sessions", { method: "POST", json: { sessionId } });
  assert.equal(res.status, 201, JSON.stringify(res));
}

/** The events stored after `after`, read through the API. */
async function eventsAfter(server: TestServer, sid: string, after: number): Promise<Envelope[]> {
  return (await storedEvents(server, sid)).filter((e) => e.eventId > after);
}

async function lastEventId(server: TestServer, sid: string): Promise<number> {
  const res = await server.call<{ lastEventId: number }>(`/v1/sessions/${sid}`);
  assert.equal(res.status, 200, JSON.stringify(res));
  return res.body.lastEventId;
}

const exec = (server: TestServer, run: Run) => getExecution(server, run);

// ---------------------------------------------------------------------------------------
// Section 1 and 4: sessions

serverTest("POST /v1/sessions: exact 201 body; GET exact keys; lastEventId 0", async (server) => {
  const created = await server.call("/v1/sessions", {
    method: "POST",
    json: { sessionId: "c1", metadata: { a: [1, { b: null }] } },
  });
  assert.equal(created.status, 201);
  assert.deepEqual(keysOf(created.body), ["createdAt", "metadata", "sessionId"]);
  assert.equal(created.body.sessionId, "c1");
  assert.match(created.body.createdAt as string, ISO);
  assert.deepEqual(created.body.metadata, { a: [1, { b: null }] });

  const got = await server.call(`/v1/sessions/c1`);
  assert.equal(got.status, 200);
  assert.deepEqual(got.body, {
    sessionId: "c1",
    createdAt: created.body.createdAt,
    metadata: { a: [1, { b: null }] },
    activeExecutionId: null,
    queuedExecutionIds: [],
    lastEventId: 0,
  });

  // No body at all and an empty object both create a session with a generated id.
  for (const init of [{ method: "POST" }, { method: "POST", json: {} }]) {
    const res = await server.call("/v1/sessions", init);
    assert.equal(res.status, 201, JSON.stringify(res));
    assert.match(res.body.sessionId as string, new RegExp(`^ses_${ULID}$`));
    assert.deepEqual(res.body.metadata, {});
  }
  assertError(
    await server.call("/v1/sessions", { method: "POST", json: { sessionId: "c1" } }),
    409,
    "SESSION_EXISTS",
  );
});

serverTest("session ids: the documented pattern, 1 to 128 characters", async (server) => {
  for (const id of ["a", "Z9", "a.b:c-d_e", "x".repeat(128), "0" + "-".repeat(127)]) {
    const res = await server.call("/v1/sessions", { method: "POST", json: { sessionId: id } });
    assert.equal(res.status, 201, `${id}: ${JSON.stringify(res)}`);
    assert.equal((await server.call(`/v1/sessions/${encodeURIComponent(id)}`)).status, 200);
  }
  for (const id of ["", "-a", "_a", ".a", ":a", "x".repeat(129), "a b", "a/b", "é", 5, null]) {
    assertInvalid(
      await server.call("/v1/sessions", { method: "POST", json: { sessionId: id } }),
    );
  }
  for (const metadata of [[], null, "x", 1, true]) {
    assertInvalid(await server.call("/v1/sessions", { method: "POST", json: { metadata } }));
  }
  for (const body of ["[]", "null", '"x"', "{", "1"]) {
    assertInvalid(await server.call("/v1/sessions", { method: "POST", body }));
  }
});

// ---------------------------------------------------------------------------------------
// Section 4: executions, creation and its events (section 3 and 7)

serverTest("creation: exact 201 bodies, queuePosition, creation events", async (server) => {
  await createSession(server, "e1");
  const a = await server.call("/v1/sessions/e1/executions", { method: "POST", json: {} });
  const b = await server.call("/v1/sessions/e1/executions", { method: "POST" });
  const c = await server.call("/v1/sessions/e1/executions", { method: "POST", json: {} });
  for (const [res, active, position] of [[a, true, 0], [b, false, 1], [c, false, 2]] as const) {
    assert.equal(res.status, 201, JSON.stringify(res));
    assert.deepEqual(keysOf(res.body), [
      "active",
      "executionId",
      "ingestToken",
      "ingestUrl",
      "queuePosition",
      "sessionId",
      "status",
      "streamUrl",
    ]);
    const eid = res.body.executionId as string;
    assert.match(eid, new RegExp(`^exc_${ULID}$`));
    assert.equal(res.body.sessionId, "e1");
    assert.equal(res.body.status, "pending");
    assert.equal(res.body.active, active);
    assert.equal(res.body.queuePosition, position);
    assert.equal(res.body.ingestUrl, `${server.wsUrl}/v1/sessions/e1/executions/${eid}/ingest`);
    assert.equal(res.body.streamUrl, `${server.wsUrl}/v1/sessions/e1/stream`);
  }
  const session = await server.call("/v1/sessions/e1");
  assert.equal(session.body.activeExecutionId, a.body.executionId);
  assert.deepEqual(session.body.queuedExecutionIds, [b.body.executionId, c.body.executionId]);
  assert.equal(session.body.lastEventId, 3);

  const events = await storedEvents(server, "e1");
  assert.deepEqual(events.map((e) => e.eventId), [1, 2, 3]);
  const runs = [a, b, c].map((r) => r.body as unknown as Run);
  for (const [i, run] of runs.entries()) {
    const view = await exec(server, run);
    assert.deepEqual(events[i], {
      eventId: i + 1,
      executionId: run.executionId,
      sessionId: "e1",
      streamEventType: "execution_status",
      timestamp: view.createdAt,
      data: { status: "pending", previousStatus: null, active: i === 0 },
    });
    const expected: Record<string, unknown> = {
      executionId: run.executionId,
      sessionId: "e1",
      status: "pending",
      active: i === 0,
      input: null,
      graceMs: server.config.disconnectGraceMs,
      heartbeatTimeoutMs: server.config.heartbeatTimeoutMs,
      createdAt: view.createdAt,
      health: null,
      lastInputId: 0,
      deliveredInputId: 0,
      inputClosed: false,
    };
    if (i === 0) expected.activatedAt = view.createdAt;
    assert.deepEqual(view, expected);
  }
});

serverTest(
  "creation: body bounds of input, graceMs, heartbeatTimeoutMs, callbackUrl",
  async (s) => {
    await createSession(s, "b1");
    const post = (json: unknown) => s.call("/v1/sessions/b1/executions", { method: "POST", json });
    for (
      const json of [
        { graceMs: 999 },
        { graceMs: 600_001 },
        { graceMs: 1000.5 },
        { graceMs: "1000" },
        { heartbeatTimeoutMs: 9_999 },
        { heartbeatTimeoutMs: 3_600_001 },
        { callbackUrl: "ftp://example.com/x" },
        { callbackUrl: "not a url" },
        { callbackUrl: 5 },
        { ifIdle: "yes" },
        { input: "x".repeat(32 * 1024) },
        { unknownField: 1 },
      ]
    ) assertInvalid(await post(json));
    assert.equal((await s.call("/v1/sessions/b1")).body.lastEventId, 0);
    const ok = await post({
      graceMs: 1000,
      heartbeatTimeoutMs: 3_600_000,
      callbackUrl: "https://example.com/hook",
      input: { prompt: "x".repeat(1000), n: [1, 2] },
      ifIdle: false,
    });
    assert.equal(ok.status, 201, JSON.stringify(ok));
    const view = await exec(s, ok.body as unknown as Run);
    assert.equal(view.graceMs, 1000);
    assert.equal(view.heartbeatTimeoutMs, 3_600_000);
    assert.deepEqual(view.input, { prompt: "x".repeat(1000), n: [1, 2] });
    assert.equal("callbackUrl" in view, false);
    assert.equal((await post({ graceMs: 600_000, heartbeatTimeoutMs: 10_000 })).status, 201);
  },
);

serverTest("ifIdle: 201 on an idle session, 409 with activeExecutionId when busy", async (s) => {
  await createSession(s, "i1");
  const first = await s.call("/v1/sessions/i1/executions", {
    method: "POST",
    json: { ifIdle: true },
  });
  assert.equal(first.status, 201);
  assert.equal(first.body.active, true);
  const busy = await s.call("/v1/sessions/i1/executions", {
    method: "POST",
    json: { ifIdle: true },
  });
  assertError(busy, 409, "EXECUTION_IN_PROGRESS");
  assert.equal(busy.body.activeExecutionId, first.body.executionId);
  assert.equal((await s.call("/v1/sessions/i1")).body.lastEventId, 1);
  const queued = await s.call("/v1/sessions/i1/executions", {
    method: "POST",
    json: { ifIdle: false },
  });
  assert.equal(queued.status, 201);
  assert.equal(queued.body.queuePosition, 1);
});

serverTest(
  "QUEUE_FULL counts waiting executions only, not the active one",
  async (s) => {
    await createSession(s, "q1");
    const post = () => s.call("/v1/sessions/q1/executions", { method: "POST", json: {} });
    const positions = [];
    for (let i = 0; i < 3; i++) positions.push((await post()).body.queuePosition);
    assert.deepEqual(positions, [0, 1, 2]);
    assertError(await post(), 429, "QUEUE_FULL");
    assert.equal((await s.call("/v1/sessions/q1")).body.lastEventId, 3);
  },
  { config: { maxQueue: 2 } },
);

serverTest("TETHER_MAX_QUEUE 0: an idle session still takes one", async (s) => {
  await createSession(s, "q0");
  const post = () => s.call("/v1/sessions/q0/executions", { method: "POST", json: {} });
  assert.equal((await post()).status, 201);
  assertError(await post(), 429, "QUEUE_FULL");
}, { config: { maxQueue: 0 } });

// ---------------------------------------------------------------------------------------
// Idempotency-Key

serverTest("Idempotency-Key: 1–128 printable characters, else 400", async (s) => {
  await createSession(s, "k1");
  const post = (key: string) =>
    s.call("/v1/sessions/k1/executions", {
      method: "POST",
      json: {},
      headers: { "idempotency-key": key },
    });
  for (const key of ["x".repeat(129), "a\tb", "é"]) assertInvalid(await post(key));
  assert.equal((await s.call("/v1/sessions/k1")).body.lastEventId, 0);
  for (const key of ["k", "x".repeat(128), "a b~!{}\"'", "~"]) {
    const res = await post(key);
    assert.equal(res.status, 201, `${key}: ${JSON.stringify(res)}`);
  }
});

serverTest("Idempotency-Key: same body → same 201 body; scoped per session", async (s) => {
  await createSession(s, "k2");
  await createSession(s, "k3");
  const post = (sid: string, json: unknown, key = "run-1") =>
    s.call(`/v1/sessions/${sid}/executions`, {
      method: "POST",
      json,
      headers: { "idempotency-key": key },
    });
  const first = await post("k2", { input: { a: 1, b: 2 }, ifIdle: true });
  assert.equal(first.status, 201);
  // The execution starts running: a retry still gets the first answer, unchanged.
  const wrapper = await connectRun(first.body as unknown as Run);
  const retry = await post("k2", { ifIdle: true, input: { b: 2, a: 1 } });
  assert.equal(retry.status, 201);
  assert.deepEqual(retry.body, first.body);
  assertError(
    await post("k2", { input: { a: 1, b: 3 }, ifIdle: true }),
    422,
    "IDEMPOTENCY_KEY_REUSED",
  );
  assertError(await post("k2", {}), 422, "IDEMPOTENCY_KEY_REUSED");
  // Same key, other session: a new execution there.
  const other = await post("k3", { input: { a: 1, b: 2 }, ifIdle: true });
  assert.equal(other.status, 201);
  assert.notEqual(other.body.executionId, first.body.executionId);
  assert.equal(other.body.active, true);
  const list = await s.call<{ executions: unknown[] }>("/v1/sessions/k2/executions");
  assert.equal(list.body.executions.length, 1);
  await wrapper.close();
});

serverTest("Idempotency-Key: concurrent retries create one execution", async (s) => {
  await createSession(s, "k4");
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      s.call("/v1/sessions/k4/executions", {
        method: "POST",
        json: { input: "same" },
        headers: { "idempotency-key": "conc" },
      })),
  );
  for (const r of results) {
    assert.equal(r.status, 201);
    assert.deepEqual(r.body, results[0].body);
  }
  assert.equal((await s.call("/v1/sessions/k4")).body.lastEventId, 1);
});

// ---------------------------------------------------------------------------------------
// GET executions: paging

serverTest("GET executions: default limit 100, oldest first, after, bounds", async (s) => {
  await createSession(s, "p1");
  const ids: string[] = [];
  for (let i = 0; i < 101; i++) {
    const res = await s.call("/v1/sessions/p1/executions", { method: "POST", json: { input: i } });
    assert.equal(res.status, 201, JSON.stringify(res));
    ids.push(res.body.executionId as string);
    // End it at once, so the queue never fills.
    await s.call(`/v1/sessions/p1/executions/${ids[i]}/interrupt`, { method: "POST" });
  }
  type Page = { executions: { executionId: string; input: number }[] };
  const page = await s.call<Page>("/v1/sessions/p1/executions");
  assert.equal(page.status, 200);
  assert.deepEqual(keysOf(page.body), ["executions"]);
  assert.deepEqual(page.body.executions.map((e) => e.executionId), ids.slice(0, 100));
  assert.deepEqual(
    page.body.executions.map((e) => e.input),
    Array.from({ length: 100 }, (_, i) => i),
  );
  const rest = await s.call<Page>(`/v1/sessions/p1/executions?after=${ids[99]}`);
  assert.deepEqual(rest.body.executions.map((e) => e.executionId), [ids[100]]);
  const last = await s.call<Page>(`/v1/sessions/p1/executions?after=${ids[100]}`);
  assert.deepEqual(last.body.executions, []);
  const two = await s.call<Page>(`/v1/sessions/p1/executions?limit=2&after=${ids[4]}`);
  assert.deepEqual(two.body.executions.map((e) => e.executionId), ids.slice(5, 7));
  const all = await s.call<Page>(`/v1/sessions/p1/executions?limit=1000`);
  assert.equal(all.body.executions.length, 101);
  for (const q of ["limit=0", "limit=1001", "limit=x", "limit=-1", "limit=1.5"]) {
    assertInvalid(await s.call(`/v1/sessions/p1/executions?${q}`));
  }
  await createSession(s, "p2");
  const foreign = await s.call("/v1/sessions/p2/executions", { method: "POST", json: {} });
  for (const after of [`exc_${"0".repeat(26)}`, "garbage", foreign.body.executionId]) {
    assertInvalid(await s.call(`/v1/sessions/p1/executions?after=${after}`));
  }
  assertError(await s.call("/v1/sessions/nope/executions"), 404, "SESSION_NOT_FOUND");
  assertError(
    await s.call(`/v1/sessions/p1/executions/${foreign.body.executionId}`),
    404,
    "EXECUTION_NOT_FOUND",
  );
});

// ---------------------------------------------------------------------------------------
// Fail, interrupt: events, order, shared timestamp, cut texts

serverTest("fail: event, its status, then the promotion; one timestamp", async (s) => {
  const a = await createRun(s, "f1");
  const b = await createRun(s, "f1");
  const before = await lastEventId(s, "f1");
  const res = await s.call(`/v1/sessions/f1/executions/${a.executionId}/fail`, {
    method: "POST",
    json: { error: "boom" },
  });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { failed: true });
  const events = await eventsAfter(s, "f1", before);
  const [va, vb] = [await exec(s, a), await exec(s, b)];
  const at = va.completedAt;
  assert.equal(vb.activatedAt, at);
  assert.deepEqual(events, [
    {
      eventId: before + 1,
      executionId: a.executionId,
      sessionId: "f1",
      streamEventType: "error",
      timestamp: at,
      data: { error: "boom", fatal: true },
    },
    {
      eventId: before + 2,
      executionId: a.executionId,
      sessionId: "f1",
      streamEventType: "execution_status",
      timestamp: at,
      data: { status: "failed", previousStatus: "pending", active: false, error: "boom" },
    },
    {
      eventId: before + 3,
      executionId: b.executionId,
      sessionId: "f1",
      streamEventType: "execution_status",
      timestamp: at,
      data: { status: "pending", previousStatus: "pending", active: true },
    },
  ]);
  assert.equal(va.status, "failed");
  assert.equal(va.error, "boom");
  assert.equal(va.active, false);
  assert.equal(vb.active, true);
  const again = await s.call(`/v1/sessions/f1/executions/${a.executionId}/fail`, {
    method: "POST",
    json: { error: "again" },
  });
  assert.deepEqual([again.status, again.body], [200, { failed: false }]);
  assert.equal(await lastEventId(s, "f1"), before + 3);
  assert.equal((await exec(s, a)).error, "boom");
});

serverTest("fail: streamEventType, reserved names, bad bodies, unknown ids", async (s) => {
  const a = await createRun(s, "f2");
  const q = await createRun(s, "f2");
  const fail = (eid: string, json: unknown, sid = "f2") =>
    s.call(`/v1/sessions/${sid}/executions/${eid}/fail`, { method: "POST", json });
  for (
    const json of [
      {},
      { error: 5 },
      { error: "x", streamEventType: "execution_status" },
      { error: "x", streamEventType: "wrapper_disconnected" },
      { error: "x", streamEventType: "" },
      { error: "x", streamEventType: "a b" },
      { error: "x", streamEventType: "x".repeat(65) },
      { error: "x", extra: 1 },
    ]
  ) assertInvalid(await fail(a.executionId, json));
  assert.equal(await lastEventId(s, "f2"), 2);
  assertError(await fail(`exc_${"0".repeat(26)}`, { error: "x" }), 404, "EXECUTION_NOT_FOUND");
  assertError(await fail("nope", { error: "x" }), 404, "EXECUTION_NOT_FOUND");
  assertError(await fail(a.executionId, { error: "x" }, "nope"), 404, "SESSION_NOT_FOUND");

  // A queued execution fails without touching the active one; the custom type is used.
  const res = await fail(q.executionId, { error: "gone", streamEventType: "agent.crash:1" });
  assert.deepEqual(res.body, { failed: true });
  const events = await eventsAfter(s, "f2", 2);
  assert.deepEqual(events.map((e) => [e.executionId, e.streamEventType, e.data]), [
    [q.executionId, "agent.crash:1", { error: "gone", fatal: true }],
    [
      q.executionId,
      "execution_status",
      { status: "failed", previousStatus: "pending", active: false, error: "gone" },
    ],
  ]);
  const session = await s.call("/v1/sessions/f2");
  assert.equal(session.body.activeExecutionId, a.executionId);
  assert.deepEqual(session.body.queuedExecutionIds, []);
});

serverTest("error texts are cut to 1,024 code points; the carrying event keeps them", async (s) => {
  const long = "😀é".repeat(700); // 1,400 code points, 4,200 bytes
  const cut = Array.from(long).slice(0, 1024).join("");
  const a = await createRun(s, "t1");
  await s.call(`/v1/sessions/t1/executions/${a.executionId}/fail`, {
    method: "POST",
    json: { error: long },
  });
  const events = await storedEvents(s, "t1");
  assert.equal((events[1].data as { error: string }).error, long);
  assert.equal((events[2].data as { error: string }).error, cut);
  assert.equal((await exec(s, a)).error, cut);

  // Interrupt of a pending execution: the `interrupted` event keeps the reason whole.
  const b = await createRun(s, "t1");
  const before = await lastEventId(s, "t1");
  await s.call(`/v1/sessions/t1/executions/${b.executionId}/interrupt`, {
    method: "POST",
    json: { reason: long },
  });
  const after = await eventsAfter(s, "t1", before);
  assert.deepEqual(after.map((e) => [e.streamEventType, e.data]), [
    ["interrupted", { reason: long }],
    [
      "execution_status",
      { status: "interrupted", previousStatus: "pending", active: false, error: cut },
    ],
  ]);
  assert.equal((await exec(s, b)).error, cut);

  // A running execution: the kill frame carries the cut reason.
  const c = await createRun(s, "t1", LONG_GRACE);
  const wrapper = await connectRun(c);
  await s.call(`/v1/sessions/t1/executions/${c.executionId}/interrupt`, {
    method: "POST",
    json: { reason: long },
  });
  const kill = await wrapper.next((m) => m.type === "kill");
  assert.equal(kill.reason, cut);
  await wrapper.close();
});

serverTest("interrupt: queued, pending, running and terminal; the 202 body", async (s) => {
  const a = await createRun(s, "x1", LONG_GRACE);
  const b = await createRun(s, "x1");
  const c = await createRun(s, "x1");
  const interrupt = (eid: string, init: RequestInit & { json?: unknown } = {}) =>
    s.call(`/v1/sessions/x1/executions/${eid}/interrupt`, { method: "POST", ...init });

  // Queued, no body: `User interrupted`, out of the queue, the active one untouched.
  let before = await lastEventId(s, "x1");
  let res = await interrupt(b.executionId);
  assert.deepEqual([res.status, res.body], [202, {
    executionId: b.executionId,
    status: "interrupted",
  }]);
  let events = await eventsAfter(s, "x1", before);
  const vb = await exec(s, b);
  assert.deepEqual(events.map((e) => [e.executionId, e.streamEventType, e.timestamp, e.data]), [
    [b.executionId, "interrupted", vb.completedAt, { reason: "User interrupted" }],
    [b.executionId, "execution_status", vb.completedAt, {
      status: "interrupted",
      previousStatus: "pending",
      active: false,
      error: "User interrupted",
    }],
  ]);
  assert.equal(vb.error, "User interrupted");
  assert.deepEqual((await s.call("/v1/sessions/x1")).body.queuedExecutionIds, [c.executionId]);

  // Terminal: 202 with the terminal status, nothing emitted.
  before = await lastEventId(s, "x1");
  res = await interrupt(b.executionId, { json: { reason: "again" } });
  assert.deepEqual([res.status, res.body], [202, {
    executionId: b.executionId,
    status: "interrupted",
  }]);
  assert.equal(await lastEventId(s, "x1"), before);

  // Running: 202 `running`, a kill frame with the reason; a second one keeps the first reason.
  const wrapper = await connectRun(a);
  res = await interrupt(a.executionId, { json: { reason: "stop it" } });
  assert.deepEqual([res.status, res.body], [202, {
    executionId: a.executionId,
    status: "running",
  }]);
  const kill = await wrapper.next((m) => m.type === "kill");
  assert.equal(kill.reason, "stop it");
  wrapper.send({ streamEventType: "interrupted", seq: 1, data: { reason: "stop it" } });
  await wrapper.closed;
  await eventually(async () => (await exec(s, a)).status === "interrupted", "interrupted");
  // The promotion of c followed in the same commit.
  events = await storedEvents(s, "x1");
  const tail = events.slice(-3);
  assert.deepEqual(tail.map((e) => [e.executionId, e.streamEventType]), [
    [a.executionId, "interrupted"],
    [a.executionId, "execution_status"],
    [c.executionId, "execution_status"],
  ]);
  assert.equal(tail[2].timestamp, tail[1].timestamp);
  assert.equal(tail[1].timestamp, (await exec(s, a)).completedAt);
  assert.equal((await exec(s, c)).activatedAt, tail[1].timestamp);
  assert.deepEqual(tail[2].data, { status: "pending", previousStatus: "pending", active: true });

  // Pending active with an empty object body.
  res = await interrupt(c.executionId, { json: {} });
  assert.deepEqual(res.body, { executionId: c.executionId, status: "interrupted" });
  assert.equal((await s.call("/v1/sessions/x1")).body.activeExecutionId, null);

  // Bad bodies and ids.
  assertInvalid(await interrupt(c.executionId, { json: { reason: 5 } }));
  assertInvalid(await interrupt(c.executionId, { json: { why: "x" } }));
  assertError(await interrupt(`exc_${"0".repeat(26)}`), 404, "EXECUTION_NOT_FOUND");
});

serverTest("pending → running: one execution_status at startedAt; health", async (s) => {
  const a = await createRun(s, "r1", LONG_GRACE);
  const wrapper = await connectRun(a);
  const view = await exec(s, a);
  assert.equal(view.status, "running");
  assert.equal(view.health, "healthy");
  assert.match(view.startedAt as string, ISO);
  assert.match(view.lastHeartbeatAt as string, ISO);
  const events = await storedEvents(s, "r1");
  assert.deepEqual(events[1], {
    eventId: 2,
    executionId: a.executionId,
    sessionId: "r1",
    streamEventType: "execution_status",
    timestamp: view.startedAt,
    data: { status: "running", previousStatus: "pending", active: true },
  });
  const stamp = "2001-02-03T04:05:06.007Z";
  wrapper.send({ streamEventType: "complete", seq: 1, timestamp: stamp, data: { exitCode: 0 } });
  await wrapper.closed;
  const done = await exec(s, a);
  // The wrapper's frame keeps its own timestamp; the status event has the commit's.
  const [frame] = (await storedEvents(s, "r1")).filter((e) => e.streamEventType === "complete");
  assert.equal(frame.timestamp, stamp);
  assert.equal(done.status, "completed");
  assert.equal(done.health, null);
  assert.equal("error" in done, false);
  const last = (await storedEvents(s, "r1")).at(-1)!;
  assert.deepEqual(last.data, { status: "completed", previousStatus: "running", active: false });
  assert.equal(last.timestamp, done.completedAt);
});

// ---------------------------------------------------------------------------------------
// Delete and re-create

serverTest("delete: 409 while removed; re-created id continues the eventIds", async (s) => {
  const a = await createRun(s, "d1");
  await createRun(s, "d1");
  const viewer = await WsViewer.open(s.wsUrl, "d1");
  await viewer.until((e) => e.length === 2, "replay");
  const res = await s.api("/v1/sessions/d1", { method: "DELETE" });
  assert.equal(res.status, 204);
  assert.equal(await res.text(), "");
  assert.equal((await viewer.closed).code, 1000);
  // The deletion's events (2 per live execution) reached the viewer before the close.
  assert.deepEqual(viewer.events.map((e) => e.eventId), [1, 2, 3, 4, 5, 6]);
  assertError(
    await s.call("/v1/sessions", { method: "POST", json: { sessionId: "d1" } }),
    409,
    "SESSION_EXISTS",
  );
  assertError(await s.call("/v1/sessions/d1", { method: "DELETE" }), 404, "SESSION_NOT_FOUND");
  assertError(
    await s.call(`/v1/sessions/d1/executions/${a.executionId}/fail`, {
      method: "POST",
      json: { error: "x" },
    }),
    404,
    "SESSION_NOT_FOUND",
  );
  // A viewer WebSocket on a deleted session closes with 4404.
  const late = new WebSocket(`${s.wsUrl}/v1/sessions/d1/stream`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  const code = await new Promise<number>((resolve) => late.onclose = (ev) => resolve(ev.code));
  assert.equal(code, 4404);

  let recreated: { status: number; body: Record<string, unknown> } | undefined;
  await eventually(async () => {
    recreated = await s.call("/v1/sessions", { method: "POST", json: { sessionId: "d1" } });
    return recreated.status === 201;
  }, "the purge");
  assert.equal(await lastEventId(s, "d1"), 6);
  // No event of the new session yet: the page is complete (nextAfter reaches lastEventId), or
  // a client paging until then would never stop.
  const empty = await s.call("/v1/sessions/d1/events?after=0");
  assert.deepEqual(empty.body, { events: [], lastEventId: 6, nextAfter: 6 });
  const b = await createRun(s, "d1");
  const events = await storedEvents(s, "d1");
  assert.deepEqual(events.map((e) => [e.eventId, e.executionId]), [[7, b.executionId]]);
  assert.deepEqual((await s.call("/v1/sessions/d1/executions")).body, {
    executions: [await exec(s, b)],
  });
});

// ---------------------------------------------------------------------------------------
// Section 2: authentication, tickets

serverTest("precedence: 401 before 403 before 404", async (s) => {
  await createSession(s, "a1");
  await createSession(s, "a2");
  const { body } = await s.call<{ ticket: string }>("/v1/sessions/a1/tickets", {
    method: "POST",
  });
  const t = body.ticket;
  const anon = { headers: { authorization: "" } };
  // No or bad credentials: 401 whether the session exists or not.
  for (const path of ["/v1/sessions/a1", "/v1/sessions/nope", "/v1/sessions/nope/events"]) {
    assertError(await s.call(path, anon), 401, "UNAUTHORIZED");
    assertError(
      await s.call(path, { headers: { authorization: "Bearer wrong" } }),
      401,
      "UNAUTHORIZED",
    );
    assertError(
      await s.call(`${path}?ticket=garbage`, anon),
      401,
      "UNAUTHORIZED",
    );
  }
  assertError(await s.call("/v1/sessions", { method: "POST", ...anon }), 401, "UNAUTHORIZED");
  assertError(await s.call("/metrics", anon), 401, "UNAUTHORIZED");
  // A valid ticket elsewhere: 403, also for an unknown session.
  for (const path of ["/v1/sessions/a2", "/v1/sessions/nope", "/v1/sessions/nope/executions"]) {
    assertError(await s.call(`${path}?ticket=${t}`, anon), 403, "FORBIDDEN");
  }
  // A ticket on a route it does not grant: 403, even for an unknown execution.
  const eid = `exc_${"0".repeat(26)}`;
  for (
    const [method, path] of [
      ["POST", "/v1/sessions"],
      ["POST", "/v1/sessions/a1/executions"],
      ["POST", `/v1/sessions/a1/executions/${eid}/interrupt`],
      ["POST", `/v1/sessions/a1/executions/${eid}/fail`],
      ["POST", "/v1/sessions/a1/tickets"],
      ["DELETE", "/v1/sessions/a1"],
      ["GET", "/metrics"],
    ]
  ) {
    const sep = path.includes("?") ? "&" : "?";
    assertError(
      await s.call(`${path}${sep}ticket=${t}`, {
        method,
        json: method === "POST" ? {} : undefined,
        ...anon,
      }),
      403,
      "FORBIDDEN",
    );
  }
  // The ticket's own read routes.
  for (const path of ["", "/events", "/executions"]) {
    assert.equal((await s.call(`/v1/sessions/a1${path}?ticket=${t}`, anon)).status, 200);
  }
  assertError(
    await s.call(`/v1/sessions/a1/executions/${eid}?ticket=${t}`, anon),
    404,
    "EXECUTION_NOT_FOUND",
  );
  // The api key: 404 for unknown ids.
  assertError(await s.call("/v1/sessions/nope"), 404, "SESSION_NOT_FOUND");
  // Ticket and a valid api key: the key counts.
  const del = await s.api(`/v1/sessions/a2?ticket=${t}`, { method: "DELETE" });
  assert.equal(del.status, 204);
  // The ticket is no bearer credential.
  assertError(
    await s.call("/v1/sessions/a1", { headers: { authorization: `Bearer ${t}` } }),
    401,
    "UNAUTHORIZED",
  );
});

serverTest("tickets: 201 {ticket, expiresAt}; default 60 s; ttlMs bounds", async (s) => {
  await createSession(s, "tk");
  const t0 = Date.now();
  const res = await s.call("/v1/sessions/tk/tickets", { method: "POST" });
  const t1 = Date.now();
  assert.equal(res.status, 201);
  assert.deepEqual(keysOf(res.body), ["expiresAt", "ticket"]);
  assert.match(res.body.expiresAt as string, ISO);
  const expires = Date.parse(res.body.expiresAt as string);
  assert.ok(expires >= t0 + 60_000 && expires <= t1 + 60_000, `${expires - t0}`);
  for (const ttlMs of [1000, 86_400_000]) {
    const r = await s.call("/v1/sessions/tk/tickets", { method: "POST", json: { ttlMs } });
    assert.equal(r.status, 201);
    const delta = Date.parse(r.body.expiresAt as string) - Date.now();
    assert.ok(Math.abs(delta - ttlMs) < 2000, `${delta}`);
  }
  for (const ttlMs of [999, 86_400_001, 1500.5, "5000", null, 0, -1]) {
    assertInvalid(await s.call("/v1/sessions/tk/tickets", { method: "POST", json: { ttlMs } }));
  }
  assertError(
    await s.call("/v1/sessions/nope/tickets", { method: "POST" }),
    404,
    "SESSION_NOT_FOUND",
  );

  // A 1 s ticket works, then expires (401).
  const short = await s.call<{ ticket: string }>("/v1/sessions/tk/tickets", {
    method: "POST",
    json: { ttlMs: 1000 },
  });
  const anon = { headers: { authorization: "" } };
  assert.equal((await s.call(`/v1/sessions/tk?ticket=${short.body.ticket}`, anon)).status, 200);
  await new Promise((r) => setTimeout(r, 1100));
  assertError(
    await s.call(`/v1/sessions/tk?ticket=${short.body.ticket}`, anon),
    401,
    "UNAUTHORIZED",
  );
});

serverTest("tickets: deleted, or deleted and re-created, session → 401", async (s) => {
  await createSession(s, "tr");
  const { body } = await s.call<{ ticket: string }>("/v1/sessions/tr/tickets", { method: "POST" });
  const anon = { headers: { authorization: "" } };
  assert.equal((await s.api("/v1/sessions/tr", { method: "DELETE" })).status, 204);
  assertError(await s.call(`/v1/sessions/tr?ticket=${body.ticket}`, anon), 401, "UNAUTHORIZED");
  await eventually(async () => {
    const r = await s.call("/v1/sessions", { method: "POST", json: { sessionId: "tr" } });
    return r.status === 201;
  }, "re-creation");
  assertError(await s.call(`/v1/sessions/tr?ticket=${body.ticket}`, anon), 401, "UNAUTHORIZED");
  const ws = new WebSocket(`${s.wsUrl}/v1/sessions/tr/stream?ticket=${body.ticket}`);
  const code = await new Promise<number>((resolve) => ws.onclose = (ev) => resolve(ev.code));
  assert.equal(code, 4401);
});

serverTest("secrets never appear in GET bodies", async (s) => {
  const a = await createRun(s, "sx", { callbackUrl: "http://127.0.0.1:9/hook" });
  const { body } = await s.call<{ ticket: string }>("/v1/sessions/sx/tickets", { method: "POST" });
  const texts = await Promise.all(
    [
      "/v1/sessions/sx",
      "/v1/sessions/sx/executions",
      `/v1/sessions/sx/executions/${a.executionId}`,
      "/v1/sessions/sx/events",
    ]
      .map(async (p) => await (await s.api(`${p}?ticket=${body.ticket}`)).text()),
  );
  for (const text of texts) {
    for (const secret of [a.ingestToken, body.ticket, API_KEY, s.config.ticketSecret ?? "\0"]) {
      assert.equal(text.includes(secret), false, text);
    }
    assert.equal(/tokenHash|ingestToken/.test(text), false, text);
  }
}, { config: { callbackPrivate: true } }); // a loopback callbackUrl (PROTOCOL.md 4)

// ---------------------------------------------------------------------------------------
// Sections 1 and 10: routes, methods, bodies; section 11

serverTest("404 NOT_FOUND for unknown routes, 405 METHOD_NOT_ALLOWED on known paths", async (s) => {
  const eid = `exc_${"0".repeat(26)}`;
  for (
    const [method, path] of [
      ["GET", "/v1/sessions"],
      ["PUT", "/v1/sessions"],
      ["PATCH", "/v1/sessions/x"],
      ["POST", "/v1/sessions/x"],
      ["PUT", "/v1/sessions/x/executions"],
      ["DELETE", `/v1/sessions/x/executions/${eid}`],
      ["GET", `/v1/sessions/x/executions/${eid}/interrupt`],
      ["GET", `/v1/sessions/x/executions/${eid}/fail`],
      ["POST", "/v1/sessions/x/events"],
      ["GET", "/v1/sessions/x/tickets"],
      ["POST", "/healthz"],
      ["POST", "/metrics"],
    ]
  ) {
    const res = await s.call(path, { method });
    assertError(res, 405, "METHOD_NOT_ALLOWED");
  }
  for (
    const path of [
      "/v1",
      "/v1/nope",
      "/nope",
      "/v1/sessions/x/nope",
      `/v1/sessions/x/executions/${eid}/nope`,
      "/v2/sessions",
    ]
  ) {
    assertError(await s.call(path), 404, "NOT_FOUND");
  }
});

serverTest("413 PAYLOAD_TOO_LARGE above 64 KiB, with or without Content-Length", async (s) => {
  await createSession(s, "big");
  const big = JSON.stringify({ metadata: { x: "y".repeat(64 * 1024) } });
  assertError(
    await s.call("/v1/sessions", { method: "POST", body: big }),
    413,
    "PAYLOAD_TOO_LARGE",
  );
  const chunks = new TextEncoder().encode(big);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < chunks.length; i += 8192) controller.enqueue(chunks.slice(i, i + 8192));
      controller.close();
    },
  });
  assertError(
    await s.call("/v1/sessions/big/executions", { method: "POST", body: stream }),
    413,
    "PAYLOAD_TOO_LARGE",
  );
  // A streamed body far over the limit is answered 413 too (and not kept in memory).
  let sent = 0;
  const huge = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= 4 * 1024 * 1024) return controller.close();
      controller.enqueue(new Uint8Array(64 * 1024).fill(0x20));
      sent += 64 * 1024;
    },
  });
  assertError(
    await s.call("/v1/sessions/big/tickets", { method: "POST", body: huge }),
    413,
    "PAYLOAD_TOO_LARGE",
  );
  assert.equal((await s.call("/v1/sessions/big")).body.lastEventId, 0);
  // 64 KiB exactly is read (and then validated).
  const exact = JSON.stringify({ input: "z".repeat(64 * 1024 - 12) });
  assert.equal(new TextEncoder().encode(exact).length, 64 * 1024);
  assertInvalid(await s.call("/v1/sessions/big/executions", { method: "POST", body: exact }));
});

serverTest("GET events: lastEventId is the newest eventId; bad after/limit are 400", async (s) => {
  await createRun(s, "ev");
  const page = await s.call("/v1/sessions/ev/events?after=100");
  assert.equal(page.status, 200);
  assert.deepEqual(page.body.events, []);
  assert.equal(page.body.lastEventId, 1);
  assert.ok((page.body.nextAfter as number) >= 1);
  const full = await s.call("/v1/sessions/ev/events");
  assert.deepEqual(keysOf(full.body), ["events", "lastEventId", "nextAfter"]);
  assert.equal(full.body.lastEventId, 1);
  assert.equal(full.body.nextAfter, 1);
  for (const q of ["after=-1", "after=x", "after=1.5", "limit=0", "limit=1001", "limit=x"]) {
    assertInvalid(await s.call(`/v1/sessions/ev/events?${q}`));
  }
});

serverTest("healthz, metrics and CORS", async (s) => {
  const health = await s.api("/healthz", { headers: { authorization: "" } });
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: "ok" });
  const metrics = await s.api("/metrics");
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain/);
  const text = await metrics.text();
  for (
    const name of [
      "tether_events_stored_total",
      "tether_frames_rejected_total",
      "tether_executions_ended_total",
      "tether_grace_started_total",
      "tether_grace_expired_total",
      "tether_grace_cancelled_total",
      "tether_deadlines_fired_total",
      "tether_deadline_lateness_ms_sum",
      "tether_ingest_sockets",
      "tether_viewer_sockets",
    ]
  ) assert.match(text, new RegExp(`^# TYPE ${name} (counter|gauge)$`, "m"));

  const preflight = await fetch(`${s.url}/v1/sessions`, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type, idempotency-key",
    },
  });
  await preflight.body?.cancel();
  assert.ok(preflight.status === 204 || preflight.status === 200, `${preflight.status}`);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example");
  const allowHeaders = (preflight.headers.get("access-control-allow-headers") ?? "").toLowerCase();
  for (const h of ["authorization", "content-type", "idempotency-key"]) {
    assert.ok(allowHeaders.includes(h), allowHeaders);
  }
  const get = await s.api("/v1/sessions/nope", { headers: { origin: "https://app.example" } });
  await get.body?.cancel();
  assert.equal(get.status, 404);
  assert.equal(get.headers.get("access-control-allow-origin"), "https://app.example");
});

serverTest("allowed origins: listed passes with CORS, others 403 / 4403", async (s) => {
  await createSession(s, "o1");
  const ok = await s.api("/v1/sessions/o1", { headers: { origin: "https://ok.example" } });
  await ok.body?.cancel();
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://ok.example");
  assertError(
    await s.call("/v1/sessions/o1", { headers: { origin: "https://evil.example" } }),
    403,
    "FORBIDDEN",
  );
  const pre = await fetch(`${s.url}/v1/sessions/o1`, {
    method: "OPTIONS",
    headers: { origin: "https://evil.example", "access-control-request-method": "GET" },
  });
  await pre.body?.cancel();
  assert.equal(pre.headers.get("access-control-allow-origin"), null);
  const ws = new WebSocket(`${s.wsUrl}/v1/sessions/o1/stream`, {
    headers: { authorization: `Bearer ${API_KEY}`, origin: "https://evil.example" },
  });
  const code = await new Promise<number>((resolve) => ws.onclose = (ev) => resolve(ev.code));
  assert.equal(code, 4403);
}, { config: { allowedOrigins: ["https://ok.example"] } });

// ---------------------------------------------------------------------------------------
// Section 7: the fixed texts of the deadlines (spelled out, not taken from the code)

serverTest("deadline texts: never connected, no heartbeat, forced interrupt", async (s) => {
  const statusOf = (events: Envelope[], eid: string) =>
    events.filter((e) => e.executionId === eid && e.streamEventType !== "execution_status")
      .map((e) => [e.streamEventType, e.data]);
  const lastStatus = (events: Envelope[], eid: string) =>
    events.filter((e) => e.executionId === eid && e.streamEventType === "execution_status")
      .at(-1)?.data;

  // Never connected.
  const a = await createRun(s, "dl1");
  await eventually(async () => (await exec(s, a)).status === "failed", "pending deadline");
  let events = await storedEvents(s, "dl1");
  assert.deepEqual(statusOf(events, a.executionId), [
    ["error", { error: "Execution timeout - wrapper never connected", fatal: true }],
  ]);
  assert.deepEqual(lastStatus(events, a.executionId), {
    status: "failed",
    previousStatus: "pending",
    active: false,
    error: "Execution timeout - wrapper never connected",
  });

  // Connected, then silent.
  const b = await createRun(s, "dl2", LONG_GRACE);
  const quiet = await connectRun(b);
  assert.equal((await quiet.closed).code, 4000);
  events = await storedEvents(s, "dl2");
  assert.deepEqual(statusOf(events, b.executionId), [
    ["error", { error: "Execution timeout - no heartbeat received", fatal: true }],
  ]);
  assert.equal((await exec(s, b)).error, "Execution timeout - no heartbeat received");

  // An ignored kill.
  const c = await createRun(s, "dl3", LONG_GRACE);
  const deaf = await connectRun(c);
  const beat = setInterval(() => deaf.send({ streamEventType: "heartbeat" }), 50);
  try {
    await s.call(`/v1/sessions/dl3/executions/${c.executionId}/interrupt`, { method: "POST" });
    assert.deepEqual(await deaf.closed, { code: 4000, reason: "execution interrupted" });
  } finally {
    clearInterval(beat);
  }
  events = await storedEvents(s, "dl3");
  assert.deepEqual(statusOf(events, c.executionId), [
    ["interrupted", { reason: "User interrupted", forced: true }],
  ]);
  assert.deepEqual(lastStatus(events, c.executionId), {
    status: "interrupted",
    previousStatus: "running",
    active: false,
    error: "Interrupted - wrapper did not confirm",
  });
}, {
  config: {
    pendingTimeoutMs: 200,
    heartbeatTimeoutMs: 400,
    heartbeatWriteMs: 0,
    interruptTimeoutMs: 200,
  },
});

// ---------------------------------------------------------------------------------------
// Section 2: WebSocket decisions, tickets checked at the start only

const closeCodeOf = (ws: WebSocket) =>
  new Promise<number>((resolve) => ws.onclose = (ev) => resolve(ev.code));

serverTest("viewer WebSocket: 4401 / 4403; a ticket is checked when it connects", async (s) => {
  await createSession(s, "w1");
  await createSession(s, "w2");
  const { body } = await s.call<{ ticket: string }>("/v1/sessions/w1/tickets", {
    method: "POST",
    json: { ttlMs: 1000 },
  });
  assert.equal(await closeCodeOf(new WebSocket(`${s.wsUrl}/v1/sessions/w1/stream`)), 4401);
  assert.equal(
    await closeCodeOf(new WebSocket(`${s.wsUrl}/v1/sessions/w1/stream?ticket=nope`)),
    4401,
  );
  assert.equal(
    await closeCodeOf(new WebSocket(`${s.wsUrl}/v1/sessions/w2/stream?ticket=${body.ticket}`)),
    4403,
  );
  const viewer = await WsViewer.open(s.wsUrl, "w1", {}, { ticket: body.ticket });
  await new Promise((r) => setTimeout(r, 1100));
  const run = await createRun(s, "w1");
  await viewer.until((e) => e.some((x) => x.executionId === run.executionId), "live event");
  await viewer.close();
  assert.equal(
    await closeCodeOf(new WebSocket(`${s.wsUrl}/v1/sessions/w1/stream?ticket=${body.ticket}`)),
    4401,
  );
});

// ---------------------------------------------------------------------------------------
// Section 11: /healthz when KV does not answer

Deno.test({
  name: "healthz: 503 {status: unavailable} when KV does not answer",
  async fn() {
    const s = await startServer({ config: { sweepMs: 60_000 } });
    try {
      assert.deepEqual(await (await fetch(`${s.url}/healthz`)).json(), { status: "ok" });
      s.kv.close();
      const res = await fetch(`${s.url}/healthz`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "unavailable" });
    } finally {
      await s.crash().catch(() => {});
    }
  },
});

Deno.test({
  name: "healthz: 503 within TETHER_HEALTHZ_TIMEOUT_MS when KV hangs instead of failing",
  async fn() {
    const real = await Deno.openKv(":memory:");
    // A network cut to a remote KV: the probe's read never answers.
    const hanging = new Proxy(real, {
      get(target, name) {
        if (name !== "get") {
          const value = Reflect.get(target, name, target);
          return typeof value === "function" ? value.bind(target) : value;
        }
        return (key: Deno.KvKey, options?: { consistency?: Deno.KvConsistencyLevel }) =>
          key[0] === "healthz" ? new Promise(() => {}) : target.get(key, options);
      },
    });
    const s = await startServer({
      kv: hanging,
      config: { healthzTimeoutMs: 100, sweepMs: 60_000 },
    });
    try {
      const started = performance.now();
      const res = await fetch(`${s.url}/healthz`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "unavailable" });
      assert.ok(performance.now() - started < 5000, "answered, not hung");
    } finally {
      await s.close();
    }
  },
});

// ---------------------------------------------------------------------------------------
// Section 2: dev mode

Deno.test("dev mode: no TETHER_API_KEYS and a local KV path → one generated key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tether-dev-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: new URL("../", import.meta.url).pathname,
    env: {
      TETHER_API_KEYS: "",
      TETHER_KV_PATH: `${dir}/tether.kv`,
      PORT: String(port),
      TETHER_LOG_LEVEL: "info",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines: string[] = [];
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let buffer = "";
    while (!lines.some((l) => l.includes('"listening"'))) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`exited early: ${lines.join("\n")}`);
      buffer += value;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      lines.push(...parts);
    }
    const keyLines = lines.filter((l) => /generated api key/.test(l));
    assert.equal(keyLines.length, 1, lines.join("\n"));
    const key = /generated api key: (\S+)/.exec(keyLines[0])![1];
    const call = (auth: string) =>
      fetch(`http://127.0.0.1:${port}/v1/sessions`, {
        method: "POST",
        headers: { authorization: `Bearer ${auth}` },
      });
    const ok = await call(key);
    await ok.body?.cancel();
    assert.equal(ok.status, 201);
    const bad = await call("test-key");
    await bad.body?.cancel();
    assert.equal(bad.status, 401);
    // The key is printed once: no other line (the logs included) repeats it.
    assert.equal(lines.filter((l) => l.includes(key)).length, 1);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reader.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

// ---------------------------------------------------------------------------------------
// Section 2: without TETHER_TICKET_SECRET every instance and restart agrees on one secret

Deno.test({
  name: "signing secret kept in KV: tickets and tokens hold across instances and restarts",
  async fn() {
    const { path, cleanup } = await tempKvPath();
    const [a, b] = await Promise.all([
      startServer({ kvPath: path }),
      startServer({ kvPath: path }),
    ]);
    let c: TestServer | undefined;
    try {
      assert.equal(a.config.ticketSecret, undefined);
      const run = await createRun(a, "sk", LONG_GRACE);
      const { body } = await a.call<{ ticket: string }>("/v1/sessions/sk/tickets", {
        method: "POST",
      });
      const anon = { headers: { authorization: "" } };
      assert.equal((await b.call(`/v1/sessions/sk?ticket=${body.ticket}`, anon)).status, 200);
      const wrapper = await connectRun({
        ...run,
        ingestUrl: run.ingestUrl.replace(a.wsUrl, b.wsUrl),
      });
      await wrapper.close();
      await a.close();
      c = await startServer({ kvPath: path });
      assert.equal((await c.call(`/v1/sessions/sk?ticket=${body.ticket}`, anon)).status, 200);
    } finally {
      await Promise.all([a.close(), b.close(), c?.close()]);
      await cleanup();
    }
  },
});

serverTest(
  "ingestUrl and streamUrl spell the session id as it is (':' and '.' included)",
  async (s) => {
    const run = await createRun(s, "repo:main.1", LONG_GRACE);
    assert.equal(
      run.ingestUrl,
      `${s.wsUrl}/v1/sessions/repo:main.1/executions/${run.executionId}/ingest`,
    );
    assert.equal(run.streamUrl, `${s.wsUrl}/v1/sessions/repo:main.1/stream`);
    const wrapper = await connectRun(run);
    const viewer = await WsViewer.open(s.wsUrl, "repo:main.1");
    await viewer.until((e) => e.length === 2, "creation and start");
    await viewer.close();
    await wrapper.close();
  },
);
