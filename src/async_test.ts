import assert from "node:assert/strict";
import { backoffDelay, delay } from "./async.ts";

Deno.test("delay resolves after the time", async () => {
  const t0 = performance.now();
  await delay(20);
  assert.ok(performance.now() - t0 >= 15);
});

Deno.test("delay rejects with the abort reason and leaves no timer", async () => {
  const ac = new AbortController();
  const p = delay(60_000, { signal: ac.signal });
  ac.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
  await assert.rejects(delay(1, { signal: ac.signal }), /stop/);
});

Deno.test("backoffDelay doubles, caps and jitters within ±20 %", () => {
  const mid = { baseMs: 1000, maxMs: 5000, random: () => 0.5 };
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffDelay(n, mid)), [
    1000,
    2000,
    4000,
    5000,
    5000,
  ]);
  assert.equal(backoffDelay(1, { ...mid, random: () => 0 }), 800);
  assert.equal(backoffDelay(1, { ...mid, random: () => 0.999999 }), 1200);
  assert.equal(backoffDelay(2000, mid), 5000);
});
