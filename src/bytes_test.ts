import assert from "node:assert/strict";
import { concatBytes, utf8Bytes } from "./bytes.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

Deno.test("concatBytes joins parts in order", () => {
  assert.deepEqual(
    concatBytes([bytes(1, 2), bytes(), bytes(3), bytes(4, 5)]),
    bytes(1, 2, 3, 4, 5),
  );
  assert.deepEqual(concatBytes([]), bytes());
});

Deno.test("concatBytes keeps at most maxLength bytes, cutting inside a part", () => {
  assert.deepEqual(concatBytes([bytes(1, 2), bytes(3, 4)], 3), bytes(1, 2, 3));
  assert.deepEqual(concatBytes([bytes(1, 2), bytes(3, 4)], 2), bytes(1, 2));
  assert.deepEqual(concatBytes([bytes(1, 2), bytes(3, 4)], 0), bytes());
  assert.deepEqual(concatBytes([bytes(1, 2)], 10), bytes(1, 2));
});

Deno.test("concatBytes returns a single part that fits without copying it", () => {
  const only = bytes(1, 2, 3);
  assert.equal(concatBytes([only]).buffer, only.buffer);
  assert.deepEqual(concatBytes([only], 2), bytes(1, 2));
});

Deno.test("utf8Bytes counts UTF-8 bytes, short and long, ASCII or not", () => {
  assert.equal(utf8Bytes("abc"), 3);
  assert.equal(utf8Bytes("é😀"), 6);
  assert.equal(utf8Bytes("x".repeat(100_000)), 100_000);
  assert.equal(utf8Bytes(`${"x".repeat(1000)}漢`), 1003);
});
