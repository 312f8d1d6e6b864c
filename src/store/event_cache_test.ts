import assert from "node:assert/strict";
import { LargeEventCache, LargeEventText } from "./event_cache.ts";

const bytesOf = (text: string) => new TextEncoder().encode(text);

Deno.test("a large event decodes its text once, on first use", () => {
  const decoded: number[] = [];
  const event = new LargeEventText(bytesOf('{"a":"é"}'), (chars) => decoded.push(chars));
  assert.equal(event.size, 10);
  assert.deepEqual(decoded, []);
  assert.equal(event.text, '{"a":"é"}');
  assert.ok(event.text === event.text);
  assert.deepEqual(decoded, [9]);
  assert.equal(event.size, 19, "bytes and text both held");
});

Deno.test("the cache shares one read per event and holds its bound, texts included", async () => {
  const cache = new LargeEventCache({ maxBytes: 100 });
  let reads = 0;
  const read = (text: string) => () => {
    reads++;
    return Promise.resolve(bytesOf(text));
  };
  const [a1, a2] = await Promise.all([
    cache.get("s", 1, read("a".repeat(40))),
    cache.get("s", 1, read("a".repeat(40))),
  ]);
  assert.ok(a1 === a2, "concurrent readers share one copy");
  assert.equal(reads, 1);
  const b = await cache.get("s", 2, read("b".repeat(40)));
  assert.equal(reads, 2);
  assert.equal(cache.bytes, 80);
  assert.equal(b.text.length, 40); // decoding b makes 120 > 100: the least recently used (a) goes
  assert.equal(cache.bytes, 80);
  assert.ok((await cache.get("s", 2, read("x"))) === b, "b stays cached");
  await cache.get("s", 1, read("a".repeat(40)));
  assert.equal(reads, 3, "a was read again after its eviction");
  assert.ok(cache.bytes <= 100);
  const huge = await cache.get("s", 3, read("h".repeat(101)));
  assert.equal(huge.bytes.length, 101, "an event over the bound is returned, not kept");
  assert.ok(cache.bytes <= 100);
});
