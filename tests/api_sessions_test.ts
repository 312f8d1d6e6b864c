/**
 * Sessions, deletion, tickets, credentials, CORS and unknown routes over real HTTP
 * (PROTOCOL.md 1, 2, 4, 10).
 */
import assert from "node:assert/strict";
import { assertError } from "./helpers/assertions.ts";
import { createRun, eventually, IngestClient, serverTest } from "./helpers/ingest_client.ts";
import { API_KEY, type TestServer } from "./helpers/server.ts";
import { keys } from "../src/store/keys.ts";
import type { ExecutionRecord } from "../src/store/records.ts";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

const post = (server: TestServer, path: string, json: unknown = {}, headers?: HeadersInit) =>
  server.call(path, { method: "POST", json, headers });

/** Calls with a ticket (and no api key, unless `headers` adds one). */
const withTicket = (
  server: TestServer,
  path: string,
  ticket: string,
  init: RequestInit & { json?: unknown } = {},
) =>
  server.call(`${path}${path.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(ticket)}`, {
    ...init,
    headers: { authorization: "", ...init.headers as Record<string, string> },
  });

async function ticketFor(server: TestServer, sid: string, ttlMs?: number): Promise<string> {
  const res = await post(server, `/v1/sessions/${sid}/tickets`, ttlMs ? { ttlMs } : {});
  assert.equal(res.status, 201, JSON.stringify(res));
  return (res.body as { ticket: string }).ticket;
}

/** Keys still stored under a session (events, chunks, slots, execution index). */
async function sessionKeys(server: TestServer, sid: string): Promise<number> {
  let n = 0;
  for await (const _ of server.kv.list({ prefix: keys.sessionPrefix(sid) })) n++;
  return n;
}

serverTest("POST /v1/sessions creates a session; GET shows an idle one", async (server) => {
  const created = await post(server, "/v1/sessions", { sessionId: "s1", metadata: { a: [1] } });
  assert.equal(created.status, 201);
  assert.deepEqual(Object.keys(created.body).sort(), ["createdAt", "metadata", "sessionId"]);
  assert.equal(created.body.sessionId, "s1");
  assert.match(created.body.createdAt as string, ISO);
  assert.deepEqual(created.body.metadata, { a: [1] });
  const read = await server.call("/v1/sessions/s1");
  assert.equal(read.status, 200);
  assert.deepEqual(read.body, {
    sessionId: "s1",
    createdAt: created.body.createdAt,
    metadata: { a: [1] },
    activeExecutionId: null,
    queuedExecutionIds: [],
    lastEventId: 0,
  });
});

serverTest("metadata is kept as its JSON reads back: 16 KiB of -0 creates and deletes", async (
  server,
) => {
  // JSON writes -0 as `0` (2 bytes with its comma); V8 would keep each as an 8-byte number and
  // the record would outgrow one KV value, at creation or when the deletion adds to it.
  for (const [sid, count] of [["zeros", 8188], ["fits", 7268]] as const) {
    const body = `{"sessionId":"${sid}","metadata":{"a":[${Array(count).fill("-0").join(",")}]}}`;
    const created = await server.call("/v1/sessions", {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const read = await server.call(`/v1/sessions/${sid}`);
    assert.deepEqual(read.body.metadata, { a: Array(count).fill(0) });
    assert.equal((await server.call(`/v1/sessions/${sid}`, { method: "DELETE" })).status, 204);
  }
});

serverTest("a session id is generated when none is given", async (server) => {
  const created = await post(server, "/v1/sessions");
  assert.equal(created.status, 201);
  assert.match(created.body.sessionId as string, /^ses_[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.deepEqual(created.body.metadata, {});
  const read = await server.call(`/v1/sessions/${created.body.sessionId}`);
  assert.equal(read.status, 200);
});

serverTest(
  "creating an existing session is 409 SESSION_EXISTS and keeps the first",
  async (server) => {
    await post(server, "/v1/sessions", { sessionId: "dup", metadata: { v: 1 } });
    assertError(
      await post(server, "/v1/sessions", { sessionId: "dup", metadata: { v: 2 } }),
      409,
      "SESSION_EXISTS",
    );
    assert.deepEqual((await server.call("/v1/sessions/dup")).body.metadata, { v: 1 });
  },
);

serverTest("an unknown session is 404 SESSION_NOT_FOUND on every session route", async (server) => {
  const eid = "exc_01JAAAAAAAAAAAAAAAAAAAAAAA";
  const routes: [string, string][] = [
    ["GET", "/v1/sessions/nope"],
    ["DELETE", "/v1/sessions/nope"],
    ["POST", "/v1/sessions/nope/executions"],
    ["GET", "/v1/sessions/nope/executions"],
    ["GET", `/v1/sessions/nope/executions/${eid}`],
    ["POST", `/v1/sessions/nope/executions/${eid}/interrupt`],
    ["POST", `/v1/sessions/nope/executions/${eid}/fail`],
    ["GET", "/v1/sessions/nope/events"],
    ["POST", "/v1/sessions/nope/tickets"],
  ];
  for (const [method, path] of routes) {
    const json = path.endsWith("/fail") ? { error: "x" } : method === "POST" ? {} : undefined;
    assertError(await server.call(path, { method, json }), 404, "SESSION_NOT_FOUND");
  }
});

serverTest(
  "DELETE: 204, then 404 everywhere; live executions end failed 'Session deleted'",
  async (server) => {
    const active = await createRun(server, "del");
    const queued = await createRun(server, "del");
    const wrapper = await IngestClient.connect(active.ingestUrl, { token: active.ingestToken });
    const res = await server.api("/v1/sessions/del", { method: "DELETE" });
    assert.equal(res.status, 204);
    assert.equal(await res.text(), "");
    // The wrapper is told its execution is over.
    assert.deepEqual(await wrapper.closed, { code: 4000, reason: "execution failed" });
    for (
      const [method, path] of [
        ["GET", "/v1/sessions/del"],
        ["DELETE", "/v1/sessions/del"],
        ["GET", "/v1/sessions/del/events"],
        ["GET", "/v1/sessions/del/executions"],
        ["GET", `/v1/sessions/del/executions/${active.executionId}`],
        ["POST", "/v1/sessions/del/executions"],
        ["POST", "/v1/sessions/del/tickets"],
        ["POST", `/v1/sessions/del/executions/${queued.executionId}/interrupt`],
      ]
    ) {
      assertError(
        await server.call(path, { method, json: method === "POST" ? {} : undefined }),
        404,
        "SESSION_NOT_FOUND",
      );
    }
    // Before the background removal the records show the outcome (read straight from KV).
    for (const { executionId } of [active, queued]) {
      const exec = (await server.kv.get<ExecutionRecord>(keys.exec(executionId))).value;
      if (exec === null) continue; // already purged
      assert.equal(exec.status, "failed");
      assert.equal(exec.error, "Session deleted");
    }
  },
  { config: { sweepMs: 60_000 } },
);

serverTest(
  "delete fails each live execution with one error and one terminal status event",
  async (server) => {
    const a = await createRun(server, "del2");
    const b = await createRun(server, "del2");
    const viewer = new WebSocket(
      `${server.wsUrl}/v1/sessions/del2/stream`,
      { headers: { authorization: `Bearer ${API_KEY}` } },
    );
    const seen: { executionId: string; streamEventType: string; data: Record<string, unknown> }[] =
      [];
    viewer.onmessage = (ev) => seen.push(JSON.parse(ev.data));
    const closed = new Promise<number>((resolve) => viewer.onclose = (ev) => resolve(ev.code));
    await eventually(() => Promise.resolve(seen.length >= 2), "replay of the creations");
    assert.equal((await server.api("/v1/sessions/del2", { method: "DELETE" })).status, 204);
    assert.equal(await closed, 1000);
    const tail = seen.slice(2);
    assert.deepEqual(tail.map((e) => [e.executionId, e.streamEventType]), [
      [a.executionId, "error"],
      [a.executionId, "execution_status"],
      [b.executionId, "error"],
      [b.executionId, "execution_status"],
    ]);
    assert.deepEqual(tail[0].data, { error: "Session deleted", fatal: true });
    assert.deepEqual(tail[1].data, {
      status: "failed",
      previousStatus: "pending",
      active: false,
      error: "Session deleted",
    });
  },
  { config: { sweepMs: 60_000 } },
);

serverTest(
  "re-creating a session while its tombstone is removed is 409 SESSION_EXISTS",
  async (server) => {
    await post(server, "/v1/sessions", { sessionId: "tomb" });
    assert.equal((await server.api("/v1/sessions/tomb", { method: "DELETE" })).status, 204);
    assertError(await post(server, "/v1/sessions", { sessionId: "tomb" }), 409, "SESSION_EXISTS");
    // The background removal (the sweep fires the purge deadline) frees the id.
    await server.service.runner.sweep();
    assert.equal((await post(server, "/v1/sessions", { sessionId: "tomb" })).status, 201);
  },
  { config: { sweepMs: 60_000 } },
);

serverTest(
  "background purge removes the data and eventIds continue after re-creation",
  async (server) => {
    const run = await createRun(server, "again");
    await post(server, `/v1/sessions/again/executions/${run.executionId}/fail`, { error: "x" });
    const before = await server.call("/v1/sessions/again");
    assert.equal(before.body.lastEventId, 3);
    assert.equal((await server.api("/v1/sessions/again", { method: "DELETE" })).status, 204);
    // The sweep (every 50 ms here) removes everything but the event counter.
    await eventually(
      async () =>
        (await sessionKeys(server, "again")) === 0 &&
        (await server.kv.get(keys.session("again"))).value === null &&
        (await server.kv.get(keys.exec(run.executionId))).value === null,
      "background removal",
    );
    assert.equal((await post(server, "/v1/sessions", { sessionId: "again" })).status, 201);
    const fresh = await server.call("/v1/sessions/again");
    assert.equal(fresh.body.lastEventId, 3);
    assert.deepEqual((await server.call("/v1/sessions/again/events")).body.events, []);
    assert.deepEqual((await server.call("/v1/sessions/again/executions")).body.executions, []);
    assertError(
      await server.call(`/v1/sessions/again/executions/${run.executionId}`),
      404,
      "EXECUTION_NOT_FOUND",
    );
    await createRun(server, "again");
    const events = (await server.call<{ events: { eventId: number }[] }>(
      "/v1/sessions/again/events",
    )).body.events;
    assert.deepEqual(events.map((e) => e.eventId), [4]);
  },
);

serverTest("api key: missing or invalid is 401 UNAUTHORIZED", async (server) => {
  await post(server, "/v1/sessions", { sessionId: "auth" });
  const cases: HeadersInit[] = [
    { authorization: "" },
    { authorization: "Bearer wrong" },
    { authorization: `Basic ${btoa(`x:${API_KEY}`)}` },
    { authorization: `Bearer ${API_KEY}x` },
    { authorization: "Bearer" },
  ];
  for (const headers of cases) {
    assertError(await server.call("/v1/sessions/auth", { headers }), 401, "UNAUTHORIZED");
    assertError(
      await server.call("/v1/sessions", { method: "POST", json: {}, headers }),
      401,
      "UNAUTHORIZED",
    );
    assertError(
      await server.call("/v1/sessions/auth", { method: "DELETE", headers }),
      401,
      "UNAUTHORIZED",
    );
  }
  // The refused delete did nothing.
  assert.equal((await server.call("/v1/sessions/auth")).status, 200);
});

serverTest("tickets: 201 {ticket, expiresAt}; ttlMs default and range", async (server) => {
  await post(server, "/v1/sessions", { sessionId: "t" });
  const start = Date.now();
  const res = await post(server, "/v1/sessions/t/tickets");
  assert.equal(res.status, 201);
  assert.deepEqual(Object.keys(res.body).sort(), ["expiresAt", "ticket"]);
  const expiresAt = Date.parse(res.body.expiresAt as string);
  assert.match(res.body.expiresAt as string, ISO);
  assert.ok(expiresAt >= start + 60_000 - 50 && expiresAt <= Date.now() + 60_000 + 50);
  const custom = await post(server, "/v1/sessions/t/tickets", { ttlMs: 86_400_000 });
  assert.equal(custom.status, 201);
  assert.ok(Date.parse(custom.body.expiresAt as string) > Date.now() + 86_000_000);
  assert.equal((await post(server, "/v1/sessions/t/tickets", { ttlMs: 1000 })).status, 201);
  for (const ttlMs of [999, 86_400_001, 0, -5, 1500.5, "5000", null]) {
    assertError(await post(server, "/v1/sessions/t/tickets", { ttlMs }), 400, "INVALID_REQUEST");
  }
});

serverTest("a ticket reads its session and nothing else", async (server) => {
  const run = await createRun(server, "tk");
  await post(server, "/v1/sessions", { sessionId: "other" });
  const ticket = await ticketFor(server, "tk");
  for (
    const path of [
      "/v1/sessions/tk",
      "/v1/sessions/tk/events",
      "/v1/sessions/tk/executions",
      `/v1/sessions/tk/executions/${run.executionId}`,
    ]
  ) {
    assert.equal((await withTicket(server, path, ticket)).status, 200, path);
  }
  const base = `/v1/sessions/tk/executions/${run.executionId}`;
  for (
    const [method, path, json] of [
      ["POST", `${base}/interrupt`, {}],
      ["POST", `${base}/fail`, { error: "x" }],
      ["DELETE", "/v1/sessions/tk", undefined],
      ["POST", "/v1/sessions/tk/executions", {}],
      ["POST", "/v1/sessions/tk/tickets", {}],
      ["POST", "/v1/sessions", { sessionId: "new" }],
    ] as const
  ) {
    assertError(await withTicket(server, path, ticket, { method, json }), 403, "FORBIDDEN");
  }
  // A ticket for another session.
  for (const path of ["/v1/sessions/other", "/v1/sessions/other/events"]) {
    assertError(await withTicket(server, path, ticket), 403, "FORBIDDEN");
  }
  // Nothing happened: the execution still runs its course, no session was created or deleted.
  const exec = await server.call(base);
  assert.equal(exec.body.status, "pending");
  assert.equal((await server.call("/v1/sessions/new")).status, 404);
  assert.equal((await server.call("/v1/sessions/tk")).status, 200);
});

serverTest("expired, forged or garbage tickets are 401", async (server) => {
  await post(server, "/v1/sessions", { sessionId: "ex" });
  const session = (await server.kv.get<{ incarnation: string }>(keys.session("ex"))).value!;
  const expired = await server.service.rt.credentials.issueTicket({
    sessionId: "ex",
    incarnation: session.incarnation,
    expiresAt: Date.now() - 1,
  });
  const valid = await ticketFor(server, "ex");
  const [body, mac] = valid.split(".");
  for (const ticket of [expired, `${body}.${mac.slice(1)}A`, "garbage", `${body}x.${mac}`]) {
    assertError(await withTicket(server, "/v1/sessions/ex", ticket), 401, "UNAUTHORIZED");
  }
  // A short ticket really expires.
  const short = await ticketFor(server, "ex", 1000);
  assert.equal((await withTicket(server, "/v1/sessions/ex", short)).status, 200);
  await new Promise((r) => setTimeout(r, 1100));
  assertError(await withTicket(server, "/v1/sessions/ex", short), 401, "UNAUTHORIZED");
});

serverTest("a ticket is bound to the session's incarnation", async (server) => {
  await post(server, "/v1/sessions", { sessionId: "inc" });
  const ticket = await ticketFor(server, "inc");
  assert.equal((await server.api("/v1/sessions/inc", { method: "DELETE" })).status, 204);
  assertError(await withTicket(server, "/v1/sessions/inc", ticket), 401, "UNAUTHORIZED");
  await server.service.runner.sweep(); // the purge frees the id
  assert.equal((await post(server, "/v1/sessions", { sessionId: "inc" })).status, 201);
  assertError(await withTicket(server, "/v1/sessions/inc", ticket), 401, "UNAUTHORIZED");
  const fresh = await ticketFor(server, "inc");
  assert.equal((await withTicket(server, "/v1/sessions/inc", fresh)).status, 200);
}, { config: { sweepMs: 60_000 } });

serverTest("when both a ticket and the api key are sent, the api key counts", async (server) => {
  const run = await createRun(server, "both");
  await post(server, "/v1/sessions", { sessionId: "elsewhere" });
  const foreign = await ticketFor(server, "elsewhere");
  const key = { authorization: `Bearer ${API_KEY}` };
  // A ticket for another session, or garbage, does not spoil the api key.
  assert.equal(
    (await withTicket(server, "/v1/sessions/both", foreign, { headers: key })).status,
    200,
  );
  assert.equal(
    (await withTicket(server, "/v1/sessions/both", "junk", { headers: key })).status,
    200,
  );
  const failed = await withTicket(
    server,
    `/v1/sessions/both/executions/${run.executionId}/fail`,
    foreign,
    { method: "POST", json: { error: "by key" }, headers: key },
  );
  assert.deepEqual(failed, { status: 200, body: { failed: true } });
});

serverTest("GET responses never show secrets", async (server) => {
  const run = await createRun(server, "sec");
  const ticket = await ticketFor(server, "sec");
  const texts = await Promise.all([
    server.api("/v1/sessions/sec").then((r) => r.text()),
    server.api(`/v1/sessions/sec/executions/${run.executionId}`).then((r) => r.text()),
    server.api("/v1/sessions/sec/executions").then((r) => r.text()),
    server.api("/v1/sessions/sec/events").then((r) => r.text()),
  ]);
  const secret = run.ingestToken.split(".")[2];
  for (const text of texts) {
    assert.ok(!text.includes(secret), text);
    assert.ok(!text.includes(ticket), text);
    assert.ok(!text.includes(API_KEY), text);
    assert.ok(!/tokenHash|incarnation/.test(text), text);
  }
});

serverTest(
  "unknown routes are 404 NOT_FOUND; a wrong method is 405 METHOD_NOT_ALLOWED",
  async (server) => {
    await post(server, "/v1/sessions", { sessionId: "r" });
    for (const path of ["/v1/nope", "/nope", "/v1/sessions/r/nope", "/v2/sessions", "/v1"]) {
      assertError(await server.call(path), 404, "NOT_FOUND");
    }
    const eid = "exc_01JAAAAAAAAAAAAAAAAAAAAAAA";
    for (
      const [method, path] of [
        ["PUT", "/v1/sessions"],
        ["GET", "/v1/sessions"],
        ["PATCH", "/v1/sessions/r"],
        ["POST", "/v1/sessions/r"],
        ["DELETE", "/v1/sessions/r/executions"],
        ["PUT", `/v1/sessions/r/executions/${eid}`],
        ["GET", `/v1/sessions/r/executions/${eid}/fail`],
        ["GET", `/v1/sessions/r/executions/${eid}/interrupt`],
        ["POST", "/v1/sessions/r/events"],
        ["GET", "/v1/sessions/r/tickets"],
        ["POST", "/healthz"],
      ]
    ) {
      assertError(await server.call(path, { method }), 405, "METHOD_NOT_ALLOWED");
    }
    // A refused method changed nothing.
    assert.equal((await server.call("/v1/sessions/r")).status, 200);
  },
);

serverTest(
  "TETHER_ALLOWED_ORIGINS: listed origins get CORS headers, others 403",
  async (server) => {
    await post(server, "/v1/sessions", { sessionId: "cors" });
    const ok = "https://app.example";
    const read = await server.api("/v1/sessions/cors", { headers: { origin: ok } });
    assert.equal(read.status, 200);
    assert.equal(read.headers.get("access-control-allow-origin"), ok);
    await read.body?.cancel();
    const events = await server.api("/v1/sessions/cors/events", { headers: { origin: ok } });
    assert.equal(events.status, 200);
    assert.equal(events.headers.get("access-control-allow-origin"), ok);
    await events.body?.cancel();
    const preflight = await fetch(`${server.url}/v1/sessions/cors/executions`, {
      method: "OPTIONS",
      headers: {
        origin: ok,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, idempotency-key",
      },
    });
    assert.ok(preflight.status === 204 || preflight.status === 200, String(preflight.status));
    assert.equal(preflight.headers.get("access-control-allow-origin"), ok);
    assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/);
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /idempotency-key/i);
    await preflight.body?.cancel();
    // An error answer to a listed origin still carries the header, so the browser can read it.
    const missing = await server.api("/v1/sessions/none", { headers: { origin: ok } });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("access-control-allow-origin"), ok);
    await missing.body?.cancel();

    const evil = "https://evil.example";
    for (
      const [method, path] of [
        ["GET", "/v1/sessions/cors"],
        ["GET", "/v1/sessions/cors/events"],
        ["POST", "/v1/sessions"],
        ["DELETE", "/v1/sessions/cors"],
        ["OPTIONS", "/v1/sessions/cors"],
      ]
    ) {
      const res = await server.call(path, {
        method,
        headers: { origin: evil, "access-control-request-method": "GET" },
        json: method === "POST" ? { sessionId: "evil" } : undefined,
      });
      assertError(res, 403, "FORBIDDEN");
    }
    // Refused requests changed nothing; requests without an Origin (servers) are not browsers.
    assert.equal((await server.call("/v1/sessions/cors")).status, 200);
    assert.equal((await server.call("/v1/sessions/evil")).status, 404);
  },
  { config: { allowedOrigins: ["https://app.example"] } },
);

serverTest("without an allow-list any origin is served", async (server) => {
  await post(server, "/v1/sessions", { sessionId: "open" });
  const res = await server.api("/v1/sessions/open", { headers: { origin: "https://x.example" } });
  assert.equal(res.status, 200);
  assert.ok(res.headers.get("access-control-allow-origin"));
  await res.body?.cancel();
});
