/**
 * ISO 8601 texts of clock readings, formatted once per millisecond. A busy ingest connection
 * stamps tens of thousands of frames a second with the service's clock, and formatting a
 * `Date` costs about as much as parsing the frame; frames of the same millisecond share one
 * text.
 *
 * @module
 */

let lastMs = Number.NaN;
let lastText = "";

/**
 * `new Date(ms).toISOString()`, reusing the text of the previous call when `ms` is the same.
 *
 * @example
 * ```ts
 * isoTime(0); // "1970-01-01T00:00:00.000Z"
 * isoTime(Date.now()); // the same text as new Date().toISOString()
 * ```
 */
export function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastText = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastText;
}
