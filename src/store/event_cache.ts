/**
 * One decoded copy of each recently read large event per KV handle, shared by every reader
 * of the instance. Large events (split into chunk entries) are what makes replay memory
 * grow: without sharing, ten viewers replaying one session each hold, and each make
 * garbage of, their own copy. Stored events never change (eventIds are never reused), so a
 * cached text is never stale. Concurrent reads of one event share a single KV read.
 *
 * @module
 */

/** Options of {@link LargeEventCache}. */
export interface LargeEventCacheOptions {
  /** Characters of event text kept. Default 32 MiB worth. */
  maxChars?: number;
}

/**
 * A least-recently-used cache of large event texts, bounded by their total size.
 *
 * @example
 * ```ts
 * const cache = new LargeEventCache();
 * const json = await cache.get("ses_1", 42, () => readChunks(kv, "ses_1", 42));
 * ```
 */
export class LargeEventCache {
  readonly #texts = new Map<string, string>();
  readonly #reading = new Map<string, Promise<string>>();
  readonly #maxChars: number;
  #chars = 0;

  constructor(options: LargeEventCacheOptions = {}) {
    this.#maxChars = options.maxChars ?? 32 * 1024 * 1024;
  }

  /** Characters held. */
  get chars(): number {
    return this.#chars;
  }

  /** The event's text: cached, being read by another reader, or read now with `read`. */
  get(sessionId: string, eventId: number, read: () => Promise<string>): Promise<string> {
    const key = `${sessionId}\u0000${eventId}`;
    const text = this.#texts.get(key);
    if (text !== undefined) {
      this.#texts.delete(key);
      this.#texts.set(key, text);
      return Promise.resolve(text);
    }
    let reading = this.#reading.get(key);
    if (!reading) {
      reading = read().then((json) => {
        this.#keep(key, json);
        return json;
      }).finally(() => this.#reading.delete(key));
      this.#reading.set(key, reading);
    }
    return reading;
  }

  #keep(key: string, text: string): void {
    if (text.length > this.#maxChars) return;
    this.#texts.set(key, text);
    this.#chars += text.length;
    for (const [oldKey, old] of this.#texts) {
      if (this.#chars <= this.#maxChars) break;
      this.#texts.delete(oldKey);
      this.#chars -= old.length;
    }
  }
}

const caches = new WeakMap<Deno.Kv, LargeEventCache>();

/** The cache shared by every reader of one KV handle. */
export function largeEventCache(kv: Deno.Kv): LargeEventCache {
  let cache = caches.get(kv);
  if (!cache) {
    cache = new LargeEventCache();
    caches.set(kv, cache);
  }
  return cache;
}
