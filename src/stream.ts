/**
 * Viewer delivery: replay, then live, each matching event exactly once in increasing
 * eventId order. One loop per viewer owns one cursor (the last eventId it passed); every
 * wake-up, whether a local push of just-committed events or a head change seen through
 * KV, means "deliver what lies after the cursor". A pushed batch that starts right after
 * the cursor is sent as is; anything else is read from KV. A single cursor in a single loop
 * cannot duplicate or reorder.
 *
 * @module
 */
import { delay } from "./async.ts";
import type { Runtime } from "./runtime.ts";
import { getLiveSession } from "./lifecycle.ts";
import { readEvents, readHead, type StoredEvent, transact } from "./store/mod.ts";

/** Which events a viewer wants; an absent set means all. */
export interface ViewerFilter {
  executionIds?: ReadonlySet<string>;
  eventTypes?: ReadonlySet<string>;
}

/** Where a viewer's events go (a WebSocket or an SSE response). */
export interface ViewerSink {
  /** Queues one event for the viewer. */
  send(event: StoredEvent): void;
  /** Bytes queued for the viewer and not yet written to its connection. */
  readonly buffered: number;
  /** Ends the viewer with a WebSocket close code (SSE just ends). */
  close(code: number, reason: string): void;
}

/** Options of {@link runViewer}. */
export interface ViewerOptions {
  /** Most bytes queued for the viewer before it must drain. Default `config.viewerBufferBytes`. */
  bufferBytes?: number;
  /** How long a full buffer may take to drain before the viewer is closed with 1013. Default 2000 ms. */
  stallMs?: number;
}

/** Events read from KV per round trip while catching up. */
const PAGE = 500;
/** Pushed events kept while the loop is busy; beyond that it reads from KV instead. */
const MAX_PUSHED = 2000;
/** How often a full buffer is checked while waiting for it to drain. */
const DRAIN_POLL_MS = 10;

/** True when the event passes the filter. */
export function matches(filter: ViewerFilter, event: StoredEvent): boolean {
  const { executionId, streamEventType } = event.envelope;
  return (!filter.executionIds || filter.executionIds.has(executionId)) &&
    (!filter.eventTypes || filter.eventTypes.has(streamEventType));
}

/**
 * Runs a viewer until `signal` aborts, the session is deleted (close 1000) or the viewer
 * cannot keep up (close 1013): sending pauses while more than `bufferBytes` are queued for
 * it, and a buffer that does not drain within `stallMs` ends the viewer. So memory per
 * viewer stays bounded by the buffer, whatever the replay or burst size.
 */
export async function runViewer(
  rt: Runtime,
  sessionId: string,
  after: number,
  filter: ViewerFilter,
  sink: ViewerSink,
  signal: AbortSignal,
  options: ViewerOptions = {},
): Promise<void> {
  const { bufferBytes = rt.config.viewerBufferBytes, stallMs = 2000 } = options;
  let cursor = after;
  let pushed: StoredEvent[] = [];
  let dirty = true;
  let checkSession = true;
  let notify: (() => void) | undefined;
  const unsubscribe = rt.hub.subscribe(sessionId, (events) => {
    // A push is only a shortcut: when too many pile up, drop them and read from KV.
    if (events) {
      if (pushed.length + events.length <= MAX_PUSHED) pushed.push(...events);
      else pushed = [];
    } else checkSession = true;
    dirty = true;
    notify?.();
  });
  const onAbort = () => notify?.();
  signal.addEventListener("abort", onAbort);

  /** Waits for the viewer's buffer to fall under the limit; false when it did not in time. */
  const drained = async (): Promise<boolean> => {
    const giveUpAt = Date.now() + stallMs;
    while (sink.buffered > bufferBytes) {
      if (signal.aborted || Date.now() >= giveUpAt) return false;
      await delay(DRAIN_POLL_MS, { signal }).catch(() => {});
    }
    return true;
  };

  /** Sends the events that match; false when the viewer must be dropped. */
  const deliver = async (events: readonly StoredEvent[]): Promise<boolean> => {
    for (const event of events) {
      if (event.envelope.eventId <= cursor) continue;
      cursor = event.envelope.eventId;
      if (!matches(filter, event)) continue;
      sink.send(event);
      if (sink.buffered > bufferBytes && !(await drained())) {
        if (!signal.aborted) sink.close(1013, "viewer too slow, resume with after");
        return false;
      }
    }
    return true;
  };

  try {
    while (!signal.aborted) {
      if (!dirty) {
        await new Promise<void>((resolve) => notify = resolve);
        notify = undefined;
        continue;
      }
      dirty = false;
      const batch = pushed.filter((e) => e.envelope.eventId > cursor);
      pushed = [];
      if (batch.length > 0 && batch[0].envelope.eventId === cursor + 1 && contiguous(batch)) {
        if (!(await deliver(batch))) return;
        continue;
      }
      if (checkSession) {
        checkSession = false;
        if (!(await getLiveSession(rt.kv, sessionId))) {
          sink.close(1000, "session deleted");
          return;
        }
      }
      for (;;) {
        const page = await readEvents(rt.kv, sessionId, { after: cursor, limit: PAGE });
        if (!(await deliver(page))) return;
        if (page.length < PAGE || signal.aborted) break;
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    unsubscribe();
  }
}

function contiguous(events: readonly StoredEvent[]): boolean {
  for (let i = 1; i < events.length; i++) {
    if (events[i].envelope.eventId !== events[i - 1].envelope.eventId + 1) return false;
  }
  return true;
}

/** One page of `GET …/events` (JSON). */
export interface EventsPage {
  events: unknown[];
  lastEventId: number;
  nextAfter: number;
}

/**
 * Reads a page of events after `after`: at most `limit` matching events, scanning at most
 * `scanLimit` stored events (so a selective filter cannot make one call read a whole log).
 */
export async function readEventsPage(
  rt: Runtime,
  sessionId: string,
  options: { after: number; limit: number; filter: ViewerFilter; scanLimit?: number },
): Promise<EventsPage> {
  const { after, limit, filter, scanLimit = 10_000 } = options;
  const { lastEventId } = await transact(rt.kv, (tx) => readHead(tx, sessionId));
  const events: unknown[] = [];
  let scanned = after;
  // The newest eventId actually read: events committed after the head was read count, but a
  // cursor past the end must not make the log look longer than it is.
  let newest = lastEventId;
  let exhausted = false;
  while (events.length < limit && scanned - after < scanLimit) {
    const page = await readEvents(rt.kv, sessionId, {
      after: scanned,
      limit: Math.min(1000, scanLimit - (scanned - after)),
    });
    for (const event of page) {
      scanned = event.envelope.eventId;
      newest = Math.max(newest, scanned);
      if (matches(filter, event)) {
        events.push(event.envelope);
        if (events.length === limit) break;
      }
    }
    if (page.length === 0 || (events.length < limit && page.length < 1000)) {
      exhausted = true;
      break;
    }
  }
  const nextAfter = exhausted ? Math.max(scanned, lastEventId) : scanned;
  return { events, lastEventId: newest, nextAfter };
}
