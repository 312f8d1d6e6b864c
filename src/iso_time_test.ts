import assert from "node:assert/strict";
import { isoTime } from "./iso_time.ts";

Deno.test("isoTime formats like Date.prototype.toISOString, for repeated and changing times", () => {
  const times = [0, 0, 1, 1_733_529_600_123, 1_733_529_600_123, 1_733_529_600_124, 0, -1];
  for (const ms of times) assert.equal(isoTime(ms), new Date(ms).toISOString());
});

Deno.test("isoTime refuses a time no Date can hold, as toISOString does, and recovers", () => {
  assert.throws(() => isoTime(Number.NaN), RangeError);
  assert.throws(() => isoTime(8.64e15 + 1), RangeError);
  assert.equal(isoTime(5), new Date(5).toISOString());
});
