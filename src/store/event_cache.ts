/**
 * Large events as read back: their stored UTF-8 bytes, and one copy of each recently read
 * one per KV handle, shared by every reader of the instance.
 *
 * Large events are what makes replay memory grow. Byte streams (JSON pages, SSE, Durable
 * Streams) write a large event's stored bytes as they are, so no text is ever made of it for
 * them: a decoded text of hundreds of KB lands in V8's large-object space, which only a full
 * collection frees, and readers looping over a long log piled up such garbage faster than it
 * was collected. A WebSocket viewer needs text; the text is decoded once and kept with the
 * cached bytes, so ten viewers replaying one session neither hold nor make garbage of ten
 * copies. Stored events never change (eventIds are never reused), so nothing cached is ever
 * stale. Concurrent reads of one event share a single KV read.
 *
 * @module
 */

const decoder = new TextDecoder();

/**
 * A large event's stored UTF-8 bytes, and its text once a reader needed it.
 *
 * @example
 * ```ts
 * const event = new LargeEventText(new TextEncoder().encode('{"eventId":1}'));
 * console.log(event.bytes.length, event.text);
 * ```
 */
export class LargeEventText {
  /** The envelope JSON as stored: UTF-8. */
  readonly bytes: Uint8Array;
  #text?: string;
  readonly #onDecoded?: (chars: number) => void;

  /** `onDecoded` learns the length of the text when it is first decoded. */
  constructor(bytes: Uint8Array, onDecoded?: (chars: number) => void) {
    this.bytes = bytes;
    this.#onDecoded = onDecoded;
  }

  /** The envelope JSON, decoded on first use. */
  get text(): string {
    if (this.#text === undefined) {
      this.#text = decoder.decode(this.bytes);
      this.#onDecoded?.(this.#text.length);
    }
    return this.#text;
  }

  /** Bytes held: the stored bytes, and the text's characters once decoded. */
  get size(): number {
    return this.bytes.length + (this.#text?.length ?? 0);
  }
}

/** Options of {@link LargeEventCache}. */
export interface LargeEventCacheOptions {
  /** Bytes kept: stored bytes plus the texts decoded from them. Default 32 MiB. */
  maxBytes?: number;
}

/**
 * A least-recently-used cache of large events, bounded by the bytes they hold.
 *
 * @example
 * ```ts
 * const cache = new LargeEventCache();
 * const event = await cache.get("ses_1", 42, () => readChunks(kv, "ses_1", 42));
 * ```
 */
export class LargeEventCache {
  readonly #events = new Map<string, LargeEventText>();
  readonly #reading = new Map<string, Promise<LargeEventText>>();
  readonly #maxBytes: number;
  #bytes = 0;

  constructor(options: LargeEventCacheOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The event: cached, being read by another reader, or read now with `read` (its bytes). */
  get(
    sessionId: string,
    eventId: number,
    read: () => Promise<Uint8Array>,
  ): Promise<LargeEventText> {
    const key = `${sessionId}\u0000${eventId}`;
    const cached = this.#events.get(key);
    if (cached !== undefined) {
      this.#events.delete(key);
      this.#events.set(key, cached);
      return Promise.resolve(cached);
    }
    let reading = this.#reading.get(key);
    if (!reading) {
      reading = read().then((bytes) => {
        const event = new LargeEventText(bytes, (chars) => {
          if (this.#events.get(key) !== event) return;
          this.#bytes += chars;
          this.#evictOverBound();
        });
        if (bytes.length <= this.#maxBytes) {
          this.#events.set(key, event);
          this.#bytes += event.size;
          this.#evictOverBound();
        }
        return event;
      }).finally(() => this.#reading.delete(key));
      this.#reading.set(key, reading);
    }
    return reading;
  }

  /** Drops the least recently used events until the bound holds. */
  #evictOverBound(): void {
    for (const [key, event] of this.#events) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#events.delete(key);
      this.#bytes -= event.size;
    }
  }
}

const caches = new WeakMap<Deno.Kv, LargeEventCache>();

/**
 * The cache shared by every reader of one KV handle, made on first use. Keyed by the handle,
 * so separate KV handles (tests, several services in one process) never share entries.
 *
 * @example
 * ```ts
 * largeEventCache(kv) === largeEventCache(kv); // true: one cache per handle
 * largeEventCache(kv).bytes; // what the cached large events hold now
 * ```
 */
export function largeEventCache(kv: Deno.Kv): LargeEventCache {
  let cache = caches.get(kv);
  if (!cache) {
    cache = new LargeEventCache();
    caches.set(kv, cache);
  }
  return cache;
}
