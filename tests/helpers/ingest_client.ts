/**
 * A raw test client for the ingest WebSocket (PROTOCOL.md 5): it dials with a token and an
 * optional `X-Tether-Dial` header and records everything the service says (hello, acks,
 * errors, kills, pings) and the close code. It follows no protocol rule on its own (no
 * resend, no pong), so tests can send exactly the frames they mean to. Not the product
 * wrapper.
 *
 * @module
 */
import { type StartOptions, startServer, type TestServer } from "./server.ts";

/** The project's one polling helper, shared with the wrapper's tests. */
export { eventually } from "../../wrapper/test_util.ts";

/** A frame the service sent, parsed. */
export interface ServiceMessage {
  /** `hello`, `ack`, `kill`, `ping`, `input` or `error` (PROTOCOL.md 5.2). */
  type: string;
  /** The frame's other fields (`seq`, `lastSeq`, `code`…). */
  [key: string]: unknown;
}

/** How a socket ended. */
export interface CloseInfo {
  /** The close code (PROTOCOL.md 5.3). */
  code: number;
  /** The close reason. */
  reason: string;
}

/** Options of {@link IngestClient.dial}. */
export interface DialOptions {
  /** Sent as `Authorization: Bearer <token>`; omitted when undefined. */
  token?: string;
  /** The `X-Tether-Dial` header; omitted when undefined. */
  dial?: string;
}

/**
 * One raw ingest socket.
 *
 * @example
 * ```ts
 * const client = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
 * client.send({ streamEventType: "output", seq: 1, data: { text: "hi" } });
 * await client.ackOf(1);
 * await client.close();
 * ```
 */
export class IngestClient {
  /** Every message received, in order. */
  readonly messages: ServiceMessage[] = [];
  /** Resolves with the close code and reason. */
  readonly closed: Promise<CloseInfo>;
  #waiters = new Set<() => void>();
  #closeInfo?: CloseInfo;
  #acked = 0;

  private constructor(readonly socket: WebSocket) {
    this.closed = new Promise((resolve) => {
      socket.onclose = (ev) => {
        this.#closeInfo = { code: ev.code, reason: ev.reason };
        resolve(this.#closeInfo);
        this.#wake();
      };
    });
    socket.onerror = () => {};
    socket.onmessage = (ev) => {
      const message = JSON.parse(ev.data as string) as ServiceMessage;
      this.messages.push(message);
      // Kept as it arrives: benchmarks read it once per frame sent.
      if (message.type === "ack") this.#acked = Math.max(this.#acked, message.seq as number);
      this.#wake();
    };
  }

  /** Opens a socket and waits for it to be open (not for `hello`). */
  static async dial(url: string, options: DialOptions = {}): Promise<IngestClient> {
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.dial !== undefined) headers["x-tether-dial"] = options.dial;
    const socket = new WebSocket(url, { headers });
    const client = new IngestClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("close", () => reject(new Error("closed before open")), {
        once: true,
      });
    });
    return client;
  }

  /** Dials and waits for `hello`. */
  static async connect(url: string, options: DialOptions = {}): Promise<IngestClient> {
    const client = await IngestClient.dial(url, options);
    await client.next((m) => m.type === "hello");
    return client;
  }

  /** The close, once it happened. */
  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo;
  }

  /** Messages of one type. */
  of(type: string): ServiceMessage[] {
    return this.messages.filter((m) => m.type === type);
  }

  /** The highest acknowledged seq so far (0 if none). */
  get acked(): number {
    return this.#acked;
  }

  /** Sends a frame (objects are JSON-encoded, strings and bytes sent as they are). */
  send(frame: unknown): void {
    if (typeof frame === "string" || frame instanceof Uint8Array) this.socket.send(frame);
    else this.socket.send(JSON.stringify(frame));
  }

  /** Waits until `check` holds (re-checked on every message and on close). */
  async until(check: () => boolean, what = "condition", timeoutMs = 5000): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      const waiter = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve();
      };
      this.#waiters.add(waiter);
    });
  }

  /** Waits for the first message (received so far or later) matching `match`. */
  async next(match: (m: ServiceMessage) => boolean, timeoutMs = 5000): Promise<ServiceMessage> {
    await this.until(() => this.messages.some(match), "a matching message", timeoutMs);
    return this.messages.find(match)!;
  }

  /** Waits for an ack covering `seq`. */
  async ackOf(seq: number, timeoutMs = 5000): Promise<void> {
    await this.until(() => this.acked >= seq, `ack ${seq}`, timeoutMs);
  }

  /** Closes from the client side and waits for the close to complete. */
  async close(code = 1000, reason = ""): Promise<CloseInfo> {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(code, reason);
    return await this.closed;
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** An execution as its creation returns it. */
export interface Run {
  /** The session. */
  sessionId: string;
  /** The execution created. */
  executionId: string;
  /** Its ingest token. */
  ingestToken: string;
  /** Its ingest URL (`ws://…`). */
  ingestUrl: string;
  /** The session's viewer stream URL. */
  streamUrl: string;
  /** Whether it started at once (else it is queued). */
  active: boolean;
}

/**
 * Creates the session when needed and an execution in it.
 *
 * @example
 * ```ts
 * const run = await createRun(server, "s1", { graceMs: 600_000 });
 * const client = await connectRun(run);
 * ```
 */
export async function createRun(
  server: TestServer,
  sessionId: string,
  body: CreateExecutionBody = {},
): Promise<Run> {
  const exists = await server.client.getSession(sessionId).then(() => true, (err) => {
    if (err instanceof TetherError && err.status === 404) return false;
    throw err;
  });
  if (!exists) await server.client.createSession({ sessionId });
  return await server.client.createExecution(sessionId, body);
}

/**
 * Reads an execution through the REST API.
 *
 * @example
 * ```ts
 * const exec = await getExecution(server, run);
 * assert.equal(exec.status, "pending"); // no wrapper has connected yet
 * ```
 */
export function getExecution(
  server: TestServer,
  run: { sessionId: string; executionId: string },
): Promise<ExecutionView> {
  return server.client.getExecution(run.sessionId, run.executionId);
}

/**
 * Reads every stored envelope of a session through `GET …/events`, paging to the end.
 *
 * @example
 * ```ts
 * const events = await storedEvents(server, run.sessionId);
 * assert.deepEqual(eventIds(events), range(1, events.length));
 * ```
 */
export async function storedEvents(
  server: TestServer,
  sessionId: string,
): Promise<Envelope[]> {
  const out: Envelope[] = [];
  let after = 0;
  for (;;) {
    const page = await server.client.getEvents(sessionId, { after, limit: 1000 });
    out.push(...page.events);
    if (page.nextAfter >= page.lastEventId) return out;
    after = page.nextAfter;
  }
}

import type { CreateExecutionBody, Envelope, ExecutionView } from "../../src/protocol.ts";
import { TetherError } from "../../client/mod.ts";
export type { Envelope };

/** A grace long enough that no test run ever reaches it. */
export const LONG_GRACE = { graceMs: 600_000 };

/**
 * Dials a run's ingest URL with its token (and `X-Tether-Dial` when given).
 *
 * @example
 * ```ts
 * const client = await connectRun(run, "w/1"); // X-Tether-Dial: w/1
 * await pump(client, 1, 10);
 * ```
 */
export function connectRun(run: Run, dial?: string): Promise<IngestClient> {
  return IngestClient.connect(run.ingestUrl, { token: run.ingestToken, dial });
}

/** The eventIds of envelopes, in order. */
export const eventIds = (events: readonly Envelope[]): number[] => events.map((e) => e.eventId);

/**
 * The integers from `from` to `to`, inclusive (empty when `to < from`).
 *
 * @example
 * ```ts
 * range(2, 5); // [2, 3, 4, 5]
 * range(3, 1); // []
 * ```
 */
export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/**
 * Declares a test that runs `fn` against a fresh instance (closed afterwards). Deno's op and
 * resource sanitizers stay on: closing the instance must close everything it opened.
 *
 * @example
 * ```ts
 * serverTest("a request without an upgrade is answered 426", async (server) => {
 *   const run = await createRun(server, "s426");
 *   // …
 * });
 * ```
 */
export function serverTest(
  name: string,
  fn: (server: TestServer) => Promise<void>,
  options: StartOptions = {},
): void {
  Deno.test({
    name,
    async fn() {
      const server = await startServer(options);
      try {
        await fn(server);
      } finally {
        await server.close();
      }
    },
  });
}

/**
 * Completes a WebSocket handshake over plain TCP and returns the connection, positioned
 * right after the 101 answer. For what `WebSocket` cannot do: close with a reserved code
 * such as 1001, or never read.
 *
 * @example
 * ```ts
 * const conn = await rawUpgrade({ hostname: "127.0.0.1", port }, new URL(run.ingestUrl).pathname, {
 *   authorization: `Bearer ${run.ingestToken}`,
 * });
 * ```
 */
export async function rawUpgrade(
  host: { hostname: string; port: number },
  path: string,
  headers: Record<string, string> = {},
): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: host.hostname, port: host.port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${host.hostname}:${host.port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "",
    "",
  ];
  await conn.write(new TextEncoder().encode(lines.join("\r\n")));
  // Read the response head byte by byte, so no frame data is consumed with it.
  const head: number[] = [];
  const one = new Uint8Array(1);
  while (!(head.length >= 4 && head.slice(-4).join() === "13,10,13,10")) {
    if ((await conn.read(one)) === null) throw new Error("closed during handshake");
    head.push(one[0]);
  }
  const status = new TextDecoder().decode(new Uint8Array(head)).split(" ")[1];
  if (status !== "101") throw new Error(`handshake answered ${status}`);
  return conn;
}

/**
 * Writes a masked client close frame with `code` on a raw connection.
 *
 * @example
 * ```ts
 * const conn = await rawUpgrade(host, path, { authorization: `Bearer ${run.ingestToken}` });
 * await rawClose(conn, 1001);
 * ```
 */
export async function rawClose(conn: Deno.Conn, code: number): Promise<void> {
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const payload = [code >> 8, code & 0xff];
  const frame = new Uint8Array([0x88, 0x80 | 2, ...mask, ...payload.map((b, i) => b ^ mask[i])]);
  await conn.write(frame);
}

/**
 * Streams frames `from..to` (seq = n, data `{n}`) through a connected client, keeping at
 * most `window` unacknowledged, and waits for the last ack. `onSent` runs after each frame.
 *
 * @example
 * ```ts
 * const client = await connectRun(run);
 * await pump(client, 1, 1000, { window: 100 }); // seq 1…1000, all acknowledged
 * ```
 */
export async function pump(
  client: IngestClient,
  from: number,
  to: number,
  options: { window?: number; type?: string; onSent?: (n: number) => void | Promise<void> } = {},
): Promise<void> {
  const { window = 500, type = "output", onSent } = options;
  for (let n = from; n <= to; n++) {
    if (n - client.acked > window) await client.ackOf(n - window);
    client.send({ streamEventType: type, seq: n, data: { n } });
    await onSent?.(n);
  }
  await client.ackOf(to, 20_000);
}
