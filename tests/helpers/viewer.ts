/**
 * Viewer clients for tests (PROTOCOL.md 6): a WebSocket viewer and an SSE viewer that collect
 * envelopes (and control messages, comments and the close), plus a viewer that completes
 * the WebSocket handshake and then never reads, to test slow-viewer handling.
 *
 * @module
 */
import type { Envelope } from "./ingest_client.ts";
import { API_KEY } from "./server.ts";
import { rawUpgrade } from "./ingest_client.ts";

/** What every viewer client offers. */
export interface Viewer {
  /** Envelopes received, in order. */
  readonly events: Envelope[];
  /** Waits until `check(events)` holds. */
  until(check: (events: Envelope[]) => boolean, what?: string, timeoutMs?: number): Promise<void>;
  /** Stops reading and releases the connection. */
  close(): Promise<void>;
}

/** Credentials of a viewer: the api key (default), a ticket in the query, or none. */
export type ViewerAuth = { apiKey?: string } | { ticket: string } | { none: true };

function authorize(url: URL, auth: ViewerAuth): Record<string, string> {
  if ("ticket" in auth) {
    url.searchParams.set("ticket", auth.ticket);
    return {};
  }
  if ("none" in auth) return {};
  return { authorization: `Bearer ${auth.apiKey ?? API_KEY}` };
}

class Collector {
  readonly events: Envelope[] = [];
  #waiters = new Set<() => void>();
  ended = false;

  wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  async until(
    check: (events: Envelope[]) => boolean,
    what = "events",
    timeoutMs = 10_000,
  ): Promise<void> {
    if (check(this.events)) return;
    if (this.ended) throw new Error(`viewer ended while waiting for ${what}`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        const ids = this.events.map((e) => e.eventId);
        reject(new Error(`timed out waiting for ${what}; have ${ids.length}: …${ids.slice(-5)}`));
      }, timeoutMs);
      const waiter = () => {
        if (!check(this.events) && !this.ended) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        if (check(this.events)) resolve();
        else reject(new Error(`viewer ended while waiting for ${what}`));
      };
      this.#waiters.add(waiter);
    });
  }
}

/**
 * A WebSocket viewer of `…/stream`.
 *
 * @example
 * ```ts
 * const viewer = await WsViewer.open(server.wsUrl, "s1", { after: "0" });
 * await viewer.until((events) => events.length === 3, "three events");
 * await viewer.close();
 * ```
 */
export class WsViewer implements Viewer {
  readonly #collector = new Collector();
  /** Control messages (`{"type":"error",…}`). */
  readonly controls: Record<string, unknown>[] = [];
  /** Resolves with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly socket: WebSocket) {
    this.closed = new Promise((resolve) => {
      socket.onclose = (ev) => {
        this.#collector.ended = true;
        this.#collector.wake();
        resolve({ code: ev.code, reason: ev.reason });
      };
    });
    socket.onerror = () => {};
    socket.onmessage = (ev) => {
      const message = JSON.parse(ev.data as string);
      if ("eventId" in message) this.#collector.events.push(message);
      else this.controls.push(message);
      this.#collector.wake();
    };
  }

  /** Opens `ws://…/v1/sessions/<sid>/stream?<query>`. Resolves once the socket is open. */
  static async open(
    wsBase: string,
    sessionId: string,
    query: Record<string, string> = {},
    auth: ViewerAuth = {},
  ): Promise<WsViewer> {
    const url = new URL(`${wsBase}/v1/sessions/${sessionId}/stream`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const socket = new WebSocket(url, { headers: authorize(url, auth) });
    const viewer = new WsViewer(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("close", () => reject(new Error("closed before open")), {
        once: true,
      });
    });
    return viewer;
  }

  get events(): Envelope[] {
    return this.#collector.events;
  }

  until(check: (events: Envelope[]) => boolean, what?: string, timeoutMs?: number) {
    return this.#collector.until(check, what, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(1000);
    await this.closed;
  }
}

/**
 * An SSE viewer of `GET …/events` with `Accept: text/event-stream`.
 *
 * @example
 * ```ts
 * const viewer = await SseViewer.open(server.url, "s1", {}, { lastEventId: "2" });
 * await viewer.until((events) => events.length === 5);
 * await viewer.close();
 * ```
 */
export class SseViewer implements Viewer {
  readonly #collector = new Collector();
  /** The `id:` of every event, as sent. */
  readonly ids: string[] = [];
  /** Comment lines (without the leading colon), e.g. ` keep-alive`. */
  readonly comments: string[] = [];
  /** Every field name seen (to check that no `event:` line is sent). */
  readonly fields = new Set<string>();
  /** Settles when the response body ends. */
  readonly done: Promise<void>;
  readonly #abort = new AbortController();

  private constructor(readonly response: Response) {
    this.done = this.#read().finally(() => {
      this.#collector.ended = true;
      this.#collector.wake();
    });
  }

  /**
   * Opens the stream; resolves with the viewer once the response headers arrived, or rejects
   * with {@link SseRefused} (status and body) when the status is not 200.
   */
  static async open(
    baseUrl: string,
    sessionId: string,
    query: Record<string, string> = {},
    options: { auth?: ViewerAuth; lastEventId?: string } = {},
  ): Promise<SseViewer> {
    const url = new URL(`${baseUrl}/v1/sessions/${sessionId}/events`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const headers: Record<string, string> = {
      accept: "text/event-stream",
      ...authorize(url, options.auth ?? {}),
    };
    if (options.lastEventId !== undefined) headers["last-event-id"] = options.lastEventId;
    const abort = new AbortController();
    const response = await fetch(url, { headers, signal: abort.signal });
    if (response.status !== 200) {
      const text = await response.text();
      throw new SseRefused(response.status, text);
    }
    const viewer = new SseViewer(response);
    viewer.#abort.signal.addEventListener("abort", () => abort.abort());
    return viewer;
  }

  get events(): Envelope[] {
    return this.#collector.events;
  }

  until(check: (events: Envelope[]) => boolean, what?: string, timeoutMs?: number) {
    return this.#collector.until(check, what, timeoutMs);
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.done;
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    let id: string | undefined;
    let data: string[] = [];
    try {
      for await (const chunk of this.response.body!) {
        buffer += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          if (line === "") {
            if (data.length > 0) {
              if (id !== undefined) this.ids.push(id);
              this.#collector.events.push(JSON.parse(data.join("\n")));
              this.#collector.wake();
            }
            id = undefined;
            data = [];
          } else if (line.startsWith(":")) {
            this.comments.push(line.slice(1));
            this.#collector.wake();
          } else {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            this.fields.add(field);
            if (field === "id") id = value;
            else if (field === "data") data.push(value);
          }
        }
      }
    } catch {
      // aborted by close()
    }
  }
}

/**
 * A non-200 answer to an SSE request.
 *
 * @example
 * ```ts
 * try {
 *   await SseViewer.open(server.url, "no-such-session");
 * } catch (err) {
 *   if (err instanceof SseRefused) assert.equal(err.status, 404);
 * }
 * ```
 */
export class SseRefused extends Error {
  /** `status` and `body` of the refusal, both kept as fields. */
  constructor(readonly status: number, readonly body: string) {
    super(`SSE refused with ${status}: ${body}`);
  }
}

/**
 * A viewer that completes the WebSocket handshake and then never reads, so everything the
 * service sends piles up in its buffers.
 *
 * @example
 * ```ts
 * const host = { hostname: url.hostname, port: Number(url.port) };
 * const stalled = await stalledViewer(host, "/v1/sessions/s-slow/stream");
 * ```
 */
export function stalledViewer(
  host: { hostname: string; port: number },
  path: string,
): Promise<Deno.Conn> {
  return rawUpgrade(host, path, { authorization: `Bearer ${API_KEY}` });
}

/**
 * Reads a raw server-to-client WebSocket stream until its close frame and returns the close
 * code (or `null` when the connection ended without one). Data frames are skipped.
 *
 * @example
 * ```ts
 * const stalled = await stalledViewer(host, "/v1/sessions/s-slow/stream");
 * assert.equal(await readUntilClose(stalled), 1013); // the viewer buffer limit
 * ```
 */
export async function readUntilClose(conn: Deno.Conn): Promise<number | null> {
  let buffer = new Uint8Array(0);
  const chunk = new Uint8Array(1 << 16);
  const need = async (n: number): Promise<boolean> => {
    while (buffer.length < n) {
      const read = await conn.read(chunk).catch(() => null);
      if (read === null) return false;
      const next = new Uint8Array(buffer.length + read);
      next.set(buffer);
      next.set(chunk.subarray(0, read), buffer.length);
      buffer = next;
    }
    return true;
  };
  for (;;) {
    if (!(await need(2))) return null;
    const opcode = buffer[0] & 0x0f;
    let length = buffer[1] & 0x7f;
    let header = 2;
    if (length === 126) {
      if (!(await need(4))) return null;
      length = (buffer[2] << 8) | buffer[3];
      header = 4;
    } else if (length === 127) {
      if (!(await need(10))) return null;
      length = Number(new DataView(buffer.buffer).getBigUint64(2));
      header = 10;
    }
    if (!(await need(header + length))) return null;
    if (opcode === 0x8) return (buffer[header] << 8) | buffer[header + 1];
    buffer = buffer.slice(header + length);
  }
}
