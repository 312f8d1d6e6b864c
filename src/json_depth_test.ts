import assert from "node:assert/strict";
import {
  jsonDepth,
  MAX_JSON_DEPTH,
  messageTooDeep,
  textDepth,
  textOpensAtMost,
  tooDeep,
} from "./json_depth.ts";

/** An object nested `depth` levels deep (`{}` is 1). */
const nested = (depth: number): unknown => {
  let value: unknown = {};
  for (let i = 1; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
};

Deno.test("jsonDepth counts containers; scalars are 0", () => {
  assert.equal(jsonDepth(1), 0);
  assert.equal(jsonDepth(null), 0);
  assert.equal(jsonDepth("[[["), 0);
  assert.equal(jsonDepth([]), 1);
  assert.equal(jsonDepth({ a: [1, { b: [] }], c: {} }), 4);
  for (const depth of [1, 63, 64, 65]) assert.equal(jsonDepth(nested(depth)), depth);
});

Deno.test("values deeper than 64 are too deep; a message's own object is not counted", () => {
  assert.equal(tooDeep(nested(MAX_JSON_DEPTH)), false);
  assert.equal(tooDeep(nested(MAX_JSON_DEPTH + 1)), true);
  assert.equal(messageTooDeep({ metadata: nested(MAX_JSON_DEPTH) }), false);
  assert.equal(messageTooDeep({ metadata: nested(MAX_JSON_DEPTH + 1) }), true);
});

Deno.test("100,000 levels neither overflow the stack nor take long", () => {
  const depth = 100_000;
  const text = "[".repeat(depth) + "]".repeat(depth);
  const started = performance.now();
  assert.equal(textDepth(text), MAX_JSON_DEPTH + 1);
  assert.ok(tooDeep(JSON.parse(text)));
  assert.ok(messageTooDeep({ data: JSON.parse(text) }));
  assert.ok(performance.now() - started < 1000);
});

Deno.test("textDepth skips brackets inside strings, escapes included", () => {
  assert.equal(textDepth('[{"a": "[[[\\"[["}]'), 2);
  assert.equal(textDepth("plain text"), 0);
  assert.equal(textDepth("]]][["), 2);
  assert.equal(textDepth("[".repeat(64)), 64);
  assert.equal(textDepth("[".repeat(65)), 65);
});

Deno.test("textOpensAtMost counts every opening bracket, also in strings, up to the limit", () => {
  assert.equal(textOpensAtMost("", 0), true);
  assert.equal(textOpensAtMost('{"a":[1,{"b":2}]}', 3), true);
  assert.equal(textOpensAtMost('{"a":[1,{"b":2}]}', 2), false);
  assert.equal(textOpensAtMost('{"a":"[[{"}', 3), false); // a bound, not the depth (which is 1)
  assert.equal(textOpensAtMost("[".repeat(65), MAX_JSON_DEPTH), false);
  assert.equal(textOpensAtMost("[{".repeat(32), MAX_JSON_DEPTH), true);
  // Whenever it says "at most", the parsed text is no deeper.
  for (const depth of [1, 2, 30, 64, 65, 66]) {
    const text = JSON.stringify(nested(depth));
    if (textOpensAtMost(text, MAX_JSON_DEPTH)) assert.ok(jsonDepth(JSON.parse(text)) <= 64);
    else assert.ok(depth > MAX_JSON_DEPTH);
  }
});
