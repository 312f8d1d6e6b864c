/**
 * The viewer WebSocket and the JSON events page (PROTOCOL.md 4, 6) over real sockets: replay
 * then live with each event exactly once in order, cursors and their precedence, filters,
 * credentials, deletion, slow viewers and paging with `nextAfter`.
 */
import assert from "node:assert/strict";
import {
  connectRun,
  createRun,
  type Envelope,
  eventIds,
  eventually,
  LONG_GRACE,
  pump,
  range,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { readUntilClose, stalledViewer, WsViewer } from "./helpers/viewer.ts";
import { startServer, tempKvPath } from "./helpers/server.ts";
import { keys } from "../src/store/keys.ts";

serverTest("viewers joining at random moments get every event once, in order", async (server) => {
  const run = await createRun(server, "s-random", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const total = 2000;
  const joinAt = new Set(Array.from({ length: 10 }, () => 1 + Math.floor(Math.random() * total)));
  const viewers: Promise<{ viewer: WsViewer; after: number }>[] = [];
  await pump(client, 1, total, {
    onSent(n) {
      if (!joinAt.has(n)) return;
      // Half replay from the start, half from a cursor somewhere behind the head.
      const after = Math.random() < 0.5 ? 0 : Math.floor(Math.random() * n);
      const query: Record<string, string> = after > 0 ? { after: String(after) } : {};
      viewers.push(
        WsViewer.open(server.wsUrl, run.sessionId, query).then((viewer) => ({
          viewer,
          after,
        })),
      );
    },
  });
  const stored = await storedEvents(server, run.sessionId);
  const last = stored.at(-1)!.eventId;
  assert.equal(last, total + 2);
  for (const { viewer, after } of await Promise.all(viewers)) {
    await viewer.until((events) => events.at(-1)?.eventId === last, `up to ${last}`);
    assert.deepEqual(eventIds(viewer.events), range(after + 1, last), `viewer after ${after}`);
    assert.deepEqual(viewer.events, stored.slice(after));
    await viewer.close();
  }
  await client.close();
});

serverTest("after wins over fromId; a bad cursor closes with 1008", async (server) => {
  const run = await createRun(server, "s-cursor", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  await pump(client, 1, 10);
  const cases: [Record<string, string>, number][] = [
    [{ after: "5", fromId: "2" }, 6],
    [{ fromId: "3" }, 4],
    [{}, 1],
    [{ after: "0" }, 1],
  ];
  for (const [query, first] of cases) {
    const viewer = await WsViewer.open(server.wsUrl, run.sessionId, query);
    await viewer.until((events) => events.at(-1)?.eventId === 12);
    assert.deepEqual(eventIds(viewer.events), range(first, 12), JSON.stringify(query));
    await viewer.close();
  }
  for (const after of ["-1", "abc", "1.5"]) {
    const viewer = await WsViewer.open(server.wsUrl, run.sessionId, { after });
    assert.equal((await viewer.closed).code, 1008, `after=${after}`);
    assert.equal(viewer.events.length, 0);
  }
  await client.close();
});

serverTest("executionIds and eventTypes filter replay and live events", async (server) => {
  const first = await createRun(server, "s-filter", LONG_GRACE);
  const firstClient = await connectRun(first, "w/1");
  const onlyFirst = await WsViewer.open(server.wsUrl, "s-filter", {
    executionIds: first.executionId,
  });
  const onlyAgent = await WsViewer.open(server.wsUrl, "s-filter", { eventTypes: "agent,complete" });
  await pump(firstClient, 1, 5, { type: "agent" });
  firstClient.send({ streamEventType: "complete", seq: 6, data: { exitCode: 0 } });
  await firstClient.closed;
  const second = await createRun(server, "s-filter", LONG_GRACE);
  const secondClient = await connectRun(second, "w/1");
  await pump(secondClient, 1, 3, { type: "agent" });
  await pump(secondClient, 4, 5, { type: "output" });

  const stored = await storedEvents(server, "s-filter");
  const want = (keep: (e: Envelope) => boolean) => stored.filter(keep);
  const firstOnly = want((e) => e.executionId === first.executionId);
  const agents = want((e) => e.streamEventType === "agent" || e.streamEventType === "complete");
  await onlyFirst.until((events) => events.length === firstOnly.length);
  await onlyAgent.until((events) => events.length === agents.length);
  // A replaying viewer with both filters sees the intersection.
  const both = await WsViewer.open(server.wsUrl, "s-filter", {
    executionIds: `${second.executionId},exc_unknown`,
    eventTypes: "output",
  });
  const secondOutputs = want((e) =>
    e.executionId === second.executionId && e.streamEventType === "output"
  );
  await both.until((events) => events.length === secondOutputs.length);
  // Nothing else arrives (a later event of another type proves the stream moved on).
  await pump(secondClient, 6, 6, { type: "agent" });
  await onlyAgent.until((events) => events.length === agents.length + 1);
  assert.deepEqual(onlyFirst.events, firstOnly);
  assert.deepEqual(onlyAgent.events.slice(0, -1), agents);
  assert.deepEqual(both.events, secondOutputs);
  // An empty filter value filters nothing, like an absent one.
  const unfiltered = await WsViewer.open(server.wsUrl, "s-filter", { eventTypes: "" });
  const all = await storedEvents(server, "s-filter");
  await unfiltered.until((events) => events.length === all.length);
  assert.deepEqual(unfiltered.events, all);
  for (const v of [onlyFirst, onlyAgent, both, unfiltered]) await v.close();
  await secondClient.close();
});

serverTest("credentials: api key, tickets, 4401/4403, unknown session 4404", async (server) => {
  const run = await createRun(server, "s-auth", LONG_GRACE);
  await createRun(server, "s-other");
  const ticketOf = async (sid: string) =>
    (await server.call<{ ticket: string }>(`/v1/sessions/${sid}/tickets`, {
      method: "POST",
      json: {},
    })).body.ticket;
  const ticket = await ticketOf("s-auth");
  const viewer = await WsViewer.open(server.wsUrl, "s-auth", {}, { ticket });
  await viewer.until((events) => events.length === 1);
  assert.equal(viewer.events[0].executionId, run.executionId);
  await viewer.close();

  const closeCode = async (sid: string, auth: Parameters<typeof WsViewer.open>[3]) => {
    const v = await WsViewer.open(server.wsUrl, sid, {}, auth);
    const { code } = await v.closed;
    assert.equal(v.events.length, 0);
    return code;
  };
  assert.equal(await closeCode("s-auth", { none: true }), 4401);
  assert.equal(await closeCode("s-auth", { apiKey: "wrong-key" }), 4401);
  assert.equal(await closeCode("s-auth", { ticket: "garbage" }), 4401);
  assert.equal(await closeCode("s-auth", { ticket: ticket.slice(0, -2) + "xx" }), 4401);
  assert.equal(await closeCode("s-auth", { ticket: await ticketOf("s-other") }), 4403);
  assert.equal(await closeCode("s-missing", {}), 4404);
  // A ticket of a deleted session is void; the api key then sees 4404.
  await server.api("/v1/sessions/s-auth", { method: "DELETE" });
  assert.equal(await closeCode("s-auth", { ticket }), 4401);
  assert.equal(await closeCode("s-auth", {}), 4404);
  // A non-upgrade request to the stream route is 426.
  const plain = await server.api("/v1/sessions/s-other/stream");
  assert.equal(plain.status, 426);
  await plain.body?.cancel();
});

serverTest("deleting a session closes its open viewers with 1000", async (server) => {
  const run = await createRun(server, "s-delete", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const viewer = await WsViewer.open(server.wsUrl, "s-delete");
  const other = await WsViewer.open(server.wsUrl, "s-delete", { eventTypes: "nothing" });
  await viewer.until((events) => events.length === 2);
  // Viewer messages are ignored.
  viewer.socket.send("hello?");
  viewer.socket.send(JSON.stringify({ type: "ack", seq: 1 }));
  assert.equal((await server.api("/v1/sessions/s-delete", { method: "DELETE" })).status, 204);
  assert.equal((await viewer.closed).code, 1000);
  assert.equal((await other.closed).code, 1000);
  // The wrapper learns its execution ended.
  assert.deepEqual(await client.closed, { code: 4000, reason: "execution failed" });
  assert.deepEqual(
    viewer.events.slice(2).map((e) => [e.streamEventType, e.data]),
    [
      ["error", { error: "Session deleted", fatal: true }],
      ["execution_status", {
        status: "failed",
        previousStatus: "running",
        active: false,
        error: "Session deleted",
      }],
    ],
  );
});

serverTest("a viewer that does not read is closed with 1013; others carry on", async (server) => {
  const run = await createRun(server, "s-slow", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  const reader = await WsViewer.open(server.wsUrl, "s-slow");
  const url = new URL(server.url);
  const stalled = await stalledViewer(
    { hostname: url.hostname, port: Number(url.port) },
    "/v1/sessions/s-slow/stream",
  );
  // ~16 MB through the stream: far more than socket buffers plus the 64 KiB viewer limit.
  const pad = "x".repeat(40_000);
  const total = 400;
  for (let n = 1; n <= total; n++) {
    if (n - client.acked > 50) await client.ackOf(n - 50);
    client.send({ streamEventType: "output", seq: n, data: { n, pad } });
  }
  await client.ackOf(total);
  // The service gives up on the stalled viewer (its buffer does not drain) and drops it…
  await eventually(
    async () => {
      const metrics = await (await server.api("/metrics")).text();
      return /^tether_viewer_sockets 1$/m.test(metrics);
    },
    "the stalled viewer dropped",
    10_000,
  );
  // …with 1013, behind what was queued for it.
  assert.equal(await readUntilClose(stalled), 1013);
  stalled.close();
  await reader.until((events) => events.length === total + 2, "all events", 20_000);
  assert.equal(reader.socket.readyState, WebSocket.OPEN);
  await reader.close();
  await client.close();
}, { config: { viewerBufferBytes: 64 * 1024 } });

serverTest("GET events pages with limits, filters and nextAfter", async (server) => {
  const run = await createRun(server, "s-page", LONG_GRACE);
  const client = await connectRun(run, "w/1");
  for (let n = 1; n <= 30; n++) {
    client.send({ streamEventType: n % 3 === 0 ? "agent" : "output", seq: n, data: { n } });
  }
  await client.ackOf(30);
  type Page = { events: Envelope[]; lastEventId: number; nextAfter: number };
  const page = async (query: string) => {
    const res = await server.call<Page>(`/v1/sessions/s-page/events?${query}`);
    assert.equal(res.status, 200, query);
    return res.body;
  };
  // Unfiltered: nextAfter is the last eventId returned, until the end.
  const first = await page("limit=10");
  assert.deepEqual(eventIds(first.events), range(1, 10));
  assert.equal(first.lastEventId, 32);
  assert.equal(first.nextAfter, 10);
  const all: Envelope[] = [...first.events];
  let cursor = first.nextAfter;
  while (cursor < first.lastEventId) {
    const next = await page(`after=${cursor}&limit=7`);
    all.push(...next.events);
    cursor = next.nextAfter;
  }
  assert.deepEqual(eventIds(all), range(1, 32));
  assert.deepEqual(all, await storedEvents(server, "s-page"));
  // Default limit and after; the default page holds everything here.
  const whole = await page("");
  assert.deepEqual(eventIds(whole.events), range(1, 32));
  assert.equal(whole.nextAfter, 32);

  // Filtered: only matches, and the cursor moves past what was skipped.
  const agents = await page("eventTypes=agent&limit=4");
  assert.deepEqual(agents.events.map((e) => (e.data as { n: number }).n), [3, 6, 9, 12]);
  assert.equal(agents.nextAfter, agents.events.at(-1)!.eventId);
  const rest = await page(`eventTypes=agent&after=${agents.nextAfter}`);
  assert.deepEqual(
    rest.events.map((e) => (e.data as { n: number }).n),
    range(5, 10).map((i) => i * 3),
  );
  assert.ok(rest.nextAfter >= rest.lastEventId);
  const statuses = await page(`executionIds=${run.executionId}&eventTypes=execution_status`);
  assert.deepEqual(eventIds(statuses.events), [1, 2]);
  const none = await page("executionIds=exc_unknown");
  assert.deepEqual(none.events, []);
  assert.ok(none.nextAfter >= none.lastEventId);
  // Past the head: nothing, and complete.
  const beyond = await page("after=100");
  assert.deepEqual(beyond.events, []);
  assert.ok(beyond.nextAfter >= beyond.lastEventId);

  for (const bad of ["after=-1", "after=x", "limit=0", "limit=1001", "limit=abc"]) {
    const res = await server.call(`/v1/sessions/s-page/events?${bad}`);
    assert.equal(res.status, 400, bad);
    assert.equal(res.body.error, "INVALID_REQUEST");
  }
  assert.equal((await server.call("/v1/sessions/s-nope/events")).status, 404);
  await client.close();
});

Deno.test({
  name:
    "a session deleted on another instance: its viewers still get every stored event, then 1000",
  async fn() {
    const kv = await tempKvPath();
    const a = await startServer({ kvPath: kv.path });
    const b = await startServer({ kvPath: kv.path });
    try {
      for (let round = 0; round < 3; round++) {
        const sid = `del-remote-${round}`;
        const run = await createRun(b, sid, LONG_GRACE);
        const client = await connectRun(run, "w/1");
        const viewer = await WsViewer.open(a.wsUrl, sid);
        // Frames stream through B while B deletes the session mid-stream.
        const streaming = pump(client, 1, 60, { window: 10 }).catch(() => {});
        await eventually(async () => (await storedEvents(b, sid)).length >= 20 + round * 10);
        const deleted = await b.api(`/v1/sessions/${sid}`, { method: "DELETE" });
        assert.equal(deleted.status, 204);
        await streaming;
        assert.equal((await viewer.closed).code, 1000);
        // The head outlives the deletion: every eventId up to it, each once, in order.
        const head = await a.kv.get<{ lastEventId: number }>(keys.head(sid));
        assert.deepEqual(
          eventIds(viewer.events),
          range(1, head.value!.lastEventId),
          `round ${round}`,
        );
        const last = viewer.events.at(-1);
        assert.equal(last?.streamEventType, "execution_status");
        assert.equal((last?.data as { status: string }).status, "failed");
        await client.close();
      }
    } finally {
      await a.close();
      await b.close();
      await kv.cleanup();
    }
  },
});

/** An in-memory KV that counts the listings of a session's event log (each `readEvents` makes two). */
async function countingEventReads(
  sessionId: string,
): Promise<{ kv: Deno.Kv; lists: () => number }> {
  const kv = await Deno.openKv(":memory:");
  const prefix = JSON.stringify(keys.events(sessionId)).slice(0, -1);
  let lists = 0;
  const list = (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
    const from = "prefix" in selector ? selector.prefix : selector.start;
    if (JSON.stringify(from).startsWith(prefix)) lists++;
    return kv.list(selector, options);
  };
  const proxy = new Proxy(kv, {
    get(target, prop) {
      if (prop === "list") return list;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv: proxy, lists: () => lists };
}

Deno.test("many viewers opened at once on a busy session are fed from memory, not from KV", async () => {
  const { kv, lists } = await countingEventReads("s-fanout");
  // A read budget far smaller than what the viewers are sent at once: pushed events wait for
  // it instead of being read back from KV.
  const server = await startServer({ kv, config: { readBudgetBytes: 64 * 1024 } });
  try {
    const run = await createRun(server, "s-fanout", LONG_GRACE);
    const viewers = await Promise.all(
      Array.from({ length: 20 }, () => WsViewer.open(server.wsUrl, run.sessionId)),
    );
    const client = await connectRun(run, "w/1");
    const total = 600;
    await pump(client, 1, total);
    const last = (events: Envelope[]) => (events.at(-1)?.data as { n?: number } | null)?.n;
    for (const viewer of viewers) await viewer.until((events) => last(events) === total);
    // One first read per viewer (each two listings), and none for the live events.
    const listings = lists();
    assert.ok(listings <= 2 * viewers.length, `${listings} listings of the log`);
    const stored = await storedEvents(server, run.sessionId);
    for (const viewer of viewers) assert.deepEqual(viewer.events, stored);
    await Promise.all(viewers.map((v) => v.close()));
    await client.close();
  } finally {
    await server.close();
  }
});
