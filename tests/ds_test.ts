/**
 * The Durable Streams read endpoint (PROTOCOL.md 6.1), end to end with the official
 * `@durable-streams/client` (catch-up, long-poll, SSE, resume from a saved offset while a
 * wrapper streams), plus raw HTTP checks of the headers, methods and credentials.
 */
import assert from "node:assert/strict";
import { stream } from "@durable-streams/client";
import { API_KEY, startServer, type TestServer } from "./helpers/server.ts";
import {
  createRun,
  type Envelope,
  eventually,
  type Run,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { connectIngest } from "./helpers/runs.ts";

const auth = { Authorization: `Bearer ${API_KEY}` };
const dsUrl = (server: TestServer, sid: string) => `${server.url}/v1/sessions/${sid}/ds`;

function assertExactlyOnce(received: Envelope[], log: Envelope[]): void {
  assert.deepEqual(received.map((e) => e.eventId), log.map((e) => e.eventId));
  assert.deepEqual(received, log);
}

/** Creates the session again once its deletion has finished (the id is free again). */
async function recreateSession(server: TestServer, sessionId: string): Promise<void> {
  await eventually(async () => {
    const r = await server.api("/v1/sessions", { method: "POST", json: { sessionId } });
    await r.body?.cancel();
    return r.status === 201;
  }, "session recreated");
}

async function withRun(
  sid: string,
  fn: (server: TestServer, run: Run) => Promise<void>,
): Promise<void> {
  const server = await startServer();
  try {
    await fn(server, await createRun(server, sid));
  } finally {
    await server.close();
  }
}

Deno.test("ds: catch-up with the official client returns the whole log as envelopes", async () => {
  await withRun("ds-catchup", async (server, run) => {
    const conn = await connectIngest(run);
    for (let i = 0; i < 5; i++) conn.send({ streamEventType: "agent", data: { step: i } });
    await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
    const log = await storedEvents(server, run.sessionId);
    assert.equal(log.length, 9); // created, running, 5 agent, complete, completed

    const res = await stream<Envelope>({
      url: dsUrl(server, run.sessionId),
      headers: auth,
      offset: "-1",
      live: false,
    });
    assertExactlyOnce(await res.json(), log);
    assert.equal(res.offset, "0000000000000009");
    assert.equal(res.upToDate, true);

    // Resuming from a saved offset returns only what follows it.
    const rest = await stream<Envelope>({
      url: dsUrl(server, run.sessionId),
      headers: auth,
      offset: "0000000000000006",
      live: false,
    });
    assertExactlyOnce(await rest.json(), log.slice(6));
  });
});

/** Follows the stream with the client until `until` is seen; returns every item. */
async function follow(
  server: TestServer,
  sid: string,
  options: { live: "long-poll" | "sse"; offset: string; params?: Record<string, string> },
  until: (e: Envelope) => boolean,
): Promise<{ items: Envelope[]; offset: string; liveReads: number }> {
  let liveReads = 0;
  const res = await stream<Envelope>({
    url: dsUrl(server, sid),
    headers: auth,
    offset: options.offset,
    live: options.live,
    params: options.params,
    fetch: (input, init) => {
      if (new URL(String(input)).searchParams.get("live") === options.live) liveReads++;
      return fetch(input, init);
    },
  });
  const items: Envelope[] = [];
  const done = Promise.withResolvers<string>();
  res.subscribeJson((batch) => {
    items.push(...batch.items);
    if (batch.items.some(until)) done.resolve(batch.offset);
  });
  const timer = setTimeout(() => done.reject(new Error(`${options.live}: no end seen`)), 15_000);
  try {
    const offset = await done.promise;
    return { items, offset, liveReads };
  } finally {
    clearTimeout(timer);
    res.cancel();
  }
}

const isEnd = (e: Envelope) =>
  e.streamEventType === "execution_status" &&
  (e.data as { status: string }).status === "completed";

/** Sends `count` agent frames `everyMs` apart, then completes the run. */
async function streamRun(run: Run, count: number, everyMs: number): Promise<void> {
  const conn = await connectIngest(run);
  for (let i = 0; i < count; i++) {
    conn.send({ streamEventType: "agent", data: { step: i, text: `line ${i}` } });
    await new Promise((r) => setTimeout(r, everyMs));
  }
  await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
}

Deno.test("ds: long-poll delivers live events exactly once, in order", async () => {
  await withRun("ds-longpoll", async (server, run) => {
    const following = follow(server, run.sessionId, { live: "long-poll", offset: "-1" }, isEnd);
    await streamRun(run, 30, 10);
    const { items, offset, liveReads } = await following;
    assert.ok(liveReads >= 2, `long-polled ${liveReads} times`);
    const log = await storedEvents(server, run.sessionId);
    assertExactlyOnce(items, log);
    assert.equal(offset, String(log.at(-1)!.eventId).padStart(16, "0"));
  });
});

Deno.test("ds: SSE delivers live events exactly once across server-ended connections", async () => {
  await withRun("ds-sse", async (server, run) => {
    // timeout=2 makes the server end each SSE read after 2 s, so the client reconnects
    // from its offset at least once while the run streams for about 3 s.
    const following = follow(
      server,
      run.sessionId,
      { live: "sse", offset: "-1", params: { timeout: "2" } },
      isEnd,
    );
    await streamRun(run, 60, 50);
    const { items, liveReads } = await following;
    assert.ok(liveReads >= 2, `${liveReads} SSE connections`);
    assertExactlyOnce(items, await storedEvents(server, run.sessionId));
  });
});

Deno.test("ds: a reader resumes from a saved offset while the wrapper streams", async () => {
  await withRun("ds-resume", async (server, run) => {
    const streaming = streamRun(run, 80, 15);
    await eventually(
      async () => (await storedEvents(server, run.sessionId)).length >= 20,
      "20 events",
    );
    // First reader: catch up, remember the offset, go away.
    const first = await stream<Envelope>({
      url: dsUrl(server, run.sessionId),
      headers: auth,
      live: false,
    });
    const seen = await first.json();
    const saved = first.offset;
    assert.ok(seen.length >= 20);
    // Second reader: resume live (SSE) from the saved offset while events keep coming.
    const { items } = await follow(server, run.sessionId, { live: "sse", offset: saved }, isEnd);
    await streaming;
    assertExactlyOnce([...seen, ...items], await storedEvents(server, run.sessionId));
  });
});

Deno.test("ds: raw HTTP headers, methods, credentials and offsets", async () => {
  const server = await startServer();
  try {
    const run = await createRun(server, "ds-raw");
    const url = dsUrl(server, "ds-raw");
    const tail = "0000000000000001"; // the creation's execution_status

    // HEAD: tail offset, content type, never cached, no body.
    let res = await fetch(url, { method: "HEAD", headers: auth });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("stream-next-offset"), tail);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(await res.text(), "");

    // Catch-up: a JSON array with the envelopes, ETag, up-to-date, browser-safety headers.
    res = await fetch(`${url}?offset=-1`, { headers: auth });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.length, 1);
    assert.equal(body[0].eventId, 1);
    assert.equal(body[0].executionId, run.executionId);
    assert.equal(res.headers.get("stream-next-offset"), tail);
    assert.equal(res.headers.get("stream-up-to-date"), "true");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const etag = res.headers.get("etag")!;
    assert.match(etag, /^"ds-raw:0{16}:0{15}1"$/);
    // As RFC 9110 compares: the tag itself, its weak form, `*`, or one of a list.
    for (const tags of [etag, `W/${etag}`, "*", `"other", ${etag}`]) {
      res = await fetch(`${url}?offset=-1`, { headers: { ...auth, "if-none-match": tags } });
      assert.equal(res.status, 304, tags);
      await res.body?.cancel();
    }
    res = await fetch(`${url}?offset=-1`, { headers: { ...auth, "if-none-match": `"other"` } });
    assert.equal(res.status, 200);
    await res.body?.cancel();

    // offset=now: empty array at the tail; offset at the tail: empty array, same offset.
    for (const offset of ["now", tail]) {
      res = await fetch(`${url}?offset=${offset}`, { headers: auth });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), []);
      assert.equal(res.headers.get("stream-next-offset"), tail);
      assert.equal(res.headers.get("stream-up-to-date"), "true");
    }

    // Long-poll with nothing new: 204 after the (shortened) timeout, with the live headers;
    // an echoed cursor always gets a larger one back.
    const started = Date.now();
    res = await fetch(`${url}?offset=${tail}&live=long-poll&timeout=1`, { headers: auth });
    assert.equal(res.status, 204);
    assert.ok(Date.now() - started >= 900, "waited for the timeout");
    assert.equal(res.headers.get("stream-next-offset"), tail);
    assert.equal(res.headers.get("stream-up-to-date"), "true");
    const cursor = res.headers.get("stream-cursor")!;
    assert.match(cursor, /^\d+$/);
    res = await fetch(`${url}?offset=${tail}&live=long-poll&timeout=0&cursor=${cursor}`, {
      headers: auth,
    });
    assert.equal(res.status, 204);
    assert.ok(Number(res.headers.get("stream-cursor")) > Number(cursor));

    // Long-poll wakes up when an event is stored.
    const polling = fetch(`${url}?offset=now&live=long-poll`, { headers: auth });
    await new Promise((r) => setTimeout(r, 100));
    const conn = await connectIngest(run); // admission stores execution_status running
    res = await polling;
    assert.equal(res.status, 200);
    const woke = await res.json();
    assert.equal(woke[0].eventId, 2);
    assert.equal(res.headers.get("stream-next-offset"), "0000000000000002");
    assert.ok(res.headers.get("stream-cursor"));
    conn.close();

    // Bad input.
    for (const query of ["offset=12", "offset=abc", "offset=-2", "live=forever&offset=-1"]) {
      res = await fetch(`${url}?${query}`, { headers: auth });
      assert.equal(res.status, 400, query);
      assert.equal((await res.json()).error, "INVALID_REQUEST");
    }
    res = await fetch(`${url}?live=long-poll`, { headers: auth });
    assert.equal(res.status, 400, "a live read needs an offset");
    await res.body?.cancel();

    // Writes are not part of the read path.
    for (const method of ["PUT", "POST", "DELETE"]) {
      res = await fetch(url, { method, headers: auth, body: method === "DELETE" ? null : "[]" });
      assert.equal(res.status, 405, method);
      assert.equal((await res.json()).error, "METHOD_NOT_ALLOWED");
    }

    // Credentials: none → 401; a ticket grants GET and HEAD of its session only.
    res = await fetch(url);
    assert.equal(res.status, 401);
    await res.body?.cancel();
    const { body: t } = await server.call<{ ticket: string }>("/v1/sessions/ds-raw/tickets", {
      method: "POST",
      json: {},
    });
    res = await fetch(`${url}?ticket=${t.ticket}`, { method: "HEAD" });
    assert.equal(res.status, 200);
    res = await fetch(`${url}?offset=-1&ticket=${t.ticket}`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    await server.call("/v1/sessions", { method: "POST", json: { sessionId: "ds-other" } });
    res = await fetch(`${dsUrl(server, "ds-other")}?ticket=${t.ticket}`);
    assert.equal(res.status, 403);
    await res.body?.cancel();

    // Unknown session: 404 for GET and HEAD.
    res = await fetch(dsUrl(server, "ds-nobody"), { headers: auth });
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error, "SESSION_NOT_FOUND");
    res = await fetch(dsUrl(server, "ds-nobody"), { method: "HEAD", headers: auth });
    assert.equal(res.status, 404);
  } finally {
    await server.close();
  }
});

Deno.test("ds: deletion ends live reads; a recreated session continues at the same URL", async () => {
  await withRun("ds-deleted", async (server, run) => {
    const url = dsUrl(server, run.sessionId);
    const polling = fetch(`${url}?offset=now&live=long-poll`, { headers: auth });
    await new Promise((r) => setTimeout(r, 100));
    // Deleting fails the pending execution (events 2, 3) and marks the session deleted.
    assert.equal(
      (await server.api(`/v1/sessions/${run.sessionId}`, { method: "DELETE" })).status,
      204,
    );
    const res = await polling;
    // The poll either saw the failure events or the deletion, never hangs.
    assert.ok(res.status === 200 || res.status === 404, `status ${res.status}`);
    await res.body?.cancel();
    const gone = await fetch(`${url}?offset=-1`, { headers: auth });
    assert.equal(gone.status, 404);
    await gone.body?.cancel();

    await recreateSession(server, run.sessionId);
    const head = await fetch(url, { method: "HEAD", headers: auth });
    const tail = head.headers.get("stream-next-offset")!;
    assert.ok(Number(tail) >= 3, `offsets continue (${tail})`);
    await createRun(server, run.sessionId);
    const next = await fetch(`${url}?offset=${tail}`, { headers: auth });
    const events = await next.json();
    assert.equal(events.length, 1);
    assert.equal(events[0].eventId, Number(tail) + 1);
  });
});

Deno.test("regression: a recreated session's catch-up ends at the tail (no endless paging over never-stored ids)", async () => {
  await withRun("ds-hole", async (server, run) => {
    const deleted = await server.api(`/v1/sessions/${run.sessionId}`, { method: "DELETE" });
    assert.equal(deleted.status, 204);
    await recreateSession(server, run.sessionId);
    const head = await fetch(dsUrl(server, run.sessionId), { method: "HEAD", headers: auth });
    const tail = head.headers.get("stream-next-offset")!;
    assert.ok(Number(tail) >= 3, `offsets continue (${tail})`);

    // Nothing is stored up to the tail: one read says so, with the tail as its offset (before,
    // it answered offset 0 and not up to date, so a reader paging until up to date never ended).
    const raw = await fetch(`${dsUrl(server, run.sessionId)}?offset=-1`, { headers: auth });
    assert.deepEqual(await raw.json(), []);
    assert.equal(raw.headers.get("stream-next-offset"), tail);
    assert.equal(raw.headers.get("stream-up-to-date"), "true");

    // The official client's catch-up ends at the tail too.
    const caughtUp = await stream<Envelope>({
      url: dsUrl(server, run.sessionId),
      headers: auth,
      offset: "-1",
      live: false,
      signal: AbortSignal.timeout(10_000),
    });
    assert.deepEqual(await caughtUp.json(), []);
    assert.equal(caughtUp.offset, tail);

    // The next event continues after the tail and is read from the start.
    await createRun(server, run.sessionId);
    const next = await fetch(`${dsUrl(server, run.sessionId)}?offset=-1`, { headers: auth });
    const events: Envelope[] = await next.json();
    assert.deepEqual(events.map((e) => e.eventId), [Number(tail) + 1]);
  });
});
