/**
 * Executions over real HTTP and real ingest sockets (PROTOCOL.md 3, 4, 7): creation, the
 * queue and promotion, idempotent creation, the fail and interrupt routes, paging, event
 * order and timestamps, and large events.
 */
import assert from "node:assert/strict";
import { assertError, assertInvalid, snapshot } from "./helpers/assertions.ts";
import {
  createRun,
  getExecution,
  IngestClient,
  type Run,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { API_KEY, rawRequest, type TestServer } from "./helpers/server.ts";
import { keys } from "../src/store/keys.ts";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

const post = (server: TestServer, path: string, json: unknown = {}, headers?: HeadersInit) =>
  server.call(path, { method: "POST", json, headers });

const createSession = async (server: TestServer, sessionId: string) =>
  assert.equal((await post(server, "/v1/sessions", { sessionId })).status, 201);

const fail = (server: TestServer, run: Run, body: unknown = { error: "stop" }) =>
  post(server, `/v1/sessions/${run.sessionId}/executions/${run.executionId}/fail`, body);

const interrupt = (server: TestServer, run: Run, body: unknown = {}) =>
  post(server, `/v1/sessions/${run.sessionId}/executions/${run.executionId}/interrupt`, body);

serverTest("creation answers 201 with the documented body and absolute URLs", async (server) => {
  await createSession(server, "c1");
  const res = await post(server, "/v1/sessions/c1/executions", { input: { prompt: "hi" } });
  assert.equal(res.status, 201);
  const body = res.body as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), [
    "active",
    "executionId",
    "ingestToken",
    "ingestUrl",
    "queuePosition",
    "sessionId",
    "status",
    "streamUrl",
  ]);
  const eid = body.executionId as string;
  assert.match(eid, /^exc_[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.equal(body.sessionId, "c1");
  assert.equal(body.status, "pending");
  assert.equal(body.active, true);
  assert.equal(body.queuePosition, 0);
  assert.equal(body.ingestUrl, `${server.wsUrl}/v1/sessions/c1/executions/${eid}/ingest`);
  assert.equal(body.streamUrl, `${server.wsUrl}/v1/sessions/c1/stream`);
  // At least 128 bits of secret.
  assert.ok((body.ingestToken as string).length >= 22);
});

serverTest("TETHER_PUBLIC_URL sets the scheme and host of the URLs", async (server) => {
  const run = await createRun(server, "pub");
  assert.equal(
    run.ingestUrl,
    `wss://tether.example:8443/v1/sessions/pub/executions/${run.executionId}/ingest`,
  );
  assert.equal(run.streamUrl, "wss://tether.example:8443/v1/sessions/pub/stream");
}, { config: { publicUrl: "https://tether.example:8443" } });

serverTest("a Host header longer than a host name is refused, not stored in the URLs", async (
  server,
) => {
  await server.call("/v1/sessions", { method: "POST", json: { sessionId: "host" } });
  const port = Number(new URL(server.url).port);
  /** A creation with its own Host header (fetch would not send one this long). */
  const createWithHost = (host: string) =>
    rawRequest(port, [
      "POST /v1/sessions/host/executions HTTP/1.1",
      `Host: ${host}:${port}`,
      `Authorization: Bearer ${API_KEY}`,
      `Idempotency-Key: ${host.length}`,
      "Content-Type: application/json",
    ], "{}");
  assert.match(await createWithHost(`${"a".repeat(60)}.example`), /^HTTP\/1.1 201 /);
  const refused = await createWithHost(`${"a".repeat(40_000)}.example`);
  assert.match(refused, /^HTTP\/1.1 400 /);
  assert.match(refused, /"error":"INVALID_REQUEST"/);
});

serverTest("an execution reads back with every documented field", async (server) => {
  await createSession(server, "v");
  const created = await post(server, "/v1/sessions/v/executions", {
    input: ["any", { json: true }],
    graceMs: 2000,
    heartbeatTimeoutMs: 20_000,
    callbackUrl: "http://127.0.0.1:9/hook",
  });
  const eid = (created.body as { executionId: string }).executionId;
  const view = await server.call(`/v1/sessions/v/executions/${eid}`);
  assert.equal(view.status, 200);
  assert.deepEqual(Object.keys(view.body).sort(), [
    "activatedAt",
    "active",
    "createdAt",
    "deliveredInputId",
    "executionId",
    "graceMs",
    "health",
    "heartbeatTimeoutMs",
    "input",
    "inputClosed",
    "lastInputId",
    "sessionId",
    "status",
  ]);
  assert.equal(view.body.status, "pending");
  assert.equal(view.body.active, true);
  assert.deepEqual(view.body.input, ["any", { json: true }]);
  assert.equal(view.body.graceMs, 2000);
  assert.equal(view.body.heartbeatTimeoutMs, 20_000);
  assert.equal(view.body.health, null);
  assert.match(view.body.createdAt as string, ISO);
  assert.equal(view.body.activatedAt, view.body.createdAt);
  // Defaults come from the configuration; a queued execution has no activatedAt.
  const second = await createRun(server, "v");
  const queued = await getExecution(server, second);
  assert.equal(queued.graceMs, server.config.disconnectGraceMs);
  assert.equal(queued.heartbeatTimeoutMs, server.config.heartbeatTimeoutMs);
  assert.equal(queued.input, null);
  assert.equal(queued.active, false);
  assert.equal(queued.activatedAt, undefined);
}, { config: { callbackPrivate: true } }); // a loopback callbackUrl (PROTOCOL.md 4)

serverTest(
  "creation, start and end emit execution_status with the contract's data",
  async (server) => {
    const a = await createRun(server, "st");
    const b = await createRun(server, "st");
    const wrapper = await IngestClient.connect(a.ingestUrl, { token: a.ingestToken });
    const running = await getExecution(server, a);
    assert.equal(running.status, "running");
    assert.equal(running.health, "healthy");
    assert.match(running.startedAt as string, ISO);
    wrapper.send({
      streamEventType: "complete",
      seq: 1,
      timestamp: "2020-01-02T03:04:05.678Z",
      data: { exitCode: 0 },
    });
    assert.deepEqual(await wrapper.closed, { code: 4000, reason: "execution completed" });
    const events = await storedEvents(server, "st");
    const [endedA, promotedB] = [await getExecution(server, a), await getExecution(server, b)];
    assert.deepEqual(events.map((e) => [e.eventId, e.executionId, e.streamEventType, e.data]), [
      [1, a.executionId, "execution_status", {
        status: "pending",
        previousStatus: null,
        active: true,
      }],
      [2, b.executionId, "execution_status", {
        status: "pending",
        previousStatus: null,
        active: false,
      }],
      [3, a.executionId, "execution_status", {
        status: "running",
        previousStatus: "pending",
        active: true,
      }],
      [4, a.executionId, "complete", { exitCode: 0 }],
      [5, a.executionId, "execution_status", {
        status: "completed",
        previousStatus: "running",
        active: false,
      }],
      [6, b.executionId, "execution_status", {
        status: "pending",
        previousStatus: "pending",
        active: true,
      }],
    ]);
    // The service's events of one commit share the timestamp the commit set on the records;
    // the wrapper's frame keeps its own.
    assert.equal(events[0].timestamp, (await getExecution(server, a)).createdAt);
    assert.equal(events[1].timestamp, promotedB.createdAt);
    assert.equal(events[2].timestamp, running.startedAt);
    assert.equal(events[3].timestamp, "2020-01-02T03:04:05.678Z");
    assert.equal(events[4].timestamp, endedA.completedAt);
    assert.equal(events[5].timestamp, endedA.completedAt);
    assert.equal(promotedB.activatedAt, endedA.completedAt);
    assert.equal(endedA.health, null);
    assert.equal(endedA.active, false);
    assert.equal(promotedB.active, true);
  },
);

serverTest(
  "the queue is FIFO and each end promotes the next in the same commit",
  async (server) => {
    const runs: Run[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await post(server, "/v1/sessions/q/executions", { input: i });
      if (res.status === 404) {
        await createSession(server, "q");
        i--;
        continue;
      }
      assert.equal(res.status, 201);
      assert.equal(res.body.queuePosition, i);
      assert.equal(res.body.active, i === 0);
      runs.push(res.body as unknown as Run);
    }
    let session = await server.call("/v1/sessions/q");
    assert.equal(session.body.activeExecutionId, runs[0].executionId);
    assert.deepEqual(session.body.queuedExecutionIds, runs.slice(1).map((r) => r.executionId));
    for (let i = 0; i < 4; i++) {
      const before = (await server.call("/v1/sessions/q")).body.lastEventId as number;
      // Alternate the ways an execution ends.
      const ended = i % 2 === 0 ? await fail(server, runs[i]) : await interrupt(server, runs[i]);
      assert.ok(ended.status === 200 || ended.status === 202, JSON.stringify(ended));
      session = await server.call("/v1/sessions/q");
      assert.equal(session.body.activeExecutionId, runs[i + 1]?.executionId ?? null);
      assert.deepEqual(
        session.body.queuedExecutionIds,
        runs.slice(i + 2).map((r) => r.executionId),
      );
      const commit = (await storedEvents(server, "q")).filter((e) => e.eventId > before);
      const expected = [
        [runs[i].executionId, i % 2 === 0 ? "error" : "interrupted"],
        [runs[i].executionId, "execution_status"],
        ...(i < 3 ? [[runs[i + 1].executionId, "execution_status"]] : []),
      ];
      assert.deepEqual(commit.map((e) => [e.executionId, e.streamEventType]), expected);
      assert.deepEqual(commit.map((e) => e.eventId), commit.map((_, k) => before + 1 + k));
      assert.equal(new Set(commit.map((e) => e.timestamp)).size, 1);
    }
  },
);

serverTest(
  "ifIdle on a busy session is 409 EXECUTION_IN_PROGRESS with the active id",
  async (server) => {
    const idle = await post(server, "/v1/sessions/busy/executions", { ifIdle: true });
    assertError(idle, 404, "SESSION_NOT_FOUND");
    await createSession(server, "busy");
    const first = await post(server, "/v1/sessions/busy/executions", { ifIdle: true });
    assert.equal(first.status, 201);
    const before = await snapshot(server, "busy");
    const res = await post(server, "/v1/sessions/busy/executions", { ifIdle: true });
    assertError(res, 409, "EXECUTION_IN_PROGRESS");
    assert.equal(res.body.activeExecutionId, first.body.executionId);
    assert.deepEqual(await snapshot(server, "busy"), before);
    // Without ifIdle it queues.
    assert.equal((await post(server, "/v1/sessions/busy/executions", {})).body.queuePosition, 1);
  },
);

serverTest("QUEUE_FULL: 429 once TETHER_MAX_QUEUE executions wait", async (server) => {
  await createSession(server, "full");
  for (let i = 0; i < 3; i++) {
    assert.equal((await post(server, "/v1/sessions/full/executions", {})).status, 201);
  }
  const before = await snapshot(server, "full");
  assertError(await post(server, "/v1/sessions/full/executions", {}), 429, "QUEUE_FULL");
  assert.deepEqual(await snapshot(server, "full"), before);
  // Room again once the active one ends (the next is promoted, one place frees up).
  const active = (before.session as { body: { activeExecutionId: string } }).body;
  await post(server, `/v1/sessions/full/executions/${active.activeExecutionId}/fail`, {
    error: "x",
  });
  assert.equal((await post(server, "/v1/sessions/full/executions", {})).status, 201);
  assertError(await post(server, "/v1/sessions/full/executions", {}), 429, "QUEUE_FULL");
}, { config: { maxQueue: 2 } });

serverTest(
  "an idempotent retry returns the same execution and token and creates nothing",
  async (server) => {
    await createSession(server, "idem");
    const headers = { "idempotency-key": "order-42" };
    const body = { input: { n: 1, list: [{ b: 1, a: 2 }] }, graceMs: 5000 };
    const first = await post(server, "/v1/sessions/idem/executions", body, headers);
    assert.equal(first.status, 201);
    const before = await snapshot(server, "idem");
    // Same body with its keys in another order.
    const retry = await post(server, "/v1/sessions/idem/executions", {
      graceMs: 5000,
      input: { list: [{ a: 2, b: 1 }], n: 1 },
    }, headers);
    assert.deepEqual(retry, first);
    assert.deepEqual(await snapshot(server, "idem"), before);
    // The key is scoped to the session.
    await createSession(server, "idem2");
    const elsewhere = await post(server, "/v1/sessions/idem2/executions", body, headers);
    assert.equal(elsewhere.status, 201);
    assert.notEqual(elsewhere.body.executionId, first.body.executionId);
    // A retry still gets the first answer after the execution moved on.
    await fail(server, first.body as unknown as Run);
    assert.deepEqual(await post(server, "/v1/sessions/idem/executions", body, headers), first);
  },
);

serverTest("concurrent retries with one key create one execution", async (server) => {
  await createSession(server, "race");
  const headers = { "idempotency-key": "same" };
  const answers = await Promise.all(
    Array.from(
      { length: 8 },
      () => post(server, "/v1/sessions/race/executions", { input: "x" }, headers),
    ),
  );
  for (const answer of answers) assert.deepEqual(answer, answers[0]);
  assert.equal(answers[0].status, 201);
  const list = await server.call<{ executions: unknown[] }>("/v1/sessions/race/executions");
  assert.equal(list.body.executions.length, 1);
  assert.equal((await server.call("/v1/sessions/race")).body.lastEventId, 1);
});

serverTest("the same Idempotency-Key with a different body is 422", async (server) => {
  await createSession(server, "reuse");
  const headers = { "idempotency-key": "k" };
  await post(server, "/v1/sessions/reuse/executions", { input: 1 }, headers);
  const before = await snapshot(server, "reuse");
  for (const body of [{ input: 2 }, {}, { input: 1, ifIdle: false }]) {
    assertError(
      await post(server, "/v1/sessions/reuse/executions", body, headers),
      422,
      "IDEMPOTENCY_KEY_REUSED",
    );
  }
  assert.deepEqual(await snapshot(server, "reuse"), before);
});

serverTest("fail: 200 {failed}; one failure event; false when already terminal", async (server) => {
  const run = await createRun(server, "f");
  const res = await fail(server, run, { error: "bad", streamEventType: "agent.crash" });
  assert.deepEqual(res, { status: 200, body: { failed: true } });
  assert.deepEqual(await fail(server, run, { error: "again" }), {
    status: 200,
    body: { failed: false },
  });
  const events = await storedEvents(server, "f");
  assert.deepEqual(events.slice(1).map((e) => [e.streamEventType, e.data]), [
    ["agent.crash", { error: "bad", fatal: true }],
    ["execution_status", {
      status: "failed",
      previousStatus: "pending",
      active: false,
      error: "bad",
    }],
  ]);
  const exec = await getExecution(server, run);
  assert.equal(exec.status, "failed");
  assert.equal(exec.error, "bad");
  assert.equal(exec.completedAt, events[1].timestamp);
  // Default type is `error`.
  const other = await createRun(server, "f");
  await fail(server, other, { error: "plain" });
  assert.equal((await storedEvents(server, "f")).at(-2)?.streamEventType, "error");
});

serverTest(
  "error texts are cut to 1,024 code points on the execution, whole in the event",
  async (server) => {
    const run = await createRun(server, "cut");
    const error = "ä😀".repeat(2500); // 5,000 code points, astral ones included
    await fail(server, run, { error });
    const exec = await getExecution(server, run);
    assert.equal(Array.from(exec.error as string).length, 1024);
    assert.ok(error.startsWith(exec.error as string));
    const [cause, status] = (await storedEvents(server, "cut")).slice(-2);
    assert.deepEqual(cause.data, { error, fatal: true });
    assert.equal((status.data as { error: string }).error, exec.error);
    // The same for an interrupt reason.
    const queued = await createRun(server, "cut");
    const reason = "r".repeat(5000);
    await interrupt(server, queued, { reason });
    const interrupted = await getExecution(server, queued);
    assert.equal(interrupted.error, reason.slice(0, 1024));
    const [event] = (await storedEvents(server, "cut")).slice(-2);
    assert.deepEqual(event.data, { reason });
  },
);

serverTest(
  "interrupt: 202 {executionId, status} for pending, running and terminal",
  async (server) => {
    const a = await createRun(server, "int");
    const b = await createRun(server, "int");
    // Queued: interrupted at once.
    assert.deepEqual(await interrupt(server, b, { reason: "not needed" }), {
      status: 202,
      body: { executionId: b.executionId, status: "interrupted" },
    });
    const queued = await getExecution(server, b);
    assert.equal(queued.error, "not needed");
    // Running: flagged, the wrapper gets a kill, the status stays running.
    const wrapper = await IngestClient.connect(a.ingestUrl, { token: a.ingestToken });
    assert.deepEqual(await interrupt(server, a), {
      status: 202,
      body: { executionId: a.executionId, status: "running" },
    });
    const kill = await wrapper.next((m) => m.type === "kill");
    assert.deepEqual(kill, { type: "kill", signal: "SIGTERM", reason: "User interrupted" });
    wrapper.send({ streamEventType: "interrupted", seq: 1, data: { reason: "User interrupted" } });
    assert.deepEqual(await wrapper.closed, { code: 4000, reason: "execution interrupted" });
    // Terminal: left as it is.
    const before = await snapshot(server, "int");
    assert.deepEqual(await interrupt(server, a, { reason: "late" }), {
      status: 202,
      body: { executionId: a.executionId, status: "interrupted" },
    });
    assert.deepEqual(await snapshot(server, "int"), before);
    const ended = await getExecution(server, a);
    assert.equal(ended.error, "User interrupted");
  },
);

serverTest(
  "an execution of another session, or an unknown one, is 404 EXECUTION_NOT_FOUND",
  async (server) => {
    const run = await createRun(server, "mine");
    await createSession(server, "theirs");
    const unknown = "exc_01JAAAAAAAAAAAAAAAAAAAAAAA";
    for (const eid of [run.executionId, unknown, "not-an-id"]) {
      const base = `/v1/sessions/theirs/executions/${eid}`;
      assertError(await server.call(base), 404, "EXECUTION_NOT_FOUND");
      assertError(await post(server, `${base}/interrupt`), 404, "EXECUTION_NOT_FOUND");
      assertError(await post(server, `${base}/fail`, { error: "x" }), 404, "EXECUTION_NOT_FOUND");
    }
    assert.equal((await getExecution(server, run)).status, "pending");
  },
);

serverTest("GET executions pages oldest first with limit and after", async (server) => {
  const runs: Run[] = [];
  for (let i = 0; i < 5; i++) runs.push(await createRun(server, "page"));
  const ids = runs.map((r) => r.executionId);
  const list = async (query: string) => {
    const res = await server.call<{ executions: { executionId: string }[] }>(
      `/v1/sessions/page/executions${query}`,
    );
    assert.equal(res.status, 200, JSON.stringify(res));
    assert.deepEqual(Object.keys(res.body), ["executions"]);
    return res.body.executions.map((e) => e.executionId);
  };
  assert.deepEqual(await list(""), ids);
  assert.deepEqual(await list("?limit=2"), ids.slice(0, 2));
  assert.deepEqual(await list(`?limit=2&after=${ids[1]}`), ids.slice(2, 4));
  assert.deepEqual(await list(`?after=${ids[3]}`), ids.slice(4));
  assert.deepEqual(await list(`?after=${ids[4]}`), []);
  assert.deepEqual(await list("?limit=1000"), ids);
  const full = await server.call<{ executions: Record<string, unknown>[] }>(
    "/v1/sessions/page/executions?limit=1",
  );
  assert.deepEqual(full.body.executions[0], await getExecution(server, runs[0]));
  // An after that names no execution of this session.
  const other = await createRun(server, "page-other");
  for (const after of [other.executionId, "exc_01JAAAAAAAAAAAAAAAAAAAAAAA", "junk"]) {
    assertInvalid(await server.call(`/v1/sessions/page/executions?after=${after}`));
  }
});

serverTest(
  "a 200 KiB event round-trips byte for byte through ingest, GET events and the stream",
  async (server) => {
    const run = await createRun(server, "big");
    const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    // Multi-byte and escaped characters, so no chunk border or re-encoding can go unnoticed.
    const text = 'tether ✓ 😀 "quoted" \\ \n'.repeat(8 * 1024).slice(0, 200 * 1024);
    const data = { text, nested: { list: [1, 2.5, null, true], empty: {} } };
    const timestamp = "2026-02-03T04:05:06.789Z";
    wrapper.send({ streamEventType: "agent", seq: 1, timestamp, data });
    await wrapper.ackOf(1);
    const events = await storedEvents(server, "big");
    const stored = events.find((e) => e.streamEventType === "agent")!;
    assert.ok(
      JSON.stringify(stored.data) === JSON.stringify(data),
      "data differs after GET events",
    );
    assert.equal(stored.timestamp, timestamp);
    const expectedJson = JSON.stringify({
      eventId: stored.eventId,
      executionId: run.executionId,
      sessionId: "big",
      streamEventType: "agent",
      timestamp,
      data,
    });
    // The viewer socket sends the stored text as is.
    const viewer = new WebSocket(
      `${server.wsUrl}/v1/sessions/big/stream?after=${stored.eventId - 1}`,
      {
        headers: { authorization: `Bearer ${API_KEY}` },
      },
    );
    const first = await new Promise<string>((resolve, reject) => {
      viewer.onmessage = (ev) => resolve(ev.data as string);
      viewer.onclose = () => reject(new Error("viewer closed"));
    });
    viewer.onclose = null;
    viewer.close();
    assert.ok(first === expectedJson, "stream message differs from the stored envelope");
    await wrapper.close();
  },
);

serverTest(
  "an input of 32 KiB beyond Latin-1 is stored and read back; the old {input} shape too",
  async (
    server,
  ) => {
    await createSession(server, "big-input");
    // 32,767 bytes of JSON: as a structured KV value (UTF-16) it would exceed 64 KiB.
    const input = "a".repeat(32_762) + "中";
    const created = await post(server, "/v1/sessions/big-input/executions", { input });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const eid = (created.body as { executionId: string }).executionId;
    assert.equal((await server.call(`/v1/sessions/big-input/executions/${eid}`)).body.input, input);
    // An execution input written before inputs were stored as bytes.
    await server.kv.set(keys.execInput(eid), { input: { prompt: "old" } });
    const view = await server.call(`/v1/sessions/big-input/executions/${eid}`);
    assert.deepEqual(view.body.input, { prompt: "old" });
  },
);

serverTest("executions created at once are listed oldest first, in their queue order", async (
  server,
) => {
  await createSession(server, "order");
  // Parallel creations conflict in KV and run again; each retry must come out later, not
  // keep an id made before another creation committed.
  for (let round = 0; round < 3; round++) {
    const created = await Promise.all(
      Array.from({ length: 6 }, () => post(server, "/v1/sessions/order/executions", {})),
    );
    for (const answer of created) assert.equal(answer.status, 201);
    const { body } = await server.call<
      { executions: { executionId: string; createdAt: string }[] }
    >(
      "/v1/sessions/order/executions",
    );
    const listed = body.executions.slice(round * 6);
    const byPosition = created
      .map((answer) => answer.body as { executionId: string; queuePosition: number })
      .toSorted((a, b) => a.queuePosition - b.queuePosition)
      .map((answer) => answer.executionId);
    assert.deepEqual(listed.map((e) => e.executionId), byPosition, `round ${round}`);
    const times = listed.map((e) => e.createdAt);
    assert.deepEqual(times, times.toSorted(), `round ${round}`);
    // The next round queues behind these: fail them all so the queue is empty again.
    for (const id of byPosition) {
      await server.call(`/v1/sessions/order/executions/${id}/fail`, {
        method: "POST",
        json: { error: "done" },
      });
    }
  }
});
