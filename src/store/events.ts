/**
 * The session event log: eventIds 1, 2, 3… per session, never reused; each envelope stored
 * as its JSON text (so viewers send it without re-serializing): a string when small, UTF-8
 * bytes when larger, split into chunk entries when it exceeds what one KV value holds.
 *
 * @module
 */
import type { Envelope } from "../protocol.ts";
import { keys } from "./keys.ts";
import type { HeadRecord } from "./records.ts";
import type { Tx } from "./transact.ts";

/** Bytes per stored value; KV values hold at most 64 KiB. */
export const CHUNK_BYTES = 60_000;

/** An event before it has an eventId. */
export interface NewEvent {
  executionId: string;
  streamEventType: string;
  timestamp: string;
  data: unknown;
}

/** A stored event: the envelope and its JSON text as sent to viewers. */
export interface StoredEvent {
  envelope: Envelope;
  json: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Serializes an envelope with the contract's key order. */
export function envelopeJson(envelope: Envelope): string {
  const { eventId, executionId, sessionId, streamEventType, timestamp, data } = envelope;
  return JSON.stringify({ eventId, executionId, sessionId, streamEventType, timestamp, data });
}

/** Reads the session's head (`lastEventId` 0 for a new id). */
export async function readHead(tx: Tx, sessionId: string): Promise<HeadRecord> {
  return (await tx.get<HeadRecord>(keys.head(sessionId))) ?? { lastEventId: 0, lastEventAt: 0 };
}

/** Rewrites the head unchanged, so viewers watching it on every instance wake up. */
export async function touchHead(tx: Tx, sessionId: string): Promise<void> {
  tx.set(keys.head(sessionId), { ...(await readHead(tx, sessionId)) });
}

/** Bytes the events will take in a commit (for batching under KV's per-commit limits). */
export function storedSize(json: string): number {
  return encoder.encode(json).length;
}

/**
 * Appends events in order inside a transaction: consecutive eventIds after the head, one
 * write per event (plus chunks), and the head. Returns what was stored.
 */
export async function appendEvents(
  tx: Tx,
  sessionId: string,
  events: readonly NewEvent[],
  now: number,
): Promise<StoredEvent[]> {
  if (events.length === 0) return [];
  const head = await readHead(tx, sessionId);
  const stored = events.map((event, i): StoredEvent => {
    const envelope: Envelope = {
      eventId: head.lastEventId + 1 + i,
      executionId: event.executionId,
      sessionId,
      streamEventType: event.streamEventType,
      timestamp: event.timestamp,
      data: event.data ?? null,
    };
    return { envelope, json: envelopeJson(envelope) };
  });
  for (const { envelope, json } of stored) writeEvent(tx, sessionId, envelope.eventId, json);
  tx.set(
    keys.head(sessionId),
    {
      lastEventId: head.lastEventId + events.length,
      lastEventAt: now,
    } satisfies HeadRecord,
  );
  return stored;
}

function writeEvent(tx: Tx, sessionId: string, eventId: number, json: string): void {
  // Most events are small: stored as the string itself (no encode now, no decode on read).
  // KV may keep a string as UTF-16, so only strings of up to half a chunk qualify.
  if (json.length * 2 <= CHUNK_BYTES) {
    tx.set(keys.event(sessionId, eventId), json);
    return;
  }
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
}

/**
 * Reads stored events in eventId order, reassembling chunked ones.
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
  const { after, limit, upTo } = options;
  if (upTo !== undefined && upTo <= after) return [];
  const end = upTo === undefined
    ? [...keys.events(sessionId), Number.MAX_SAFE_INTEGER]
    : keys.event(sessionId, upTo + 1);
  const out: StoredEvent[] = [];
  const iter = kv.list<string | Uint8Array | number>(
    { start: keys.event(sessionId, after + 1), end },
    { limit, batchSize: Math.min(limit, 500) },
  );
  for await (const entry of iter) {
    const value = entry.value;
    const json = typeof value === "string"
      ? value
      : typeof value === "number"
      ? await readChunks(kv, sessionId, entry.key[3] as number, value)
      : decoder.decode(value);
    out.push({ envelope: JSON.parse(json), json });
  }
  return out;
}

async function readChunks(
  kv: Deno.Kv,
  sessionId: string,
  eventId: number,
  count: number,
): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const entry of kv.list<Uint8Array>({ prefix: keys.eventChunks(sessionId, eventId) })) {
    parts.push(entry.value);
  }
  if (parts.length !== count) throw new Error(`event ${eventId} of ${sessionId} is incomplete`);
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return decoder.decode(bytes);
}
