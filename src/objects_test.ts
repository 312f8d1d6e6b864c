import assert from "node:assert/strict";
import { withoutUndefined } from "./objects.ts";

Deno.test("withoutUndefined drops undefined values only, keeping key order", () => {
  const out = withoutUndefined({ a: 1, b: undefined, c: null, d: 0, e: "", f: false });
  assert.deepEqual(out, { a: 1, c: null, d: 0, e: "", f: false });
  assert.deepEqual(Object.keys(out), ["a", "c", "d", "e", "f"]);
  assert.ok(!("b" in out));
});

Deno.test("withoutUndefined copies: the input is unchanged", () => {
  const input = { a: 1, b: undefined };
  withoutUndefined(input);
  assert.ok("b" in input);
});
