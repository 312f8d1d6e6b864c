import assert from "node:assert/strict";
import { followSse, parseSse, type SseEvent } from "./sse.ts";
import { startSseServer } from "./test_util.ts";

async function parse(...chunks: string[]): Promise<SseEvent[]> {
  const body = ReadableStream.from(chunks.map((c) => new TextEncoder().encode(c)));
  return await Array.fromAsync(parseSse(body));
}

Deno.test("parseSse: event, multi-line data, id, comments, the default event", async () => {
  assert.deepEqual(
    await parse(
      ": hello\n",
      "event: a\ndata: 1\ndata:2\nid: 7\n\n",
      'data: {"type":"x"}\n\n',
      "retry: 100\nunknown: y\n\n", // no data: not dispatched
    ),
    [
      { event: "a", data: "1\n2", id: "7" },
      { event: undefined, data: '{"type":"x"}', id: "7" },
    ],
  );
});

Deno.test("parseSse: CRLF, lone CR and CRLF split across chunks", async () => {
  assert.deepEqual(await parse("data: a\r", "\n\r\ndata: b\r\r", "data: c\n", "\n"), [
    { event: undefined, data: "a", id: undefined },
    { event: undefined, data: "b", id: undefined },
    { event: undefined, data: "c", id: undefined },
  ]);
});

Deno.test("parseSse: an unfinished event at the end of the stream is dropped", async () => {
  assert.deepEqual(await parse("data: done\n\ndata: half"), [
    { event: undefined, data: "done", id: undefined },
  ]);
});

Deno.test("followSse re-opens a failing or ending stream with backoff and Last-Event-ID", async () => {
  await using server = startSseServer(["id: 1\ndata: a\n\n", "data: b\n\n…"]);
  const events: string[] = [];
  const drops: string[] = [];
  const ac = new AbortController();
  const reading = followSse(server.url, {
    signal: ac.signal,
    reconnectBaseMs: 5,
    onDrop: (message) => drops.push(message),
    onEvent: (event) => {
      events.push(event.data);
      if (event.data === "b") ac.abort();
    },
  });
  await reading;
  assert.deepEqual(events, ["a", "b"]);
  assert.deepEqual(server.lastEventIds, [null, "1"]);
  assert.deepEqual(drops, ["stream ended"]);
});

Deno.test("followSse survives a refused connection and an HTTP error until aborted", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const drops: string[] = [];
  const ac = new AbortController();
  const reading = followSse(`http://127.0.0.1:${port}/event`, {
    signal: ac.signal,
    reconnectBaseMs: 5,
    reconnectMaxMs: 5,
    onDrop: (message) => {
      drops.push(message);
      if (drops.length === 3) ac.abort();
    },
    onEvent: () => {},
  });
  await reading;
  assert.equal(drops.length, 3);

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("no", { status: 500 }),
  );
  const ac2 = new AbortController();
  const seen: string[] = [];
  await followSse(`http://127.0.0.1:${server.addr.port}/`, {
    signal: ac2.signal,
    reconnectBaseMs: 5,
    onDrop: (message) => (seen.push(message), ac2.abort()),
    onEvent: () => {},
  });
  await server.shutdown();
  assert.deepEqual(seen, ["HTTP 500"]);
});
