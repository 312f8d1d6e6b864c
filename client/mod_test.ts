import assert from "node:assert/strict";
import { type Envelope, TetherClient, TetherError } from "./mod.ts";
import { API_KEY, startServer, type TestServer } from "../tests/helpers/server.ts";
import { startChaosProxy } from "../tests/helpers/chaos_proxy.ts";
import { connectIngest } from "../tests/helpers/runs.ts";
import { serverTest } from "../tests/helpers/ingest_client.ts";

/** A test against a fresh service with a client holding its api key. */
function clientTest(name: string, fn: (tether: TetherClient, server: TestServer) => Promise<void>) {
  serverTest(name, (server) => fn(new TetherClient({ url: server.url, apiKey: API_KEY }), server));
}

async function rejectsWith(promise: Promise<unknown>, status: number, code: string) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TetherError, String(err));
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.equal(typeof err.message, "string");
    return true;
  });
}

clientTest("every session and execution method against the service", async (tether) => {
  const created = await tether.createSession({ sessionId: "c1", metadata: { repo: "x" } });
  assert.deepEqual(created.metadata, { repo: "x" });
  await rejectsWith(tether.createSession({ sessionId: "c1" }), 409, "SESSION_EXISTS");

  const run = await tether.createExecution("c1", { input: { prompt: "p" } }, {
    idempotencyKey: "k1",
  });
  assert.equal(run.status, "pending");
  assert.equal(run.active, true);
  const again = await tether.createExecution("c1", { input: { prompt: "p" } }, {
    idempotencyKey: "k1",
  });
  assert.equal(again.executionId, run.executionId);
  const queued = await tether.createExecution("c1");
  assert.equal(queued.queuePosition, 1);
  const busy = tether.createExecution("c1", { ifIdle: true });
  await assert.rejects(busy, (err: TetherError) => {
    assert.equal(err.code, "EXECUTION_IN_PROGRESS");
    assert.equal(err.details.activeExecutionId, run.executionId);
    return true;
  });

  const session = await tether.getSession("c1");
  assert.equal(session.activeExecutionId, run.executionId);
  assert.deepEqual(session.queuedExecutionIds, [queued.executionId]);
  const list = await tether.listExecutions("c1", { limit: 1 });
  assert.deepEqual(list.executions.map((e) => e.executionId), [run.executionId]);
  assert.equal((await tether.getExecution("c1", run.executionId)).status, "pending");

  const input = await tether.sendInput("c1", run.executionId, { data: "hi" }, {
    idempotencyKey: "i1",
  });
  assert.deepEqual(input, { executionId: run.executionId, inputId: 1, status: "pending" });
  assert.deepEqual(
    await tether.sendInput("c1", run.executionId, { data: "hi" }, { idempotencyKey: "i1" }),
    input,
    "an idempotent retry",
  );
  const closed = await tether.sendInput("c1", run.executionId, { endOfInput: true });
  assert.equal(closed.inputId, 2);
  await rejectsWith(tether.sendInput("c1", run.executionId, { data: "x" }), 409, "INPUT_CLOSED");
  const interrupted = await tether.interruptExecution("c1", queued.executionId, { reason: "no" });
  assert.equal(interrupted.status, "interrupted");
  assert.deepEqual(await tether.failExecution("c1", run.executionId, { error: "boom" }), {
    failed: true,
  });
  assert.deepEqual(await tether.failExecution("c1", run.executionId, { error: "boom" }), {
    failed: false,
  });

  const page = await tether.getEvents("c1", { eventTypes: ["execution_status"], limit: 100 });
  assert.ok(page.events.length >= 4);
  assert.ok(page.events.every((e) => e.streamEventType === "execution_status"));
  const { ticket, expiresAt } = await tether.createTicket("c1", { ttlMs: 60_000 });
  assert.ok(Date.parse(expiresAt) > Date.now());
  assert.match(tether.viewerUrl("c1", ticket), /\/\?session=c1&ticket=/);

  const viewer = new TetherClient({ url: tether.url, ticket });
  assert.equal((await viewer.getSession("c1")).sessionId, "c1");
  await rejectsWith(viewer.deleteSession("c1"), 403, "FORBIDDEN");

  const doc = await tether.openApi();
  assert.equal(doc.openapi, "3.1.0");

  await tether.deleteSession("c1");
  await rejectsWith(tether.getSession("c1"), 404, "SESSION_NOT_FOUND");
  await rejectsWith(tether.getExecution("c1", run.executionId), 404, "SESSION_NOT_FOUND");
});

clientTest("errors: bad input, bad key, unreachable service", async (tether, server) => {
  await rejectsWith(tether.createSession({ sessionId: "bad id" }), 400, "INVALID_REQUEST");
  const wrongKey = new TetherClient({ url: server.url, apiKey: "nope" });
  await rejectsWith(wrongKey.getSession("x"), 401, "UNAUTHORIZED");
  const nowhere = new TetherClient({ url: "http://127.0.0.1:9", retries: 1, retryBaseMs: 1 });
  await rejectsWith(nowhere.getSession("x"), 0, "NETWORK_ERROR");
});

clientTest("idempotent calls are retried after network and 5xx errors", async (_, server) => {
  let calls = 0;
  let failures: ("reset" | "503")[] = [];
  const flaky: typeof fetch = (input, init) => {
    calls++;
    const failure = failures.shift();
    if (failure === "reset") return Promise.reject(new TypeError("connection reset"));
    if (failure === "503") return Promise.resolve(new Response("{}", { status: 503 }));
    return fetch(input, init);
  };
  const tether = new TetherClient({
    url: server.url,
    apiKey: API_KEY,
    fetch: flaky,
    retryBaseMs: 1,
  });
  failures = ["reset"];
  await rejectsWith(tether.createSession({ sessionId: "r1" }), 0, "NETWORK_ERROR");
  assert.equal(calls, 1, "a POST without Idempotency-Key is not retried");
  calls = 0;
  await tether.createSession({ sessionId: "r1" });
  failures = ["reset", "503"];
  calls = 0;
  assert.equal((await tether.getSession("r1")).sessionId, "r1");
  assert.equal(calls, 3, "a reset, a 503, then the answer");
  failures = ["reset", "503"];
  calls = 0;
  const run = await tether.createExecution("r1", {}, { idempotencyKey: "once" });
  assert.equal(calls, 3, "a creation with an Idempotency-Key is retried");
  assert.deepEqual((await tether.getSession("r1")).activeExecutionId, run.executionId);
  assert.deepEqual((await tether.listExecutions("r1")).executions.length, 1, "created once");
});

Deno.test({
  name: "follow() through a cutting proxy: every event once, in order, ends on deletion",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startServer();
    await using proxy = startChaosProxy({
      targetPort: Number(new URL(server.url).port),
      seed: 11,
      cutAfterMs: [30, 150],
      maxCuts: 25,
    });
    try {
      const tether = new TetherClient({ url: server.url, apiKey: API_KEY });
      const viaProxy = new TetherClient({
        url: proxy.via(server.url),
        apiKey: API_KEY,
        retryBaseMs: 5,
        retryMaxMs: 20,
      });
      await tether.createSession({ sessionId: "f1" });
      const run = await tether.createExecution("f1");
      const received: Envelope[] = [];
      let reconnects = 0;
      const following = (async () => {
        for await (const event of viaProxy.follow("f1", { onReconnect: () => reconnects++ })) {
          received.push(event);
        }
      })();
      const conn = await connectIngest({ ...run, active: true });
      const total = 400;
      for (let i = 1; i <= total; i++) {
        conn.send({ streamEventType: "agent", data: { i } });
        if (i % 20 === 0) await new Promise((r) => setTimeout(r, 25));
      }
      await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
      const stored = (await tether.getEvents("f1", { limit: 1000 })).events;
      while (received.length < stored.length) await new Promise((r) => setTimeout(r, 20));
      await tether.deleteSession("f1");
      await following; // ends by itself on deletion

      assert.ok(proxy.stats.scheduledCuts > 0, "the proxy cut the stream");
      assert.ok(reconnects > 0);
      const ids = received.map((e) => e.eventId);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "in order");
      assert.equal(new Set(ids).size, ids.length, "no duplicate");
      assert.deepEqual(
        received.slice(0, stored.length).map((e) => e.eventId),
        stored.map((e) => e.eventId),
        "nothing lost",
      );
      const agent = received.filter((e) => e.streamEventType === "agent");
      assert.deepEqual(agent.map((e) => (e.data as { i: number }).i), range(total));
    } finally {
      await server.close();
    }
  },
});

clientTest("follow() filters, resumes after `after`, and stops on abort", async (tether) => {
  await tether.createSession({ sessionId: "f2" });
  const run = await tether.createExecution("f2");
  await tether.interruptExecution("f2", run.executionId);
  const stop = new AbortController();
  const seen: Envelope[] = [];
  for await (const event of tether.follow("f2", { after: 1, signal: stop.signal })) {
    seen.push(event);
    if (event.streamEventType === "execution_status") stop.abort();
  }
  assert.ok(seen.every((e) => e.eventId > 1));
  assert.equal(seen.at(-1)?.streamEventType, "execution_status");
  const only: Envelope[] = [];
  const types = tether.follow("f2", {
    eventTypes: ["interrupted"],
    executionIds: [run.executionId],
    signal: AbortSignal.timeout(500),
  });
  for await (const event of types) only.push(event);
  assert.deepEqual(only.map((e) => e.streamEventType), ["interrupted"]);
  const missing = tether.follow("missing");
  await rejectsWith(missing.next(), 404, "SESSION_NOT_FOUND");
});

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

clientTest("follow() with a ticket also ends when the session is deleted", async (tether) => {
  await tether.createSession({ sessionId: "t1" });
  const { ticket } = await tether.createTicket("t1");
  const viewer = new TetherClient({ url: tether.url, ticket, retryBaseMs: 5 });
  const seen: Envelope[] = [];
  const following = (async () => {
    for await (const event of viewer.follow("t1")) seen.push(event);
  })();
  await tether.createExecution("t1");
  while (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
  await tether.deleteSession("t1");
  await following;
  assert.equal(seen[0].streamEventType, "execution_status");
  assert.equal(
    seen.at(-1)?.streamEventType,
    "execution_status",
    "the deletion's failure, then the end",
  );
});

/** A stand-in for what sits outside the system: a proxy answering 200 with its own page. */
async function withForeignServer(
  body: string,
  contentType: string,
  fn: (tether: TetherClient) => Promise<void>,
) {
  await using server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () => new Response(body, { headers: { "content-type": contentType } }),
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  await fn(new TetherClient({ url, apiKey: API_KEY, retries: 0 }));
}

Deno.test("a 2xx answer that is not the service's JSON is a TetherError, not a SyntaxError", async () => {
  await withForeignServer("<html>sign in to the wifi</html>", "text/html", async (tether) => {
    await rejectsWith(tether.getSession("s1"), 200, "HTTP_200");
    await rejectsWith(tether.createSession(), 200, "HTTP_200");
    await rejectsWith(tether.openApi(), 200, "HTTP_200");
    await assert.rejects(
      tether.getSession("s1"),
      { message: "the answer is not JSON (text/html): <html>sign in to the wifi</html>" },
    );
    await assert.rejects(tether.follow("s1").next(), {
      code: "HTTP_200",
      message: "the answer is not an event stream (text/html): <html>sign in to the wifi</html>",
    });
  });
  await withForeignServer("data: nope\n\n", "text/event-stream", async (tether) => {
    await assert.rejects(tether.follow("s1").next(), {
      code: "HTTP_200",
      message: "the answer carries an event that is not JSON (text/event-stream): nope",
    });
  });
});

clientTest("the Durable Streams read route: catch-up, HEAD, long-poll, errors", async (tether) => {
  await tether.createSession({ sessionId: "d1" });
  const run = await tether.createExecution("d1");
  const early = await tether.readDurableStream("d1");
  const conn = await connectIngest({ ...run, active: true });
  for (let i = 1; i <= 3; i++) conn.send({ streamEventType: "agent", data: { i } });
  await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
  const stored = (await tether.getEvents("d1")).events;

  const all = await tether.readDurableStream("d1");
  assert.deepEqual(all.events, stored, "every envelope, as the events page has them");
  assert.equal(all.upToDate, true);
  assert.equal(all.cursor, undefined, "a catch-up read has no cursor");
  assert.match(all.nextOffset, /^\d{16}$/);
  assert.deepEqual(await tether.headDurableStream("d1"), { nextOffset: all.nextOffset });
  const rest = await tether.readDurableStream("d1", { offset: early.nextOffset });
  assert.deepEqual(rest.events, stored.slice(early.events.length), "resumes where it stopped");
  for (const offset of [all.nextOffset, "now"]) {
    const atTail = await tether.readDurableStream("d1", { offset });
    assert.deepEqual(atTail, { events: [], nextOffset: all.nextOffset, upToDate: true });
  }

  const timedOut = await tether.readDurableStream("d1", {
    offset: all.nextOffset,
    live: "long-poll",
    timeoutSeconds: 0,
  });
  assert.deepEqual(timedOut.events, []);
  assert.equal(timedOut.nextOffset, all.nextOffset);
  assert.match(timedOut.cursor!, /^\d+$/);
  const waiting = tether.readDurableStream("d1", {
    offset: all.nextOffset,
    live: "long-poll",
    cursor: timedOut.cursor,
  });
  await new Promise((r) => setTimeout(r, 50));
  const next = await tether.createExecution("d1");
  const woke = await waiting;
  assert.equal(woke.events[0].executionId, next.executionId);
  assert.ok(woke.nextOffset > all.nextOffset, "offsets sort");
  assert.ok(Number(woke.cursor) > Number(timedOut.cursor));
  const stop = new AbortController();
  const abandoned = tether.readDurableStream("d1", {
    offset: "now",
    live: "long-poll",
    signal: stop.signal,
  });
  stop.abort();
  await assert.rejects(abandoned, { name: "AbortError" });

  const { ticket } = await tether.createTicket("d1");
  const viewer = new TetherClient({ url: tether.url, ticket });
  assert.equal((await viewer.readDurableStream("d1")).events.length, stored.length + 1);
  assert.match((await viewer.headDurableStream("d1")).nextOffset, /^\d{16}$/);

  await rejectsWith(tether.readDurableStream("nope"), 404, "SESSION_NOT_FOUND");
  await rejectsWith(tether.headDurableStream("nope"), 404, "SESSION_NOT_FOUND");
  await rejectsWith(tether.readDurableStream("d1", { offset: "x" }), 400, "INVALID_REQUEST");
  const stranger = new TetherClient({ url: tether.url, apiKey: "wrong" });
  await rejectsWith(stranger.headDurableStream("d1"), 401, "UNAUTHORIZED");
});
