/**
 * The session event log: eventIds 1, 2, 3… per session, never reused; each envelope stored
 * as its JSON text (so viewers send it without re-serializing). The events of one commit are
 * packed into pages of JSON lines; an event too large for a page is stored alone as UTF-8
 * bytes, split into chunk entries when it exceeds what one KV value holds.
 *
 * @module
 */
import { concatBytes, utf8Bytes } from "../bytes.ts";
import type { Envelope } from "../protocol.ts";
import { largeEventCache, LargeEventText } from "./event_cache.ts";
import { keys } from "./keys.ts";
import type { HeadRecord } from "./records.ts";
import type { Tx } from "./transact.ts";

/** Bytes per stored value; KV values hold at most 64 KiB. */
export const CHUNK_BYTES = 60_000;
/**
 * Characters of envelope JSON per page: events of one commit are packed, newline-separated,
 * into pages (one KV value each), which makes a commit of hundreds of events a handful of
 * writes. KV may keep a string as UTF-16, so a page holds at most half a chunk.
 */
export const PAGE_CHARS = CHUNK_BYTES / 2;

/** An event before it has an eventId. */
export interface NewEvent {
  executionId: string;
  streamEventType: string;
  timestamp: string;
  data: unknown;
  /** Its envelope JSON after `eventId` (see {@link envelopeTail}), when computed ahead. */
  tail?: string;
}

/** A stored event: the envelope, its JSON text as sent to viewers, and what a byte stream writes. */
export interface StoredEvent {
  /** Its eventId (the envelope's), known without parsing the envelope. */
  readonly eventId: number;
  /** The envelope (an event read back parses it from its JSON when first used). */
  readonly envelope: Envelope;
  /** The envelope JSON (a large event read back decodes it when first used). */
  readonly json: string;
  /** What a byte stream writes: the JSON text, or a large event's stored UTF-8 bytes. */
  readonly body: string | Uint8Array;
  /** Characters of the text, or bytes of a large event's body: what byte bounds count. */
  readonly size: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The envelope JSON of an event without its leading `{"eventId":N,`. The ingest path
 * computes it when a frame arrives, so a commit only prefixes the id (the contract's key
 * order: eventId, executionId, sessionId, streamEventType, timestamp, data; PROTOCOL.md
 * section 6). An absent `data` is written as `null`.
 *
 * @example
 * ```ts
 * const timestamp = "2026-01-01T00:00:00.000Z";
 * const event = { executionId: "exc_1", streamEventType: "output", timestamp, data: 1 };
 * envelopeTail("ses_1", event);
 * // '"executionId":"exc_1","sessionId":"ses_1","streamEventType":"output",…,"data":1}'
 * ```
 */
export function envelopeTail(sessionId: string, event: NewEvent): string {
  const { executionId, streamEventType, timestamp } = event;
  const data = event.data ?? null;
  return JSON.stringify({ executionId, sessionId, streamEventType, timestamp, data }).slice(1);
}

const withId = (eventId: number, tail: string) => `{"eventId":${eventId},${tail}`;

/**
 * Most bytes one event may take in KV: it must fit one commit (KV allows 819,200 bytes of keys
 * and values) beside the records that commit writes too, which leaves 80 KiB for them (ending
 * an execution that has callbacks and a queued successor writes about 37 KB more, keys
 * included). Any frame within the frame limit (at most 716,800 bytes) fits; the data written
 * again by `JSON.stringify` can be longer than the frame's own text (`1E20` becomes 21
 * digits), and such an event may not.
 */
export const MAX_EVENT_BYTES = 720 * 1024;

/** Characters an envelope's `{"eventId":N,` head and its page's newline add to its tail. */
const HEAD_CHARS = 30;

/** A character V8 cannot keep in a one-byte (Latin-1) string. */
const WIDE_CHAR = /[\u0100-\uffff]/;

/** What one event's envelope takes in KV, from its tail (see {@link storedSize}). */
export interface StoredSize {
  /** Characters in a page, or (when `large`) the UTF-8 bytes it is stored as alone. */
  readonly units: number;
  /** Stored alone as UTF-8 bytes: too long for a page. */
  readonly large: boolean;
  /** Holds a character beyond Latin-1: a page holding it keeps two bytes per character. */
  readonly wide: boolean;
}

/**
 * What an event's envelope will take in KV, from its tail ({@link envelopeTail}), as
 * {@link appendEvents} lays it out: a page keeps one byte per character, or two when a text
 * in it goes beyond Latin-1 (V8's string forms); an event too long for a page is stored alone
 * as UTF-8.
 *
 * @example
 * ```ts
 * storedSize('"data":"abc"}'); // { units: 43, large: false, wide: false }
 * storedSize('"data":"漢"}').wide; // true
 * ```
 */
export function storedSize(tail: string): StoredSize {
  const chars = tail.length + HEAD_CHARS;
  const wide = WIDE_CHAR.test(tail);
  if (chars <= PAGE_CHARS) return { units: chars, large: false, wide };
  return { units: utf8Bytes(tail) + HEAD_CHARS, large: true, wide };
}

/**
 * Adds up what a run of events committed together takes in KV ({@link storedSize} of each):
 * one text beyond Latin-1 makes its page two bytes per character, so the pages count double
 * once any event is wide.
 *
 * @example
 * ```ts
 * const total = new StoredBytes();
 * for (const size of sizes) {
 *   if (total.bytes > 0 && total.with(size) > 700_000) break;
 *   total.add(size);
 * }
 * ```
 */
export class StoredBytes {
  #pageChars = 0;
  #wide = false;
  #large = 0;

  /** Bytes of the events added so far. */
  get bytes(): number {
    return this.#large + this.#pageChars * (this.#wide ? 2 : 1);
  }

  /** Bytes with `size` added, without adding it. */
  with(size: StoredSize): number {
    if (size.large) return this.bytes + size.units;
    return this.#large + (this.#pageChars + size.units) * (this.#wide || size.wide ? 2 : 1);
  }

  /** Counts `size` in. */
  add(size: StoredSize): void {
    if (size.large) this.#large += size.units;
    else this.#pageChars += size.units;
    this.#wide ||= size.wide && !size.large;
  }
}

/**
 * Reads the session's head, checked at commit like any read: `lastEventId` 0 for an id that
 * never had an event (PROTOCOL.md section 4). The head survives deletion, so a session created
 * again under the same id continues its eventIds.
 *
 * @example
 * ```ts
 * const { lastEventId } = await transact(kv, (tx) => readHead(tx, "ses_1"));
 * ```
 */
export async function readHead(tx: Tx, sessionId: string): Promise<HeadRecord> {
  return (await tx.get<HeadRecord>(keys.head(sessionId))) ?? { lastEventId: 0, lastEventAt: 0 };
}

/**
 * Rewrites the head unchanged, so viewers watching it on every instance wake up. A deletion
 * uses it: it stores no event, yet open viewers must notice it and close.
 *
 * @example
 * ```ts
 * await touchHead(tx, sessionId); // in the commit that writes the tombstone
 * ```
 */
export async function touchHead(tx: Tx, sessionId: string): Promise<void> {
  tx.set(keys.head(sessionId), { ...(await readHead(tx, sessionId)) });
}

/**
 * Appends events in order inside a transaction: consecutive eventIds after the head, packed
 * into pages (a large event gets its own value, chunked beyond 60 KB), and the head, whose
 * `lastEventAt` becomes `now` (the session TTL counts from it). The head is a checked read,
 * so two commits to one session can never take the same eventIds (PROTOCOL.md section 3:
 * the events of one commit have consecutive eventIds). Returns what was stored.
 *
 * @example
 * ```ts
 * const stored = await transact(kv, (tx) => appendEvents(tx, "ses_1", events, Date.now()));
 * stored[0].eventId; // the old lastEventId + 1
 * ```
 */
export async function appendEvents(
  tx: Tx,
  sessionId: string,
  events: readonly NewEvent[],
  now: number,
): Promise<StoredEvent[]> {
  if (events.length === 0) return [];
  const head = await readHead(tx, sessionId);
  const firstId = head.lastEventId + 1;
  const jsons = events.map((event, i) =>
    withId(firstId + i, event.tail ?? envelopeTail(sessionId, event))
  );
  const texts = writePages(tx, sessionId, firstId, jsons);
  const stored = events.map((event, i): StoredEvent => ({
    eventId: firstId + i,
    envelope: {
      eventId: firstId + i,
      executionId: event.executionId,
      sessionId,
      streamEventType: event.streamEventType,
      timestamp: event.timestamp,
      data: event.data ?? null,
    },
    json: texts[i],
    body: texts[i],
    size: texts[i].length,
  }));
  tx.set(
    keys.head(sessionId),
    {
      lastEventId: head.lastEventId + events.length,
      lastEventAt: now,
    } satisfies HeadRecord,
  );
  return stored;
}

/**
 * Writes the envelope texts of consecutive events (from `firstId` on) as pages keyed by
 * their first eventId. Returns each event's text as stored: a slice of its page, which
 * shares the page's characters (the text built per event is a concatenation that would
 * otherwise be copied again when it is first sent).
 */
function writePages(tx: Tx, sessionId: string, firstId: number, jsons: string[]): string[] {
  const texts: string[] = new Array(jsons.length);
  let from = 0;
  let chars = 0;
  const flush = (to: number) => {
    if (to > from) {
      const page = jsons.slice(from, to).join("\n");
      tx.set(keys.event(sessionId, firstId + from), page);
      for (let i = from, at = 0; i < to; at += jsons[i].length + 1, i++) {
        texts[i] = page.slice(at, at + jsons[i].length);
      }
    }
    from = to;
    chars = 0;
  };
  jsons.forEach((json, i) => {
    if (json.length > PAGE_CHARS) {
      flush(i);
      writeLarge(tx, sessionId, firstId + i, json);
      texts[i] = json;
      from = i + 1;
      return;
    }
    if (chars + json.length + 1 > PAGE_CHARS) flush(i);
    chars += json.length + 1;
  });
  flush(jsons.length);
  return texts;
}

/** An event too large for a page: its UTF-8 bytes, split into chunks beyond one value. */
function writeLarge(tx: Tx, sessionId: string, eventId: number, json: string): void {
  const bytes = encoder.encode(json);
  if (bytes.length <= CHUNK_BYTES) {
    tx.set(keys.event(sessionId, eventId), bytes);
    return;
  }
  const count = Math.ceil(bytes.length / CHUNK_BYTES);
  for (let i = 0; i < count; i++) {
    tx.set(
      keys.eventChunk(sessionId, eventId, i),
      bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
    );
  }
  tx.set(keys.event(sessionId, eventId), count);
}

/** Options of {@link readEvents}. */
export interface ReadEventsOptions {
  /** Return events with eventId > after. */
  after: number;
  /** At most this many events scanned. */
  limit: number;
  /** Last eventId to scan (inclusive). Default: no bound. */
  upTo?: number;
  /**
   * Stop once the events read hold this much envelope JSON (see {@link jsonSize}; at least
   * one event is always returned, so a read may overshoot by one event). Default: no bound.
   */
  maxBytes?: number;
}

/**
 * What a byte bound counts of `events` (see {@link StoredEvent.size}): characters of text
 * events plus bytes of large ones, an estimate of the memory a reader holds for them.
 *
 * @example
 * ```ts
 * lease.hold(jsonSize(page.events)); // the read budget holds what the page keeps in memory
 * ```
 */
export function jsonSize(events: readonly StoredEvent[]): number {
  let size = 0;
  for (const event of events) size += event.size;
  return size;
}

/**
 * Reads stored events in eventId order, unpacking pages and reassembling chunked events.
 *
 * @example
 * ```ts
 * const page = await readEvents(kv, "ses_1", { after: 0, limit: 100 });
 * ```
 */
export async function readEvents(
  kv: Deno.Kv,
  sessionId: string,
  options: ReadEventsOptions,
): Promise<StoredEvent[]> {
  const { after, limit, upTo = Number.MAX_SAFE_INTEGER, maxBytes = Infinity } = options;
  if (upTo <= after || limit <= 0) return [];
  // The page holding eventId after+1 may start before it: the last page key ≤ after+1.
  const [covering] = await Array.fromAsync(kv.list(
    { start: keys.event(sessionId, 0), end: keys.event(sessionId, after + 2) },
    { reverse: true, limit: 1 },
  ));
  const from = covering ? covering.key[3] as number : after + 1;
  const out: StoredEvent[] = [];
  let bytes = 0;
  const full = () => out.length >= limit || bytes >= maxBytes;
  // A listed value is a page of at most PAGE_CHARS, a large event's first chunk or its count:
  // fetch no more of them ahead than the byte bound can use.
  const batchSize = Math.min(
    Math.max(Math.min(limit, Math.ceil(maxBytes / PAGE_CHARS) + 1), 2),
    500,
  );
  const iter = kv.list<StoredValue>(
    { start: keys.event(sessionId, from), end: keys.event(sessionId, upTo + 1) },
    { batchSize },
  );
  for await (const entry of iter) {
    for (
      const [eventId, text] of await unpack(kv, sessionId, entry.key[3] as number, entry.value)
    ) {
      if (eventId <= after) continue;
      if (eventId > upTo || full()) return out;
      const event = typeof text === "string" ? new TextEvent(text) : new LargeEvent(text);
      out.push(event);
      bytes += event.size;
    }
    if (full()) break;
  }
  return out;
}

/**
 * A stored event read back. Readers mostly need the eventId (cursors) and then send the JSON
 * as it is, so the eventId is read from the JSON's start and the envelope is parsed only when
 * used (filters, callers that look inside); its `data` only when that is used.
 */
abstract class ReadBackEvent implements StoredEvent {
  #eventId?: number;
  #envelope?: Envelope;

  get eventId(): number {
    return this.#eventId ??= leadingEventId(this.head) ?? this.envelope.eventId;
  }

  get envelope(): Envelope {
    return this.#envelope ??= envelopeOf(this.head, () => this.json);
  }

  /** The start of the JSON, which holds every envelope field but `data`. */
  protected abstract get head(): string;
  abstract get json(): string;
  abstract get body(): string | Uint8Array;
  abstract get size(): number;
}

/** An event of a page: its JSON text. */
class TextEvent extends ReadBackEvent {
  constructor(readonly json: string) {
    super();
  }

  protected get head(): string {
    return this.json;
  }

  get body(): string {
    return this.json;
  }

  get size(): number {
    return this.json.length;
  }
}

/** Bytes of a large event decoded to find its envelope's head (ids and type are short). */
const HEAD_BYTES = 4096;

/**
 * A large event: byte streams write its stored bytes, its text is decoded only when `json` is
 * used, and the head comes from the first bytes.
 */
class LargeEvent extends ReadBackEvent {
  readonly #large: LargeEventText;
  readonly #head: string;

  constructor(large: LargeEventText) {
    super();
    this.#large = large;
    // A cut code point at the end only turns into U+FFFD, after the head.
    this.#head = decoder.decode(large.bytes.subarray(0, HEAD_BYTES));
  }

  protected get head(): string {
    return this.#head;
  }

  get json(): string {
    return this.#large.text;
  }

  get body(): Uint8Array {
    return this.#large.bytes;
  }

  get size(): number {
    return this.#large.bytes.length;
  }
}

const EVENT_ID_PREFIX = '{"eventId":';

/** The eventId at the start of an envelope's JSON as this module writes it, if it is there. */
function leadingEventId(head: string): number | undefined {
  if (!head.startsWith(EVENT_ID_PREFIX)) return undefined;
  let id = 0;
  let i = EVENT_ID_PREFIX.length;
  for (; i < head.length; i++) {
    const digit = head.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) break;
    id = id * 10 + digit;
  }
  return i > EVENT_ID_PREFIX.length && head[i] === "," ? id : undefined;
}

/** The fields before `data` in the envelope JSON this module writes (see {@link envelopeTail}). */
const ENVELOPE_HEAD =
  /^\{"eventId":(\d+),"executionId":"([^"\\]*)","sessionId":"([^"\\]*)","streamEventType":"([^"\\]*)","timestamp":"([^"\\]*)","data":/;

/** The envelope from the head of its JSON; the whole `json()` is parsed when `data` is used. */
function envelopeOf(head: string, json: () => string): Envelope {
  const fields = ENVELOPE_HEAD.exec(head);
  if (!fields) return JSON.parse(json());
  let data: unknown;
  let parsed = false;
  return {
    eventId: Number(fields[1]),
    executionId: fields[2],
    sessionId: fields[3],
    streamEventType: fields[4],
    timestamp: fields[5],
    get data() {
      if (!parsed) {
        data = (JSON.parse(json()) as Envelope).data;
        parsed = true;
      }
      return data;
    },
  };
}

type StoredValue = string | Uint8Array | number;

/** The events of one stored value: a page's texts, one large event, or a chunked one. */
async function unpack(
  kv: Deno.Kv,
  sessionId: string,
  firstId: number,
  value: StoredValue,
): Promise<[number, string | LargeEventText][]> {
  if (typeof value === "string") return value.split("\n").map((json, i) => [firstId + i, json]);
  if (typeof value === "number") {
    const large = await largeEventCache(kv).get(
      sessionId,
      firstId,
      () => readChunks(kv, sessionId, firstId, value),
    );
    return [[firstId, large]];
  }
  return [[firstId, new LargeEventText(value)]];
}

async function readChunks(
  kv: Deno.Kv,
  sessionId: string,
  eventId: number,
  count: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const entry of kv.list<Uint8Array>({ prefix: keys.eventChunks(sessionId, eventId) })) {
    parts.push(entry.value);
  }
  if (parts.length !== count) throw new Error(`event ${eventId} of ${sessionId} is incomplete`);
  return concatBytes(parts);
}
