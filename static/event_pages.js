// @ts-check
/**
 * Reading a session's log in pages from the JSON events API (`GET …/events?after&limit`,
 * PROTOCOL.md 4), newest first: the tail when a session opens, then older pages as the user
 * scrolls up. The API only reads forward from a cursor, so a backward page is a forward read
 * of the range before the oldest event loaded; eventIds may have gaps (a session deleted and
 * created again continues its ids), so an empty range widens until events or the start are
 * found. No DOM: the page and Deno tests use the same code.
 *
 * @example
 * ```js
 * import { readOlder, readTail } from "./event_pages.js";
 * const get = (query) => fetch(`/v1/sessions/s/events?${query}`, { headers }).then((r) => r.json());
 * const tail = await readTail(get, session.lastEventId, 500);
 * const older = await readOlder(get, tail.olderThan, 500);
 * ```
 *
 * @module
 */

/** @typedef {import("./conversation.js").Envelope} Envelope */

/**
 * @typedef {object} EventsPage The body of `GET …/events`.
 * @property {Envelope[]} events
 * @property {number} lastEventId
 * @property {number} nextAfter
 */

/** @typedef {(query: string) => Promise<EventsPage>} GetEvents reads one page for a query */

/**
 * @typedef {object} Loaded Events read, and where older ones may still be.
 * @property {Envelope[]} events in eventId order
 * @property {number} olderThan every event not loaded yet has a smaller eventId
 * @property {boolean} startReached nothing older is left
 */

/** The API's largest `limit`. */
const MAX_LIMIT = 1000;

/**
 * Reads the events with `after < eventId ≤ until`, following `nextAfter` (a page may end
 * early at its byte limit) until `until` or the newest event.
 *
 * @param {GetEvents} get
 * @param {number} after
 * @param {number} until
 * @returns {Promise<Envelope[]>}
 */
export async function readRange(get, after, until) {
  /** @type {Envelope[]} */
  const out = [];
  let cursor = after;
  while (cursor < until) {
    const page = await get(`after=${cursor}&limit=${Math.min(MAX_LIMIT, until - cursor)}`);
    for (const env of page.events) if (env.eventId <= until) out.push(env);
    const done = page.nextAfter >= until || page.nextAfter >= page.lastEventId;
    if (done || page.events.length === 0 || page.nextAfter <= cursor) break;
    cursor = page.nextAfter;
  }
  return out;
}

/**
 * The newest `count` eventIds of a session whose newest is `lastEventId`.
 *
 * @param {GetEvents} get
 * @param {number} lastEventId
 * @param {number} count
 * @returns {Promise<Loaded>}
 */
export async function readTail(get, lastEventId, count) {
  const after = Math.max(0, lastEventId - count);
  return {
    events: await readRange(get, after, lastEventId),
    olderThan: after + 1,
    startReached: after === 0,
  };
}

/**
 * The page of events before `olderThan`: about `count` eventIds, widened (×4 each time)
 * across gaps until events are found or the start is reached.
 *
 * @param {GetEvents} get
 * @param {number} olderThan
 * @param {number} count
 * @returns {Promise<Loaded>}
 */
export async function readOlder(get, olderThan, count) {
  let step = count;
  let until = olderThan - 1;
  while (until > 0) {
    const after = Math.max(0, until - step);
    const events = await readRange(get, after, until);
    if (events.length > 0 || after === 0) {
      return { events, olderThan: after + 1, startReached: after === 0 };
    }
    until = after;
    step *= 4;
  }
  return { events: [], olderThan: 1, startReached: true };
}
