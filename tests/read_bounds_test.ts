/**
 * Reads bounded by bytes as well as counts (PROTOCOL.md 10, issue 12) over real sockets: a
 * JSON page and a Durable Streams catch-up end at about 4 MiB (at least one event) and their
 * cursors continue; viewers whose buffer is smaller than one event still get every event;
 * stalled readers hold at most the instance's read budget, and are dropped (1013) when a
 * reader that does read needs it.
 */
import assert from "node:assert/strict";
import {
  connectRun,
  createRun,
  type Envelope,
  eventIds,
  eventually,
  LONG_GRACE,
  range,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import type { IngestClient } from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";
import { readUntilClose, SseViewer, stalledViewer, WsViewer } from "./helpers/viewer.ts";

const MiB = 1024 * 1024;
const BIG = 480_000;

/** Stores `count` events of about 480 KB (eventIds 3 … count + 2, after the two status events). */
async function storeBig(server: TestServer, sid: string, count: number): Promise<IngestClient> {
  const run = await createRun(server, sid, LONG_GRACE);
  const client = await connectRun(run);
  for (let n = 1; n <= count; n++) {
    if (n - client.acked > 4) await client.ackOf(n - 4, 20_000);
    client.send({
      streamEventType: "output",
      seq: n,
      data: { n, pad: String(n % 10).repeat(BIG) },
    });
  }
  await client.ackOf(count, 30_000);
  return client;
}

const checkWhole = (events: Envelope[]) => {
  for (const e of events) {
    const data = e.data as { n?: number; pad?: string };
    if (data.pad !== undefined) assert.equal(data.pad, String(data.n! % 10).repeat(BIG));
  }
};

serverTest("a JSON page ends at about 4 MiB and nextAfter continues", async (server) => {
  const client = await storeBig(server, "big-page", 12);
  type Page = { events: Envelope[]; lastEventId: number; nextAfter: number };
  const res = await server.api("/v1/sessions/big-page/events?limit=1000");
  const text = await res.text();
  const first = JSON.parse(text) as Page;
  assert.ok(first.events.length >= 1 && first.events.length < 14, `${first.events.length}`);
  assert.ok(text.length <= 4 * MiB + BIG + 1000, `${text.length} bytes`);
  assert.equal(first.nextAfter, first.events.at(-1)!.eventId);
  assert.equal(first.lastEventId, 14);
  const all = [...first.events];
  let after = first.nextAfter;
  while (after < first.lastEventId) {
    const page =
      (await server.call<Page>(`/v1/sessions/big-page/events?after=${after}&limit=1000`)).body;
    assert.ok(page.events.length >= 1);
    all.push(...page.events);
    after = page.nextAfter;
  }
  assert.deepEqual(eventIds(all), range(1, 14));
  checkWhole(all);
  // A filter that matches only the big events still ends the page early.
  const filtered =
    (await server.call<Page>("/v1/sessions/big-page/events?eventTypes=output&limit=1000")).body;
  assert.ok(filtered.events.length < 12);
  assert.equal(filtered.nextAfter, filtered.events.at(-1)!.eventId);
  await client.close();
});

serverTest(
  "a Durable Streams catch-up ends at about 4 MiB and the next offset continues",
  async (server) => {
    const client = await storeBig(server, "big-ds", 12);
    const url = `${server.url}/v1/sessions/big-ds/ds`;
    const headers = { authorization: "Bearer test-key" };
    const first = await fetch(`${url}?offset=-1`, { headers });
    const batch = await first.json() as Envelope[];
    assert.ok(batch.length >= 1 && batch.length < 14, `${batch.length}`);
    assert.equal(first.headers.get("stream-up-to-date"), null);
    const all = [...batch];
    let offset = first.headers.get("stream-next-offset")!;
    assert.equal(Number(offset), batch.at(-1)!.eventId);
    for (;;) {
      const res = await fetch(`${url}?offset=${offset}`, { headers });
      all.push(...await res.json() as Envelope[]);
      offset = res.headers.get("stream-next-offset")!;
      if (res.headers.get("stream-up-to-date") === "true") break;
    }
    assert.deepEqual(eventIds(all), range(1, 14));
    checkWhole(all);
    await client.close();
  },
);

serverTest("viewers with a buffer smaller than one event still get every event", async (server) => {
  const client = await storeBig(server, "big-view", 6);
  const ws = await WsViewer.open(server.wsUrl, "big-view");
  const sse = await SseViewer.open(server.url, "big-view");
  for (const viewer of [ws, sse]) {
    await viewer.until((events) => events.length === 8, "8 events", 20_000);
    assert.deepEqual(eventIds(viewer.events), range(1, 8));
    checkWhole(viewer.events);
  }
  await Promise.all([ws.close(), sse.close()]);
  await client.close();
}, { config: { viewerBufferBytes: 64 * 1024 } });

serverTest(
  "stalled viewers hold at most the read budget and give way to a viewer that reads",
  async (server) => {
    const client = await storeBig(server, "big-budget", 12);
    const url = new URL(server.url);
    const host = { hostname: url.hostname, port: Number(url.port) };
    const stalled = await Promise.all(
      Array.from({ length: 4 }, () => stalledViewer(host, "/v1/sessions/big-budget/stream")),
    );
    const budget = server.service.rt.readBudget;
    // The stalled viewers fill what they can; together never more than the budget and one read.
    let peak = 0;
    const sampler = setInterval(() => peak = Math.max(peak, budget.used), 2);
    await new Promise((r) => setTimeout(r, 500));
    // A viewer that reads gets everything: the stalled ones are dropped when it needs room.
    const reader = await WsViewer.open(server.wsUrl, "big-budget");
    await reader.until((events) => events.length === 14, "14 events", 30_000);
    clearInterval(sampler);
    assert.deepEqual(reader.events, await storedEvents(server, "big-budget"));
    assert.ok(peak <= budget.capacity + 2 * MiB + BIG, `peak ${peak} of ${budget.capacity}`);
    const closes = await Promise.all(stalled.map((conn) => readUntilClose(conn)));
    assert.ok(closes.some((code) => code === 1013), JSON.stringify(closes));
    for (const conn of stalled) conn.close();
    await reader.close();
    await eventually(() => budget.used === 0, "every lease given back", 5000);
    await client.close();
  },
  { config: { readBudgetBytes: 2 * MiB, viewerBufferBytes: 2 * MiB } },
);

serverTest("HEAD on the events route reads nothing and holds no budget", async (server) => {
  const client = await storeBig(server, "big-head", 3);
  for (const accept of ["application/json", "text/event-stream"]) {
    const res = await server.api("/v1/sessions/big-head/events", {
      method: "HEAD",
      headers: { accept },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), accept);
    await res.body?.cancel();
  }
  assert.equal(server.service.rt.readBudget.used, 0);
  assert.equal(server.service.rt.hub.viewerCount, 0);
  await client.close();
});
