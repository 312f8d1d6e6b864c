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
import { getLiveSession, sessionAndHead } from "./lifecycle.ts";
import { CloseCode } from "./protocol.ts";
import type { Wake } from "./hub.ts";
import type { BodyPiece, ReaderLease } from "./read_budget.ts";
import { jsonSize, readEvents, readHead, type StoredEvent, transact } from "./store/mod.ts";

/** Which events a viewer wants; an absent set means all. */
export interface ViewerFilter {
  executionIds?: ReadonlySet<string>;
  eventTypes?: ReadonlySet<string>;
}

/** Where a viewer's events go (a WebSocket or an SSE response). */
export interface ViewerSink {
  /** Queues one event for the viewer. */
  send(event: StoredEvent): void;
  /** Writes what `send` queued, when the sink gathers a batch into one write. */
  flush?(): void;
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

/** Most events read from KV per round trip while catching up. */
const READ_EVENTS = 2000;
/** Most bytes read from KV per round trip (less when the viewer's buffer has less room). */
const READ_BYTES = 2 * 1024 * 1024;
/** Pushed events kept while the loop is busy; beyond either bound it reads from KV instead. */
const MAX_PUSHED = 10_000;
const MAX_PUSHED_BYTES = 4 * 1024 * 1024;
/** How often a full buffer is checked while waiting for it to drain. */
const DRAIN_POLL_MS = 10;

/**
 * True when the event passes the filter.
 *
 * @example
 * ```ts
 * const filter: ViewerFilter = { eventTypes: new Set(["agent", "output"]) };
 * const wanted = events.filter((event) => matches(filter, event));
 * ```
 */
export function matches(filter: ViewerFilter, event: StoredEvent): boolean {
  // The envelope is looked at only when a filter needs it (an event read back parses it then).
  return (!filter.executionIds || filter.executionIds.has(event.envelope.executionId)) &&
    (!filter.eventTypes || filter.eventTypes.has(event.envelope.streamEventType));
}

/**
 * Runs a viewer until `signal` aborts, the session is deleted (close 1000) or the viewer
 * cannot keep up (close 1013). Every read is sized by the room left in the viewer's buffer
 * and taken from the instance's read budget, so one viewer holds at most about its buffer
 * and all viewers together at most the budget, whatever the size of the stored events; a
 * buffer that does not drain within `stallMs` ends the viewer.
 *
 * @example
 * ```ts
 * await runViewer(rt, "ses_1", 0, {}, sink, abort.signal);
 * ```
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
  await new ViewerLoop(rt, sessionId, after, filter, sink, signal, options).run();
}

/**
 * One viewer's loop. It owns the cursor (the last eventId passed). A wake-up is a local push
 * of just-committed events, a head change seen through KV (events stored elsewhere, up to
 * that head), or a change of the session record. A pushed batch that starts right after the
 * cursor is sent as is, waiting for the read budget if need be; events up to a head the
 * pushes do not cover, and anything after a gap or a dropped push, are read from KV; a
 * session change is looked at (deleted: read up to the deletion, then close).
 */
class ViewerLoop {
  #cursor: number;
  #pushed: StoredEvent[] = [];
  #pushedBytes = 0;
  #dirty = true;
  /** Set by a change of the session record (and when it is gone at the start). */
  #checkSession = false;
  /** The session this viewer opened: one created again under its id is another. */
  #incarnation?: string;
  /** Set when only a KV read can tell what is new (the first step, a dropped push). */
  #mustRead = true;
  /** Events up to this eventId are stored without a push this viewer holds: read what it lacks. */
  #storedUpTo = 0;
  #notify?: () => void;
  readonly #lease: ReaderLease;
  readonly #bufferBytes: number;
  readonly #stallMs: number;

  constructor(
    private readonly rt: Runtime,
    private readonly sessionId: string,
    after: number,
    private readonly filter: ViewerFilter,
    private readonly sink: ViewerSink,
    private readonly signal: AbortSignal,
    options: ViewerOptions,
  ) {
    this.#cursor = after;
    this.#bufferBytes = options.bufferBytes ?? rt.config.viewerBufferBytes;
    this.#stallMs = options.stallMs ?? 2000;
    this.#lease = rt.readBudget.open({
      buffered: () => sink.buffered,
      evict: () => this.#wake(),
    });
  }

  async run(): Promise<void> {
    const unsubscribe = this.rt.hub.subscribe(this.sessionId, (wake) => this.#onWake(wake));
    const onAbort = () => this.#wake();
    this.signal.addEventListener("abort", onAbort);
    try {
      // Read after subscribing: a change from here on wakes the loop.
      this.#incarnation = (await getLiveSession(this.rt.kv, this.sessionId))?.incarnation;
      if (this.#incarnation === undefined) this.#checkSession = true;
      while (!this.signal.aborted && await this.#step());
    } finally {
      this.signal.removeEventListener("abort", onAbort);
      unsubscribe();
      this.#lease[Symbol.dispose]();
    }
  }

  /** Handles one wake-up; false once the viewer has ended. */
  async #step(): Promise<boolean> {
    if (this.#lease.evicted) return this.#tooSlow();
    if (!this.#dirty) {
      await new Promise<void>((resolve) => this.#notify = resolve);
      this.#notify = undefined;
      return true;
    }
    this.#dirty = false;
    // A change of the session record is looked at first: once the session is deleted, later
    // events under its id belong to a session created again.
    if (this.#checkSession) {
      this.#checkSession = false;
      if (await this.#endedWithSession()) return false;
    }
    // Pushed events that continue the cursor are sent as they are; pushed events the cursor
    // is already past (a KV read got them first) mean nothing is new. A gap, a dropped push
    // or events stored elsewhere beyond the cursor are read from KV.
    const pushed = await this.#sendPushed();
    if (pushed !== "read" && !this.#mustRead && this.#storedUpTo <= this.#cursor) return true;
    this.#mustRead = false;
    return await this.#catchUp({ untilPushed: true });
  }

  /**
   * After a change of the session record: false while it is the session this viewer opened.
   * Once it was deleted, what was stored up to the deletion (its own events included) still
   * reaches the viewer, whichever instance stored it and however the wake-ups raced, and the
   * viewer closes with 1000. A session created again under the same id (another incarnation,
   * possible only once the deleted one's data is purged) is not followed: the viewer closes.
   */
  async #endedWithSession(): Promise<boolean> {
    const { live, lastEventId } = await sessionAndHead(this.rt.kv, this.sessionId);
    if (live && live.incarnation === this.#incarnation) return false;
    this.#dropPushed();
    if (!live && !(await this.#catchUp({ untilPushed: false, upTo: lastEventId }))) return true;
    this.sink.close(CloseCode.normal, "session deleted");
    return true;
  }

  /**
   * A hub wake-up: keep a push while it stays small (else drop it and read from KV later),
   * read what another instance stored, or look at the session.
   */
  #onWake(wake: Wake): void {
    if (wake.kind === "session") this.#checkSession = true;
    else if (wake.kind === "stored") this.#storedUpTo = Math.max(this.#storedUpTo, wake.upTo);
    else {
      const { events } = wake;
      const bytes = jsonSize(events);
      if (
        this.#pushed.length + events.length <= MAX_PUSHED &&
        this.#pushedBytes + bytes <= MAX_PUSHED_BYTES
      ) {
        this.#pushed.push(...events);
        this.#pushedBytes += bytes;
      } else {
        this.#dropPushed();
        this.#mustRead = true;
      }
    }
    this.#dirty = true;
    this.#wake();
  }

  #wake(): void {
    this.#notify?.();
  }

  #dropPushed(): StoredEvent[] {
    const pushed = this.#pushed;
    this.#pushed = [];
    this.#pushedBytes = 0;
    return pushed;
  }

  /**
   * The live fast path: sends the pushed events when they continue the cursor and fit the
   * viewer's buffer ("sent"); "none" when nothing was pushed; "stale" when the cursor is
   * already past all of them; "read" when the loop must read KV instead. When the instance's
   * read budget is spent for the moment, it waits for the budget: the pushed events are in
   * memory already, shared by every viewer of the session, and reading them back from KV
   * would cost each viewer a read and a parse of every event (a 100-viewer fan-out spent
   * most of its time so).
   */
  async #sendPushed(): Promise<"sent" | "none" | "stale" | "read"> {
    const pushed = this.#dropPushed();
    if (pushed.length === 0) return "none";
    const batch = pushed.filter((e) => e.eventId > this.#cursor);
    if (batch.length === 0) return "stale";
    if (batch[0].eventId !== this.#cursor + 1 || !contiguous(batch)) return "read";
    const bytes = jsonSize(batch);
    const room = this.#bufferBytes - this.sink.buffered;
    if (bytes > room && this.sink.buffered > 0) return "read";
    // Aborted or evicted while waiting: the read path ends the viewer.
    if (!this.#lease.tryReserve(bytes) && !(await this.#lease.reserve(bytes, this.signal))) {
      return "read";
    }
    this.#send(batch);
    this.#lease.settle();
    return "sent";
  }

  /**
   * Reads and sends what lies after the cursor, a buffer's room at a time; false when ended.
   * With `untilPushed`, it stops before the events pushed to this viewer meanwhile: the next
   * step sends those from memory (many viewers opening at once on a busy session would each
   * read back what was pushed to all of them).
   */
  async #catchUp(options: { untilPushed: boolean; upTo?: number }): Promise<boolean> {
    for (;;) {
      // A change of the session record is looked at before anything more is read.
      if (this.#checkSession && options.untilPushed) return true;
      const room = await this.#room();
      if (room === 0) return this.signal.aborted ? false : this.#tooSlow();
      // Taken after the wait for room: pushes arrive meanwhile.
      const firstPushed = options.untilPushed ? this.#pushed[0]?.eventId : undefined;
      const upTo = Math.min(options.upTo ?? Infinity, (firstPushed ?? Infinity) - 1);
      if (upTo !== Infinity && upTo <= this.#cursor) {
        this.#lease.settle();
        return true;
      }
      const page = await readEvents(this.rt.kv, this.sessionId, {
        after: this.#cursor,
        limit: READ_EVENTS,
        maxBytes: room,
        upTo: upTo === Infinity ? undefined : upTo,
      });
      const bytes = jsonSize(page);
      this.#lease.hold(bytes);
      this.#send(page);
      this.#lease.settle();
      if (page.length < READ_EVENTS && bytes < room) return true;
      if (this.signal.aborted) return false;
    }
  }

  /**
   * Waits until the viewer's buffer has room for a read and the budget grants it; returns
   * the bytes reserved, or 0 when the viewer is aborted, evicted or stalled (its buffer did
   * not drain at all for `stallMs`).
   */
  async #room(): Promise<number> {
    const wanted = Math.min(READ_BYTES, Math.max(1, Math.floor(this.#bufferBytes / 2)));
    let lastBuffered = this.sink.buffered;
    let progressAt = Date.now();
    for (;;) {
      if (this.signal.aborted || this.#lease.evicted) return 0;
      const buffered = this.sink.buffered;
      const room = Math.min(READ_BYTES, this.#bufferBytes - buffered);
      if (room >= wanted || buffered === 0) {
        // The buffer has room; the budget may not. Waiting for it as every reader does lets
        // the budget evict holders that stopped draining, however idle they are themselves.
        const bytes = Math.max(room, 1);
        return await this.#lease.reserve(bytes, this.signal) ? bytes : 0;
      }
      if (buffered < lastBuffered || buffered === 0) progressAt = Date.now();
      lastBuffered = buffered;
      if (buffered > 0 && Date.now() - progressAt >= this.#stallMs) return 0;
      await delay(DRAIN_POLL_MS, { signal: this.signal }).catch(() => {});
    }
  }

  /** Sends the events after the cursor that match the filter. */
  #send(events: readonly StoredEvent[]): void {
    for (const event of events) {
      if (event.eventId <= this.#cursor) continue;
      this.#cursor = event.eventId;
      if (matches(this.filter, event)) this.sink.send(event);
    }
    this.sink.flush?.();
  }

  #tooSlow(): false {
    this.sink.close(CloseCode.tryAgainLater, "viewer too slow, resume with after");
    return false;
  }
}

function contiguous(events: readonly StoredEvent[]): boolean {
  for (let i = 1; i < events.length; i++) {
    if (events[i].eventId !== events[i - 1].eventId + 1) return false;
  }
  return true;
}

/** One page of `GET …/events` (JSON). */
export interface EventsPage {
  events: StoredEvent[];
  lastEventId: number;
  nextAfter: number;
}

/** Stored events a JSON page reads per round trip. */
const PAGE_SCAN_EVENTS = 1000;

/** About how many bytes of envelopes one JSON page holds (PROTOCOL.md 10). */
export const PAGE_BYTES = 4 * 1024 * 1024;

/** Options of {@link readEventsPage}. */
export interface EventsPageOptions {
  after: number;
  limit: number;
  filter: ViewerFilter;
  /** Most stored events scanned, so a selective filter cannot make one call read a whole log. Default 10,000. */
  scanLimit?: number;
  /** The page ends once it holds this many bytes (at least one event). Default {@link PAGE_BYTES}. */
  maxBytes?: number;
}

/**
 * True when no event is stored after `after` although the head (read before this call) is
 * higher: the ids between were never stored here (a session deleted and created again
 * continues its eventIds), so a page that reached them is complete up to the head. Reading
 * again settles the race with a head read alongside events that were still being committed.
 */
async function isHole(rt: Runtime, sessionId: string, after: number): Promise<boolean> {
  return (await readEvents(rt.kv, sessionId, { after, limit: 1 })).length === 0;
}

/**
 * Reads a page of events after `after`: at most `limit` matching events and about
 * `maxBytes` of them, scanning at most `scanLimit` stored events.
 *
 * @example
 * ```ts
 * const page = await readEventsPage(rt, "ses_1", { after: 0, limit: 100, filter: {} });
 * const pieces = eventsPagePieces(page);
 * ```
 */
export async function readEventsPage(
  rt: Runtime,
  sessionId: string,
  options: EventsPageOptions,
): Promise<EventsPage> {
  const { after, limit, filter, scanLimit = 10_000, maxBytes = PAGE_BYTES } = options;
  // The head is read alongside the first events (one round trip less per page).
  const [{ lastEventId }, first] = await Promise.all([
    transact(rt.kv, (tx) => readHead(tx, sessionId)),
    readEvents(rt.kv, sessionId, { after, limit: Math.min(PAGE_SCAN_EVENTS, scanLimit), maxBytes }),
  ]);
  let prefetched: StoredEvent[] | undefined = first;
  const events: StoredEvent[] = [];
  let bytes = 0;
  let scanned = after;
  // The newest eventId actually read: events committed after the head was read count, but a
  // cursor past the end must not make the log look longer than it is.
  let newest = lastEventId;
  let exhausted = false;
  while (events.length < limit && scanned - after < scanLimit && bytes < maxBytes) {
    const want = {
      events: Math.min(PAGE_SCAN_EVENTS, scanLimit - (scanned - after)),
      bytes: maxBytes - bytes,
    };
    const page = prefetched ?? await readEvents(rt.kv, sessionId, {
      after: scanned,
      limit: want.events,
      maxBytes: want.bytes,
    });
    prefetched = undefined;
    for (const event of page) {
      scanned = event.eventId;
      newest = Math.max(newest, scanned);
      if (!matches(filter, event)) continue;
      events.push(event);
      bytes += event.size;
      if (events.length === limit) break;
    }
    if (page.length < want.events && jsonSize(page) < want.bytes) {
      exhausted = true;
      break;
    }
  }
  // Exhausted or not, the cursor is the last event read: the head, read at the same time, may
  // already name events the reads did not see yet (`lastEventId` then says so).
  if (exhausted && scanned < newest && await isHole(rt, sessionId, scanned)) scanned = newest;
  return { events, lastEventId: newest, nextAfter: scanned };
}

/**
 * The JSON body of a page as pieces to write one after the other: the stored envelopes are
 * neither re-serialized nor joined into one large copy.
 *
 * @example
 * ```ts
 * const page = await readEventsPage(rt, sid, { after: 0, limit: 100, filter: {} });
 * const body = leasedBodyStream(lease, eventsPagePieces(page));
 * ```
 */
export function eventsPagePieces(page: EventsPage): BodyPiece[] {
  return [
    '{"events":',
    ...jsonArrayPieces(page.events),
    `,"lastEventId":${page.lastEventId},"nextAfter":${page.nextAfter}}`,
  ];
}

/**
 * A JSON array of stored envelopes as pieces to write one after the other. Each envelope is
 * a piece of its own: joining it to its comma would copy a large one.
 *
 * @example
 * ```ts
 * const body = leasedBodyStream(lease, jsonArrayPieces(batch.events)); // "[" env "," env "]"
 * ```
 */
export function jsonArrayPieces(events: readonly StoredEvent[]): BodyPiece[] {
  const pieces: BodyPiece[] = ["["];
  events.forEach((event, i) => {
    if (i > 0) pieces.push(",");
    pieces.push(event.body);
  });
  pieces.push("]");
  return pieces;
}
