/**
 * The JSON nesting limit of PROTOCOL.md 10: no value in a body, a frame or a query may be
 * nested deeper than {@link MAX_JSON_DEPTH} levels. Deeper values are refused at the edge
 * (400 `INVALID_REQUEST` / `INVALID_FRAME`), because code further in (KV serialization,
 * `JSON.stringify`, zod) recurses and would overflow the stack on them, after they were
 * stored. Both checks here are iterative, so they hold for any depth.
 *
 * Depth counts containers: a scalar is 0, `[]` and `{}` are 1, `[[1]]` is 2. A body or a
 * frame is the message that carries values, so its own top-level object is not counted:
 * `{"metadata": <64 levels>}` is accepted, `{"metadata": <65 levels>}` is not.
 *
 * @module
 */

/** Deepest nesting a value may have. */
export const MAX_JSON_DEPTH = 64;

/**
 * The nesting depth of a parsed JSON value, counted up to `limit + 1` (a deeper value stops
 * the walk early). Iterative: safe for any depth.
 *
 * @example
 * ```ts
 * jsonDepth([[1], {}]); // 2
 * jsonDepth("text"); // 0
 * ```
 */
export function jsonDepth(value: unknown, limit = MAX_JSON_DEPTH): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    const level = depth + 1;
    if (level > deepest) deepest = level;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === "object" && child !== null) stack.push([child, level]);
    }
  }
  return deepest;
}

/**
 * True when a value is nested deeper than {@link MAX_JSON_DEPTH}. For a whole message use
 * {@link messageTooDeep}, which does not count the message's own top level.
 *
 * @example
 * ```ts
 * tooDeep([[1]]); // false: depth 2
 * ```
 */
export function tooDeep(value: unknown): boolean {
  return jsonDepth(value) > MAX_JSON_DEPTH;
}

/**
 * True when a message (a REST body, an ingest frame, an input) carries a value nested deeper
 * than {@link MAX_JSON_DEPTH}; the message's own top-level container is not counted.
 *
 * @example
 * ```ts
 * messageTooDeep(JSON.parse(frameText)); // false for {"streamEventType":"x","data":{}}
 * ```
 */
export function messageTooDeep(message: unknown): boolean {
  return jsonDepth(message, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH + 1;
}

/**
 * True when a JSON text holds at most `limit` opening brackets (`[` or `{`, also inside
 * strings): such a text cannot nest deeper than `limit`, so a parsed value need not be
 * walked. A cheap bound for the common case; a text with more brackets says nothing.
 *
 * @example
 * ```ts
 * textOpensAtMost('{"data":{"n":1}}', MAX_JSON_DEPTH); // true: 2 brackets
 * ```
 */
export function textOpensAtMost(text: string, limit: number): boolean {
  let opens = 0;
  for (let i = text.indexOf("{"); i >= 0 && opens <= limit; i = text.indexOf("{", i + 1)) opens++;
  for (let i = text.indexOf("["); i >= 0 && opens <= limit; i = text.indexOf("[", i + 1)) opens++;
  return opens <= limit;
}

/**
 * The bracket nesting of a text read as JSON (brackets inside strings do not count), up to
 * `limit + 1`. For raw texts that are not parsed, such as query values.
 *
 * @example
 * ```ts
 * textDepth('[{"a": "[[["}]'); // 2
 * ```
 */
export function textDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if ((c === CLOSE_BRACKET || c === CLOSE_BRACE) && depth > 0) depth--;
  }
  return deepest;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
