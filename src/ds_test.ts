import assert from "node:assert/strict";
import { encodeOffset, nextCursor, OFFSET_DIGITS, parseOffset } from "./ds.ts";

Deno.test("encodeOffset: eventIds as 16 zero-padded digits that sort like the ids", () => {
  assert.equal(encodeOffset(0), "0000000000000000");
  assert.equal(encodeOffset(42), "0000000000000042");
  assert.equal(encodeOffset(Number.MAX_SAFE_INTEGER), "9007199254740991");
  const ids = [0, 9, 10, 99, 100, 123_456_789];
  const offsets = ids.map(encodeOffset);
  assert.deepEqual([...offsets].sort(), offsets);
  assert.ok(offsets.every((o) => o.length === OFFSET_DIGITS));
});

Deno.test("parseOffset: start, tail, and every offset encodeOffset writes", () => {
  assert.deepEqual(parseOffset(undefined), { after: 0 });
  assert.deepEqual(parseOffset("-1"), { after: 0 });
  assert.deepEqual(parseOffset("now"), { tail: true });
  for (const id of [0, 1, 41, 1_000_000, Number.MAX_SAFE_INTEGER]) {
    assert.deepEqual(parseOffset(encodeOffset(id)), { after: id });
  }
});

Deno.test("parseOffset: anything else is refused", () => {
  for (
    const text of [
      "",
      "0",
      "42",
      "-2",
      "NOW",
      "000000000000004",
      "00000000000000042",
      "000000000000004a",
      " 000000000000042",
      "9999999999999999", // above the largest safe integer
      "0x00000000000042",
    ]
  ) {
    assert.equal(parseOffset(text), undefined, JSON.stringify(text));
  }
});

const EPOCH = Date.UTC(2024, 9, 9);
const INTERVAL = 20_000;

Deno.test("nextCursor: the current 20 s interval since the epoch without a client cursor", () => {
  assert.equal(nextCursor(undefined, EPOCH), "0");
  assert.equal(nextCursor(undefined, EPOCH + INTERVAL - 1), "0");
  assert.equal(nextCursor(undefined, EPOCH + 5 * INTERVAL), "5");
});

Deno.test("nextCursor: an older or malformed client cursor gets the current interval", () => {
  const now = EPOCH + 100 * INTERVAL;
  for (const client of ["99", "0", "abc", "-5", "1e3", "1234567890123456"]) {
    assert.equal(nextCursor(client, now), "100", client);
  }
});

Deno.test("nextCursor: a current or later cursor moves forward by 1–3600 s of jitter", () => {
  const now = EPOCH + 100 * INTERVAL;
  // 3600 s are 180 intervals; 1 s rounds up to one interval.
  assert.equal(nextCursor("100", now, () => 0), "101");
  assert.equal(nextCursor("100", now, () => 0.999_999), "280");
  assert.equal(nextCursor("250", now, () => 0), "251");
  for (let i = 0; i < 200; i++) {
    const next = Number(nextCursor("100", now));
    assert.ok(next >= 101 && next <= 280, String(next));
  }
});
