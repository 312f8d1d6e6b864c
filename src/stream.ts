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
import type { Runtime } from "./runtime.ts";
import { readEvents, readHead, records, type StoredEvent, transact } from "./store/mod.ts";

/** Which events a viewer wants; an absent set means all. */
export interface ViewerFilter {
  executionIds?: ReadonlySet<string>;
  eventTypes?: ReadonlySet<string>;
}

/** Where a viewer's events go (a WebSocket or an SSE response). */
export interface ViewerSink {
  /** Sends one event; returns false when the viewer's buffer is over its limit. */
  send(event: StoredEvent): boolean;
  /** Ends the viewer with a WebSocket close code (SSE just ends). */
  close(code: number, reason: string): void;
}

/** Events read from KV per round trip while catching up. */
const PAGE = 500;

/** True when the event passes the filter. */
export function matches(filter: ViewerFilter, event: StoredEvent): boolean {
  const { executionId, streamEventType } = event.envelope;
  return (!filter.executionIds || filter.executionIds.has(executionId)) &&
    (!filter.eventTypes || filter.eventTypes.has(streamEventType));
}

/**
 * Runs a viewer until `signal` aborts, the session is deleted (close 1000) or the viewer
 * falls behind its buffer (close 1013).
 */
export async function runViewer(
  rt: Runtime,
  sessionId: string,
  after: number,
  filter: ViewerFilter,
  sink: ViewerSink,
  signal: AbortSignal,
): Promise<void> {
  let cursor = after;
  let pushed: StoredEvent[] = [];
  let dirty = true;
  let checkSession = true;
  let notify: (() => void) | undefined;
  const unsubscribe = rt.hub.subscribe(sessionId, (events) => {
    if (events) pushed.push(...events);
    else checkSession = true;
    dirty = true;
    notify?.();
  });
  const onAbort = () => notify?.();
  signal.addEventListener("abort", onAbort);

  /** Sends the events that match; false when the viewer must be dropped. */
  const deliver = (events: readonly StoredEvent[]): boolean => {
    for (const event of events) {
      if (event.envelope.eventId <= cursor) continue;
      cursor = event.envelope.eventId;
      if (matches(filter, event) && !sink.send(event)) {
        sink.close(1013, "viewer too slow, resume with after");
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
        if (!deliver(batch)) return;
        continue;
      }
      if (checkSession) {
        checkSession = false;
        const session = await transact(rt.kv, (tx) => records.session(sessionId).get(tx));
        if (!session || session.deletedAt) {
          sink.close(1000, "session deleted");
          return;
        }
      }
      for (;;) {
        const page = await readEvents(rt.kv, sessionId, { after: cursor, limit: PAGE });
        if (!deliver(page)) return;
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
  let exhausted = false;
  while (events.length < limit && scanned - after < scanLimit) {
    const page = await readEvents(rt.kv, sessionId, {
      after: scanned,
      limit: Math.min(1000, scanLimit - (scanned - after)),
    });
    for (const event of page) {
      scanned = event.envelope.eventId;
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
  return { events, lastEventId: Math.max(lastEventId, scanned), nextAfter };
}
