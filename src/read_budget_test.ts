import assert from "node:assert/strict";
import { bodyChunks, leasedBodyStream, ReadBudget } from "./read_budget.ts";

Deno.test("a lease holds its in-flight read, then what its buffer holds", () => {
  const budget = new ReadBudget(1000);
  let buffered = 0;
  const lease = budget.open({ buffered: () => buffered });
  assert.ok(lease.tryReserve(600));
  assert.equal(budget.used, 600);
  lease.hold(700); // the read overshot by one event
  assert.equal(budget.used, 700);
  buffered = 700;
  lease.settle();
  assert.equal(budget.used, 700);
  buffered = 100; // the network took most of it
  lease.sync();
  assert.equal(budget.used, 100);
  lease[Symbol.dispose]();
  assert.equal(budget.used, 0);
});

Deno.test("a full budget makes readers wait; an empty one admits any single read", async () => {
  const budget = new ReadBudget(1000, { pollMs: 1 });
  const first = budget.open();
  assert.ok(first.tryReserve(5000), "an empty budget admits one oversized read");
  const second = budget.open();
  assert.equal(second.tryReserve(10), false);
  const waiting = second.reserve(10, new AbortController().signal);
  first.settle();
  assert.equal(await waiting, true);
  assert.equal(budget.used, 10);
});

Deno.test("a waiter evicts holders that did not drain for stallMs, not draining ones", async () => {
  const budget = new ReadBudget(1000, { pollMs: 1, stallMs: 30 });
  let evicted = "";
  const stalled = budget.open({ buffered: () => 600, evict: () => evicted += "stalled " });
  stalled.sync();
  let draining = 400;
  const healthy = budget.open({ buffered: () => draining, evict: () => evicted += "healthy " });
  healthy.sync();
  const reader = budget.open();
  const timer = setInterval(() => draining = Math.max(1, draining - 1), 1);
  const signal = AbortSignal.timeout(2000);
  const wait = reader.reserve(100, signal);
  while (!evicted) await new Promise((r) => setTimeout(r, 5));
  clearInterval(timer);
  assert.equal(evicted, "stalled ");
  assert.equal(stalled.evicted, true);
  stalled[Symbol.dispose](); // the evicted reader ends and gives its bytes back
  assert.equal(await wait, true);
  healthy[Symbol.dispose]();
  reader[Symbol.dispose]();
});

Deno.test("a leased body writes its texts in chunks and gives the bytes back as read", async () => {
  const budget = new ReadBudget(10 * 1024 * 1024);
  const lease = budget.open();
  const big = "😀".repeat(300_000); // surrogate pairs across every chunk boundary
  const texts = ["[", big, ",", '"x"', "]"];
  let ended = false;
  lease.hold(texts.join("").length);
  const body = leasedBodyStream(lease, texts, undefined, () => ended = true);
  assert.ok(budget.used > 0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  const text = new TextDecoder("utf-8", { fatal: true }).decode(
    new Uint8Array(chunks.flatMap((c) => [...c])),
  );
  assert.equal(text, texts.join(""));
  assert.ok(chunks.length > 1);
  assert.equal(budget.used, 0);
  assert.ok(ended);
});

Deno.test("a leased body pulls more texts only as the client reads", async () => {
  const budget = new ReadBudget(1024 * 1024);
  const lease = budget.open();
  let calls = 0;
  const body = leasedBodyStream(
    lease,
    [],
    () => Promise.resolve(++calls <= 3 ? [`${calls}`] : undefined),
  );
  assert.equal(calls, 0);
  assert.equal(await new Response(body).text(), "123");
  assert.equal(calls, 4);
  assert.equal(budget.used, 0);
});

Deno.test("byte pieces are written as they are, between texts, and cut into views", async () => {
  const encoder = new TextEncoder();
  const stored = encoder.encode(`"${"€".repeat(200_000)}"`); // 600,002 bytes: three chunks
  const pieces = ["[", "1", ",", stored, ",", "😀", "]"];
  const expected = encoder.encode(`[1,"${"€".repeat(200_000)}",😀]`);
  const joined = (chunks: Uint8Array[]) => new Uint8Array(chunks.flatMap((c) => [...c]));

  const chunks = bodyChunks(pieces);
  assert.deepEqual(joined(chunks), expected);
  assert.deepEqual(chunks.map((c) => c.length), [3, 262_144, 262_144, 75_714, 6]);
  assert.ok(chunks[1].buffer === stored.buffer, "a view of the stored bytes, not a copy");

  const budget = new ReadBudget(10 * 1024 * 1024);
  const lease = budget.open();
  lease.hold(expected.length);
  const body = leasedBodyStream(lease, pieces);
  assert.deepEqual(new Uint8Array(await new Response(body).arrayBuffer()), expected);
  assert.equal(budget.used, 0);
});
