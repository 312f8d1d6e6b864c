/**
 * Reading a Server-Sent Events stream for the wrapper's `--sse` mode (PROTOCOL.md 9.1):
 * a parser that follows the WHATWG event-stream rules, and {@link followSse}, which keeps
 * the stream open, re-opening it with backoff (and `Last-Event-ID`) when it drops.
 *
 * @module
 */
import { backoffDelay, delay as abortableDelay } from "../src/async.ts";

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, `undefined` when the event had none. */
  event: string | undefined;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The last `id:` seen on the stream, if any. */
  id: string | undefined;
}

/**
 * Parses an event stream: lines end with `\r\n`, `\n` or `\r`; a blank line dispatches;
 * `:` starts a comment; an event without data is not dispatched, and neither is an
 * unfinished event at the end of the stream.
 *
 * @example
 * ```ts
 * const body = ReadableStream.from([new TextEncoder().encode('event: x\ndata: {"a":1}\n\n')]);
 * for await (const event of parseSse(body)) console.log(event); // { event: "x", data: '{"a":1}', id: undefined }
 * ```
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  let buffer = "";
  let event: string | undefined;
  let data: string[] = [];
  let id: string | undefined;
  for await (const text of body.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    let start = 0;
    for (const match of buffer.matchAll(/\r\n|\r|\n/g)) {
      // A `\r` at the very end may be the first half of a `\r\n` split across chunks.
      if (match[0] === "\r" && match.index === buffer.length - 1) break;
      const line = buffer.slice(start, match.index);
      start = match.index + match[0].length;
      if (line === "") {
        if (data.length > 0) yield { event, data: data.join("\n"), id };
        event = undefined;
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && !value.includes("\0")) id = value;
    }
    buffer = buffer.slice(start);
  }
}

/** Options of {@link followSse}. */
export interface FollowSseOptions {
  /** Called for every event, in order. */
  onEvent: (event: SseEvent) => void;
  /** Ends the reading. */
  signal: AbortSignal;
  /** Reports a failed or ended stream before it is re-opened. Default: nothing. */
  onDrop?: (message: string) => void;
  /** First re-open delay. Default 1000. */
  reconnectBaseMs?: number;
  /** Longest re-open delay (before jitter). Default 5000. */
  reconnectMaxMs?: number;
  /** Randomness for the jitter. Default `Math.random`. */
  random?: () => number;
}

/**
 * Reads the event stream at `url` until `signal` aborts, re-opening it with backoff
 * whenever it fails or ends; the backoff starts over once a stream delivered an event.
 *
 * @example
 * ```ts
 * const ac = new AbortController();
 * await followSse("http://127.0.0.1:4096/event", { signal: ac.signal, onEvent: console.log });
 * ```
 */
export async function followSse(url: string, options: FollowSseOptions): Promise<void> {
  const { signal, onEvent, onDrop = () => {}, random } = options;
  const baseMs = options.reconnectBaseMs ?? 1000;
  const maxMs = options.reconnectMaxMs ?? 5000;
  let lastEventId: string | undefined;
  let attempt = 0;
  while (!signal.aborted) {
    try {
      const response = await fetch(url, {
        headers: {
          accept: "text/event-stream",
          ...(lastEventId === undefined ? {} : { "last-event-id": lastEventId }),
        },
        signal,
      });
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status}`);
      }
      for await (const event of parseSse(response.body)) {
        attempt = 0;
        lastEventId = event.id;
        onEvent(event);
      }
      onDrop("stream ended");
    } catch (error) {
      if (signal.aborted) return;
      onDrop(error instanceof Error ? error.message : String(error));
    }
    await abortableDelay(backoffDelay(++attempt, { baseMs, maxMs, random }), { signal })
      .catch(() => {});
  }
}
