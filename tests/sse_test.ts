/**
 * Server-Sent Events viewers (PROTOCOL.md 6): `id:`/`data:` framing, keep-alive comments,
 * `Last-Event-ID` over `after` over `fromId`, resume without gaps or duplicates while events
 * stream in, filters, credentials and errors.
 */
import assert from "node:assert/strict";
import {
  connectRun,
  createRun,
  type Envelope,
  eventIds,
  LONG_GRACE,
  pump,
  range,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { SseRefused, SseViewer } from "./helpers/viewer.ts";

async function refusal(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof SseRefused) return err.status;
    throw err;
  }
  throw new Error("the SSE request was accepted");
}

serverTest("SSE sends id and data lines only, then live events, and keep-alives", async (
  server,
) => {
  const run = await createRun(server, "sse-format", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const viewer = await SseViewer.open(server.url, "sse-format");
  assert.match(viewer.response.headers.get("content-type") ?? "", /^text\/event-stream/);
  // A type named `error` is an ordinary event, not a broken connection.
  client.send({ streamEventType: "error", seq: 1, data: { error: "soft" } });
  await pump(client, 2, 5);
  await viewer.until((events) => events.length === 7);
  await viewer.until(() => viewer.comments.includes(" keep-alive"), "keep-alive");
  assert.deepEqual([...viewer.fields].sort(), ["data", "id"]);
  assert.deepEqual(viewer.ids, range(1, 7).map(String));
  assert.deepEqual(viewer.events, await storedEvents(server, "sse-format"));
  assert.equal(viewer.events[2].streamEventType, "error");
  await viewer.close();
  await client.close();
}, { config: { sseKeepAliveMs: 50 } });

serverTest("Last-Event-ID wins over after, which wins over fromId", async (server) => {
  const run = await createRun(server, "sse-cursor", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  await pump(client, 1, 10);
  const cases: [Record<string, string>, string | undefined, number][] = [
    [{ after: "4", fromId: "2" }, "7", 8],
    [{ after: "4", fromId: "2" }, undefined, 5],
    [{ fromId: "2" }, undefined, 3],
    [{}, undefined, 1],
    [{ fromId: "9" }, "3", 4],
    [{ after: "5" }, "", 6], // an empty Last-Event-ID is none
  ];
  for (const [query, lastEventId, first] of cases) {
    const viewer = await SseViewer.open(server.url, "sse-cursor", query, { lastEventId });
    await viewer.until((events) => events.at(-1)?.eventId === 12);
    assert.deepEqual(
      eventIds(viewer.events),
      range(first, 12),
      JSON.stringify([query, lastEventId]),
    );
    await viewer.close();
  }
  await client.close();
});

serverTest("SSE resumed with Last-Event-ID at random moments misses and repeats nothing", async (
  server,
) => {
  const run = await createRun(server, "sse-resume", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const total = 2000;
  const received: Envelope[] = [];
  let viewer = await SseViewer.open(server.url, "sse-resume");
  let reconnects = 0;
  // A small window keeps the stream a trickle, so the drops land mid-stream (replay is fast).
  const pumping = pump(client, 1, total, { window: 20 });
  // Drop and resume the stream every few dozen events, wherever it happens to be.
  while (received.length + viewer.events.length < total + 2) {
    const target = viewer.events.length + 1 + Math.floor(Math.random() * 60);
    await viewer.until((events) =>
      events.length >= target || received.length + events.length >= total + 2
    );
    await viewer.close();
    received.push(...viewer.events);
    if (received.length >= total + 2) break;
    viewer = await SseViewer.open(server.url, "sse-resume", { after: "1" }, {
      lastEventId: String(received.at(-1)!.eventId),
    });
    reconnects++;
  }
  await pumping;
  await viewer.close();
  assert.ok(reconnects >= 10, `${reconnects} reconnects`);
  assert.deepEqual(eventIds(received), range(1, total + 2));
  assert.deepEqual(received, await storedEvents(server, "sse-resume"));
  await client.close();
});

serverTest("SSE filters by executionIds and eventTypes", async (server) => {
  const run = await createRun(server, "sse-filter", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const viewer = await SseViewer.open(server.url, "sse-filter", {
    eventTypes: "agent",
    executionIds: run.executionId,
  });
  for (let n = 1; n <= 10; n++) {
    client.send({ streamEventType: n % 2 ? "agent" : "output", seq: n, data: { n } });
  }
  await client.ackOf(10);
  await viewer.until((events) => events.length === 5);
  assert.deepEqual(viewer.events.map((e) => (e.data as { n: number }).n), [1, 3, 5, 7, 9]);
  const none = await SseViewer.open(server.url, "sse-filter", { executionIds: "exc_other" });
  const all = await SseViewer.open(server.url, "sse-filter");
  await all.until((events) => events.length === 12);
  assert.equal(none.events.length, 0);
  for (const v of [viewer, none, all]) await v.close();
  await client.close();
});

serverTest("SSE errors: bad cursors 400, unknown session 404, credentials 401/403", async (
  server,
) => {
  await createRun(server, "sse-err");
  await createRun(server, "sse-other");
  for (const after of ["-1", "x", "2.5"]) {
    assert.equal(await refusal(SseViewer.open(server.url, "sse-err", { after })), 400, after);
  }
  assert.equal(
    await refusal(SseViewer.open(server.url, "sse-err", {}, { lastEventId: "abc" })),
    400,
  );
  assert.equal(await refusal(SseViewer.open(server.url, "sse-missing")), 404);
  assert.equal(
    await refusal(SseViewer.open(server.url, "sse-err", {}, { auth: { none: true } })),
    401,
  );
  const ticketOf = async (sid: string) =>
    (await server.call<{ ticket: string }>(`/v1/sessions/${sid}/tickets`, {
      method: "POST",
      json: {},
    })).body.ticket;
  const ticket = await ticketOf("sse-err");
  const byTicket = await SseViewer.open(server.url, "sse-err", {}, { auth: { ticket } });
  await byTicket.until((events) => events.length === 1);
  await byTicket.close();
  const foreign = { auth: { ticket: await ticketOf("sse-other") } };
  assert.equal(await refusal(SseViewer.open(server.url, "sse-err", {}, foreign)), 403);
  assert.equal(
    await refusal(SseViewer.open(server.url, "sse-err", {}, { auth: { ticket: "bogus" } })),
    401,
  );
  // Deletion ends an open stream; afterwards the session is 404.
  const open = await SseViewer.open(server.url, "sse-err");
  await open.until((events) => events.length === 1);
  await server.api("/v1/sessions/sse-err", { method: "DELETE" });
  await open.done;
  assert.deepEqual(open.events.map((e) => e.streamEventType), [
    "execution_status",
    "error",
    "execution_status",
  ]);
  assert.equal(await refusal(SseViewer.open(server.url, "sse-err")), 404);
});
