import assert from "node:assert/strict";
import {
  appendEvents,
  CHUNK_BYTES,
  envelopeTail,
  type NewEvent,
  PAGE_CHARS,
  readEvents,
  readHead,
  StoredBytes,
  storedSize,
} from "./events.ts";
import { keys } from "./keys.ts";
import { transact } from "./transact.ts";

const event = (streamEventType: string, data: unknown, timestamp = "2026-01-01T00:00:00.000Z") =>
  ({ executionId: "exc_1", streamEventType, timestamp, data }) satisfies NewEvent;

async function withKv(fn: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(kv);
  } finally {
    kv.close();
  }
}

const append = (kv: Deno.Kv, sid: string, events: NewEvent[], now = 1) =>
  transact(kv, (tx) => appendEvents(tx, sid, events, now));

Deno.test("appendEvents numbers events 1, 2, 3… per session, in order", async () => {
  await withKv(async (kv) => {
    const first = await append(kv, "s", [event("a", 1), event("b", 2)]);
    const second = await append(kv, "s", [event("c", 3)]);
    const other = await append(kv, "t", [event("x", 0)]);
    assert.deepEqual(first.map((e) => e.envelope.eventId), [1, 2]);
    assert.deepEqual(second.map((e) => e.envelope.eventId), [3]);
    assert.deepEqual(other.map((e) => e.envelope.eventId), [1]);
    const read = await readEvents(kv, "s", { after: 0, limit: 10 });
    assert.deepEqual(read.map((e) => e.envelope.streamEventType), ["a", "b", "c"]);
    assert.deepEqual(read.map((e) => e.envelope.data), [1, 2, 3]);
    const head = await transact(kv, (tx) => readHead(tx, "s"));
    assert.equal(head.lastEventId, 3);
  });
});

Deno.test("stored JSON has the envelope's key order and reads back as stored", async () => {
  await withKv(async (kv) => {
    const [stored] = await append(kv, "s", [event("agent", { z: 1, a: [true, null] })]);
    assert.equal(
      stored.json,
      '{"eventId":1,"executionId":"exc_1","sessionId":"s","streamEventType":"agent",' +
        '"timestamp":"2026-01-01T00:00:00.000Z","data":{"z":1,"a":[true,null]}}',
    );
    const [read] = await readEvents(kv, "s", { after: 0, limit: 1 });
    assert.equal(read.json, stored.json);
    assert.deepEqual(read.envelope, stored.envelope);
  });
});

Deno.test("absent data is stored as null", async () => {
  await withKv(async (kv) => {
    const [stored] = await append(kv, "s", [event("ping", undefined)]);
    assert.equal(stored.envelope.data, null);
  });
});

Deno.test("a 200 KiB event is split into chunks and read back byte for byte", async () => {
  await withKv(async (kv) => {
    // Multi-byte characters make sure chunk borders inside a code point are harmless.
    const text = "é€😀x".repeat(200 * 1024 / 10);
    const [, stored] = await append(kv, "s", [event("before", 1), event("big", { text })]);
    await append(kv, "s", [event("after", 2)]);
    assert.ok(new TextEncoder().encode(stored.json).length > 3 * CHUNK_BYTES);
    const marker = (await kv.get(keys.event("s", 2))).value;
    assert.equal(typeof marker, "number");
    const chunks = await Array.fromAsync(kv.list({ prefix: keys.eventChunks("s", 2) }));
    assert.equal(chunks.length, marker);
    const read = await readEvents(kv, "s", { after: 0, limit: 10 });
    assert.deepEqual(read.map((e) => e.envelope.eventId), [1, 2, 3]);
    assert.ok(read[1].json === stored.json, "the stored JSON reads back unchanged");
    assert.ok((read[1].envelope.data as { text: string }).text === text);
  });
});

Deno.test("an event exactly at the chunk size stays one value; one byte more is chunked", async () => {
  await withKv(async (kv) => {
    const overhead = new TextEncoder().encode(
      (await append(kv, "t", [event("t", "")]))[0].json, // same id length as "s"
    ).length;
    const fits = "a".repeat(CHUNK_BYTES - overhead);
    await append(kv, "s", [event("t", fits), event("t", fits + "b")]);
    const [one, two] = await kv.getMany([keys.event("s", 1), keys.event("s", 2)]);
    assert.ok(one.value instanceof Uint8Array && one.value.length === CHUNK_BYTES);
    assert.ok(two.value === 2, "the second event is stored as two chunks");
    const read = await readEvents(kv, "s", { after: 0, limit: 10 });
    assert.ok(read[0].envelope.data === fits && read[1].envelope.data === fits + "b");
  });
});

Deno.test("a large event reads back as its stored bytes; its text is the same JSON", async () => {
  await withKv(async (kv) => {
    const encoder = new TextEncoder();
    // One stored as a single value, one chunked; multi-byte characters in both.
    const single = event("one-value", { text: "é".repeat(PAGE_CHARS) });
    const chunked = event("chunked", { text: "€😀".repeat(CHUNK_BYTES) });
    const stored = await append(kv, "s", [event("small", 1), single, chunked]);
    const read = await readEvents(kv, "s", { after: 0, limit: 10 });
    assert.equal(read[0].body, read[0].json, "a page's event is written as its text");
    assert.equal(read[0].size, read[0].json.length);
    for (const i of [1, 2]) {
      const { body, size, envelope } = read[i];
      assert.ok(body instanceof Uint8Array, `event ${i + 1} is written as bytes`);
      assert.deepEqual(body, encoder.encode(stored[i].json));
      assert.equal(size, body.length);
      assert.equal(envelope.eventId, i + 1);
      assert.equal(envelope.executionId, "exc_1");
      assert.equal(envelope.sessionId, "s");
      assert.equal(envelope.streamEventType, i === 1 ? "one-value" : "chunked");
      assert.equal(envelope.timestamp, "2026-01-01T00:00:00.000Z");
      assert.ok(read[i].json === stored[i].json);
      assert.deepEqual(envelope.data, stored[i].envelope.data);
    }
    // A byte bound counts a large event's bytes.
    const bounded = await readEvents(kv, "s", { after: 1, limit: 10, maxBytes: 1 });
    assert.deepEqual(bounded.map((e) => e.envelope.eventId), [2]);
  });
});

Deno.test("an event read back gives its eventId at once; JSON in another shape is parsed whole", async () => {
  await withKv(async (kv) => {
    await append(kv, "s", [event("a", { n: 1 }), event("b", { n: 2 })]);
    // A page whose JSON does not start as this module writes it: still read correctly.
    const odd = '{"sessionId":"s","eventId":3,"executionId":"exc_1","streamEventType":"c",' +
      '"timestamp":"2026-01-01T00:00:00.000Z","data":{"n":3}}';
    await kv.set(keys.event("s", 3), odd);
    const read = await readEvents(kv, "s", { after: 0, limit: 10 });
    assert.deepEqual(read.map((e) => e.eventId), [1, 2, 3]);
    assert.deepEqual(read.map((e) => e.envelope.eventId), [1, 2, 3]);
    assert.deepEqual(read.map((e) => e.envelope.streamEventType), ["a", "b", "c"]);
    assert.deepEqual(read.map((e) => e.envelope.data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.equal(read[2].json, odd);
  });
});

Deno.test("readEvents honours after, limit and upTo", async () => {
  await withKv(async (kv) => {
    await append(kv, "s", Array.from({ length: 10 }, (_, i) => event("t", i)));
    const ids = async (after: number, limit: number, upTo?: number) =>
      (await readEvents(kv, "s", { after, limit, upTo })).map((e) => e.envelope.eventId);
    assert.deepEqual(await ids(0, 3), [1, 2, 3]);
    assert.deepEqual(await ids(7, 100), [8, 9, 10]);
    assert.deepEqual(await ids(10, 100), []);
    assert.deepEqual(await ids(2, 100, 4), [3, 4]);
    assert.deepEqual(await ids(4, 100, 4), []);
  });
});

Deno.test("a chunked event with a missing chunk is reported, never returned cut", async () => {
  await withKv(async (kv) => {
    await append(kv, "s", [event("big", "x".repeat(3 * CHUNK_BYTES))]);
    await kv.delete(keys.eventChunk("s", 1, 1));
    await assert.rejects(readEvents(kv, "s", { after: 0, limit: 1 }), /incomplete/);
  });
});

Deno.test("one commit's events are packed into few pages; any eventId reads from inside a page", async () => {
  await withKv(async (kv) => {
    const pad = "p".repeat(400);
    const stored = await append(
      kv,
      "s",
      Array.from({ length: 500 }, (_, i) => event("t", { i, pad })),
    );
    await append(kv, "s", [event("t", { i: 500, pad })]);
    const values = await Array.fromAsync(kv.list({ prefix: keys.events("s") }));
    const expectedPages = Math.ceil(stored.reduce((n, e) => n + e.json.length + 1, 0) / PAGE_CHARS);
    assert.ok(values.length <= expectedPages + 2, `${values.length} values for 501 events`);
    for (const after of [0, 1, 57, 250, 499, 500, 501]) {
      const read = await readEvents(kv, "s", { after, limit: 1000 });
      assert.deepEqual(
        read.map((e) => e.envelope.eventId),
        Array.from({ length: 501 - after }, (_, i) => after + 1 + i),
      );
      assert.ok(read.every((e) => e.json === JSON.stringify(e.envelope)));
    }
    const window = await readEvents(kv, "s", { after: 120, limit: 7, upTo: 124 });
    assert.deepEqual(window.map((e) => e.envelope.eventId), [121, 122, 123, 124]);
  });
});

Deno.test("a precomputed envelope tail gives the same JSON as computing it at commit", async () => {
  await withKv(async (kv) => {
    const plain = event("agent", { text: "line\nwith newline and \u2028" });
    const [a] = await append(kv, "s", [plain]);
    const [b] = await append(kv, "s", [{ ...plain, tail: envelopeTail("s", plain) }]);
    assert.equal(b.json, a.json.replace('"eventId":1', '"eventId":2'));
    const read = await readEvents(kv, "s", { after: 0, limit: 10 });
    assert.deepEqual(read.map((e) => e.envelope.data), [plain.data, plain.data]);
  });
});

Deno.test("what a commit returns is what it stored, pages and large events mixed", async () => {
  await withKv(async (kv) => {
    const small = (i: number) => event("t", { i, pad: "s".repeat(300) });
    const large = (i: number) => event("t", { i, pad: "L".repeat(PAGE_CHARS + 10) });
    const events = [small(0), large(1), small(2), small(3), large(4), large(5)];
    for (let i = 6; i < 200; i++) events.push(small(i));
    events.push(large(200));
    const stored = await append(kv, "s", events);
    assert.deepEqual(stored.map((e) => e.envelope.eventId), events.map((_, i) => i + 1));
    for (const e of stored) assert.equal(e.json, JSON.stringify(e.envelope));
    const read = await readEvents(kv, "s", { after: 0, limit: 1000 });
    assert.deepEqual(read.map((e) => e.json), stored.map((e) => e.json));
    // Each page is its events' texts joined by newlines, keyed by its first eventId.
    for await (const { key, value } of kv.list({ prefix: keys.events("s") })) {
      if (typeof value !== "string") continue;
      const first = key.at(-1) as number;
      const lines = value.split("\n");
      assert.deepEqual(lines, stored.slice(first - 1, first - 1 + lines.length).map((e) => e.json));
    }
  });
});

Deno.test("envelopeTail is JSON.stringify of the envelope's fields, whatever the data", () => {
  const datas: unknown[] = [
    null,
    undefined,
    0,
    -1.5e-7,
    'text "quoted" \\ \n \u2028 \ud800 é 漢',
    [1, [2, { a: null }]],
    { z: 1, a: "b", 2: "index keys first", nested: { deep: [true, false] } },
    () => "not JSON",
  ];
  const ids = [["exc_1", "ses_1"], ["exc_2", "ses_1"], ['exc_"odd"', "ses_\\x"], [
    "exc_1",
    "ses_1",
  ]];
  for (const [executionId, sessionId] of ids) {
    for (const data of datas) {
      const e = { executionId, streamEventType: 'agent_"x"', timestamp: "t", data };
      const expected = JSON.stringify({
        executionId,
        sessionId,
        streamEventType: e.streamEventType,
        timestamp: e.timestamp,
        data: data ?? null,
      }).slice(1);
      assert.equal(envelopeTail(sessionId, e), expected, `${executionId} ${String(data)}`);
    }
  }
});

Deno.test("storedSize: characters of a page text, one or two bytes each; UTF-8 bytes alone", () => {
  assert.deepEqual(storedSize('"data":"abc"}'), { units: 43, large: false, wide: false });
  assert.deepEqual(storedSize('"data":"é"}'), { units: 41, large: false, wide: false });
  assert.equal(storedSize('"data":"漢"}').wide, true);
  assert.equal(storedSize('"data":"😀"}').wide, true);
  const long = "é".repeat(PAGE_CHARS);
  assert.deepEqual(storedSize(long), { units: 2 * PAGE_CHARS + 30, large: true, wide: false });
  assert.deepEqual(storedSize("x".repeat(PAGE_CHARS)), {
    units: PAGE_CHARS + 30,
    large: true,
    wide: false,
  });
});

Deno.test("StoredBytes: one wide text doubles the pages; large events count apart", () => {
  const total = new StoredBytes();
  const narrow = { units: 100, large: false, wide: false };
  const wide = { units: 10, large: false, wide: true };
  const large = { units: 50_000, large: true, wide: true };
  total.add(narrow);
  total.add(narrow);
  assert.equal(total.bytes, 200);
  assert.equal(total.with(wide), 420);
  assert.equal(total.bytes, 200, "with() adds nothing");
  total.add(large);
  assert.equal(total.bytes, 50_200, "a large event is stored apart: the pages stay narrow");
  total.add(wide);
  assert.equal(total.bytes, 50_420);
});

Deno.test("a page holding one text beyond Latin-1 is stored two bytes per character", async () => {
  // What StoredBytes assumes of KV: measured through its commit-size limit (819,200 bytes).
  await withKv(async (kv) => {
    const narrow = "x".repeat(25_000);
    const fits = kv.atomic();
    for (let i = 0; i < 20; i++) fits.set(["p", i], narrow); // 500,000 one-byte characters
    assert.ok((await fits.commit()).ok);
    const tooBig = kv.atomic();
    for (let i = 0; i < 20; i++) tooBig.set(["p", i], narrow + "漢"); // the same, two bytes each
    await assert.rejects(() => tooBig.commit(), /too large/);
  });
});
