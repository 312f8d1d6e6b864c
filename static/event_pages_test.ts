import assert from "node:assert/strict";
import { type EventsPage, readOlder, readRange, readTail } from "./event_pages.js";
import { startServer, type TestServer } from "../tests/helpers/server.ts";
import {
  connectRun,
  createRun,
  type Envelope,
  eventually,
  pump,
  storedEvents,
} from "../tests/helpers/ingest_client.ts";

/** A reader of one session's events through the real API, counting its requests. */
function reader(server: TestServer, sessionId: string) {
  const counter = { requests: 0 };
  const get = async (query: string): Promise<EventsPage> => {
    counter.requests++;
    const { status, body } = await server.call<EventsPage>(
      `/v1/sessions/${sessionId}/events?${query}`,
    );
    assert.equal(status, 200, query);
    return body;
  };
  return { get, counter };
}

async function fill(server: TestServer, sessionId: string, frames: number): Promise<void> {
  const run = await createRun(server, sessionId);
  const client = await connectRun(run);
  await pump(client, 1, frames);
  await client.close();
}

async function lastEventId(server: TestServer, sessionId: string): Promise<number> {
  return (await server.call<{ lastEventId: number }>(`/v1/sessions/${sessionId}`)).body
    .lastEventId;
}

/** Reads the whole log backwards, page by page, as the viewer page does when scrolled up. */
async function readBackwards(
  get: (query: string) => Promise<EventsPage>,
  newest: number,
  count: number,
): Promise<Envelope[]> {
  const tail = await readTail(get, newest, count);
  const pages = [tail.events];
  let { olderThan, startReached } = tail;
  while (!startReached) {
    const older = await readOlder(get, olderThan, count);
    pages.unshift(older.events);
    ({ olderThan, startReached } = older);
  }
  return pages.flat();
}

Deno.test("event pages: the tail, then older pages back to the start, each event once", async () => {
  const server = await startServer();
  try {
    await fill(server, "pages", 2345);
    const { get } = reader(server, "pages");
    const newest = await lastEventId(server, "pages");
    const tail = await readTail(get, newest, 500);
    assert.deepEqual(tail.events.map((e) => e.eventId), range(newest - 499, newest));
    assert.equal(tail.startReached, false);
    const all = await readBackwards(get, newest, 500);
    assert.deepEqual(all, await storedEvents(server, "pages"));
  } finally {
    await server.close();
  }
});

Deno.test("event pages: eventIds with a gap (a session deleted and created again)", async () => {
  const server = await startServer();
  try {
    await fill(server, "gap", 3000);
    assert.equal((await server.api("/v1/sessions/gap", { method: "DELETE" })).status, 204);
    await eventually(
      async () => {
        const res = await server.api("/v1/sessions", {
          method: "POST",
          json: { sessionId: "gap" },
        });
        await res.body?.cancel();
        return res.status === 201;
      },
      "the purge",
      20_000,
    );
    await fill(server, "gap", 40);
    const newest = await lastEventId(server, "gap");
    const { get, counter } = reader(server, "gap");
    const all = await readBackwards(get, newest, 500);
    const stored = await storedEvents(server, "gap");
    assert.ok(stored[0].eventId > 3000, "the ids continue after the gap");
    assert.deepEqual(all, stored);
    assert.ok(counter.requests <= 6, `the gap is crossed in a few reads: ${counter.requests}`);
  } finally {
    await server.close();
  }
});

Deno.test("event pages: a range whose page ends early at the byte limit is read whole", async () => {
  const server = await startServer();
  try {
    const run = await createRun(server, "big");
    const client = await connectRun(run);
    const text = "x".repeat(200_000);
    for (let seq = 1; seq <= 40; seq++) {
      client.send({ streamEventType: "output", seq, data: { stream: "stdout", text } });
      if (seq % 10 === 0) await client.ackOf(seq, 20_000);
    }
    await client.close();
    const newest = await lastEventId(server, "big");
    const { get, counter } = reader(server, "big");
    const events = await readRange(get, 0, newest);
    assert.deepEqual(events.map((e) => e.eventId), range(1, newest));
    assert.ok(counter.requests > 1, "8 MB does not fit one page");
  } finally {
    await server.close();
  }
});

Deno.test("event pages: an empty session and a range past the end read nothing", async () => {
  const server = await startServer();
  try {
    await server.call("/v1/sessions", { method: "POST", json: { sessionId: "empty" } });
    const { get, counter } = reader(server, "empty");
    assert.deepEqual(await readTail(get, 0, 500), {
      events: [],
      olderThan: 1,
      startReached: true,
    });
    assert.deepEqual(await readOlder(get, 1, 500), {
      events: [],
      olderThan: 1,
      startReached: true,
    });
    assert.equal(counter.requests, 0, "nothing to ask for");
  } finally {
    await server.close();
  }
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
