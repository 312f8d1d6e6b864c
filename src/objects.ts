/**
 * Plain-object helpers shared by the service and the wrapper.
 *
 * @module
 */

/**
 * A copy of `o` without the keys whose value is `undefined`: stored records and JSON bodies
 * stay minimal, and options objects can be spread over defaults without an explicit
 * `undefined` replacing a default.
 *
 * @example
 * ```ts
 * withoutUndefined({ a: 1, b: undefined }); // { a: 1 }
 * ```
 */
export function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * `value` as its JSON text reads back. A value measured as JSON is stored as this: V8 keeps
 * some values in more bytes than JSON writes them (`-0` is an 8-byte number, written `0`), and
 * no reader sees more of a value than its JSON.
 *
 * @example
 * ```ts
 * Object.is(asJson({ a: -0 }).a, 0); // true
 * ```
 */
export function asJson<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}
