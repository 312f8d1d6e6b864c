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
