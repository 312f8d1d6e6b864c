/**
 * The wrapper's side of the ingest WebSocket (PROTOCOL.md sections 5 and 9.3) as a library:
 * {@link IngestConnection} dials with `Authorization: Bearer` and `X-Tether-Dial`, handles
 * `hello`, keeps every stored frame until it is acknowledged and resends it after a
 * reconnect, sends heartbeats, answers pings, surfaces `kill` and `input` frames (order and
 * dedupe inputs with `InputGate` of `./input.ts`), and reconnects with backoff until the
 * execution ends.
 *
 * @example
 * ```ts
 * import { IngestConnection } from "./wrapper/mod.ts";
 *
 * const conn = new IngestConnection({
 *   url: "https://tether.example/v1/sessions/s1/executions/exc_…/ingest",
 *   token: Deno.env.get("TETHER_INGEST_TOKEN")!,
 *   onEvent: (event) => event.type === "kill" && console.log("asked to stop"),
 * });
 * conn.connect();
 * conn.send({ streamEventType: "agent", data: { type: "text", text: "hello" } });
 * const end = await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
 * console.log(end); // { kind: "done", status: "completed", reason: "execution completed" }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { backoffDelay, delay as abortableDelay } from "../src/async.ts";
import { withoutUndefined } from "../src/objects.ts";
import {
  AckFrame,
  CloseCode,
  ErrorCode,
  EventType,
  HelloFrame,
  InputFrame,
  KillFrame,
  parseExecutionDoneReason,
  PingFrame,
  ServiceErrorFrame,
  type TerminalStatus,
} from "../src/protocol.ts";
import { terminalStatusOfFrame } from "../src/frames.ts";
import type { AgentInput } from "./input.ts";
import { Outbox, type OutgoingFrame } from "./outbox.ts";

export { frameBytes, type OutgoingFrame } from "./outbox.ts";

/** Options of {@link IngestConnection}; defaults are those of PROTOCOL.md section 9. */
export interface IngestConnectionOptions {
  /** Ingest URL; `http(s)://` is rewritten to `ws(s)://`. */
  url: string;
  /** The execution's ingest token, sent as `Authorization: Bearer <token>`. */
  token: string;
  /** The `wrapperId` of `X-Tether-Dial`. Default: a random UUID per connection object. */
  wrapperId?: string;
  /** Heartbeat interval while connected. Default 20000. */
  heartbeatMs?: number;
  /** Close with 4408 and reconnect after hearing nothing for this long. Default 45000. */
  silenceTimeoutMs?: number;
  /** First reconnect delay. Default 1000. */
  reconnectBaseMs?: number;
  /** Longest reconnect delay (before jitter), and the wait after a 4009. Default 5000. */
  reconnectMaxMs?: number;
  /** Failed dials in a row before giving up. Default 10. */
  reconnectAttempts?: number;
  /** Time a dial has to deliver its `hello`. Default 5000. */
  connectTimeoutMs?: number;
  /** Frames held back while they cannot be sent. Default 10000. */
  bufferLimit?: number;
  /** Serialized bytes held back while they cannot be sent. Default 67108864. */
  bufferBytes?: number;
  /** Own frame size limit; the smaller of this and every `hello.maxFrameBytes` applies. Default 524288. */
  maxFrameBytes?: number;
  /** After the terminal frame is acknowledged, wait this long for the service's 4000. Default 2000. */
  doneWaitMs?: number;
  /** Randomness for the backoff jitter. Default `Math.random`. */
  random?: () => number;
  /** The wait before a reconnect (injectable for tests). Default: an abortable `setTimeout`. */
  delay?: (ms: number, options: { signal: AbortSignal }) => Promise<void>;
  /** Clock for frame timestamps. Default `() => new Date()`. */
  now?: () => Date;
  /** Observer of everything that happens on the connection. */
  onEvent?: (event: IngestEvent) => void;
}

/** A `hello` as the wrapper reads it: every field but `type` may be missing (contract defaults). */
const ReceivedHello = HelloFrame.extend({
  executionId: z.string().optional(),
  lastSeq: z.int().min(0).default(0),
  graceMs: z.int().optional(),
  maxFrameBytes: z.int().min(1).optional(),
  maxInFlight: z.int().min(1).default(1000),
  deliveredInputId: z.int().min(0).default(0),
});

/** A `hello` as {@link IngestConnection} received it. */
export type ReceivedHello = z.infer<typeof ReceivedHello>;

/**
 * The service's frames, read leniently: a detail a service leaves out (or a signal this
 * wrapper does not know, which counts as SIGTERM) never makes the wrapper ignore a `hello`,
 * a `kill` or a `SEQ_GAP`.
 */
const ReceivedFrame = z.discriminatedUnion("type", [
  ReceivedHello,
  AckFrame,
  KillFrame.extend({
    signal: z.unknown().optional().transform((signal) =>
      signal === "SIGKILL" ? "SIGKILL" : "SIGTERM"
    ),
    reason: z.string().optional().catch(undefined),
  }),
  PingFrame,
  ServiceErrorFrame.extend({ message: z.string().optional() }),
  InputFrame,
]);

/** What {@link IngestConnectionOptions.onEvent} reports. */
export type IngestEvent =
  /** A dial starts; `dial` is the `n` of `X-Tether-Dial`. */
  | { type: "dialing"; dial: number }
  /** A `hello` arrived; `first` for the first one of this connection object. */
  | { type: "hello"; hello: ReceivedHello; first: boolean }
  /** The service asked to stop the agent. */
  | { type: "kill"; kill: KillFrame }
  /**
   * An input for the agent (PROTOCOL.md 12), as it came: possibly again after a reconnect,
   * possibly out of order. Pass it through an `InputGate` (`./input.ts`).
   */
  | { type: "input"; input: AgentInput }
  /** A connection (`wasOpen`) or a dial was lost. Codes 0 from Deno are reported as 1006. */
  | { type: "disconnected"; code: number; reason: string; wasOpen: boolean }
  /** Waiting before the next dial: `attempt` of the backoff schedule, or after a 4009. */
  | { type: "waiting"; delayMs: number; attempt: number; cause: "backoff" | "not_active" }
  /** Something odd that does not change the course (a garbage frame, a service error frame). */
  | { type: "warning"; message: string }
  /** The connection ended for good. */
  | { type: "ended"; end: IngestEnd };

/** How an {@link IngestConnection} ended. */
export type IngestEnd =
  /** The service closed with 4000; `status` is read from its reason when it parses. */
  | { kind: "done"; status: TerminalStatus | undefined; reason: string }
  /** The terminal frame was acknowledged, but no 4000 followed (socket dropped or timed out). */
  | { kind: "acknowledged"; status: TerminalStatus }
  /** {@link IngestConnection.finish}'s `ackTimeoutMs` passed before the acknowledgement. */
  | { kind: "unacknowledged"; status: TerminalStatus }
  /** Replaced by a newer connection (4001 on an open connection). */
  | { kind: "replaced" }
  /** The token was refused (4401 or 4403). */
  | { kind: "refused"; code: number }
  /** `reconnectAttempts` dials failed in a row. */
  | { kind: "gave_up"; failedDials: number }
  /** {@link IngestConnection.close} was called. */
  | { kind: "closed" };

/** Where the connection stands. */
export type ConnectionState = "idle" | "dialing" | "open" | "waiting" | "ended";

/** What `setTimeout` returns (a number in Deno, an object in its Node types). */
type Timer = ReturnType<typeof setTimeout>;

const HEARTBEAT_FRAME = JSON.stringify({ streamEventType: EventType.heartbeat, data: {} });
const PONG_FRAME = JSON.stringify({ streamEventType: EventType.pong, data: {} });

/**
 * `http(s)://` → `ws(s)://` (PROTOCOL.md 9, `--ingest-url`); `ws(s)://` is kept as it is, and
 * any other scheme throws a `TypeError`.
 *
 * @example
 * ```ts
 * toWebSocketUrl("https://tether.example/v1/sessions/s1/executions/e1/ingest");
 * // "wss://tether.example/v1/sessions/s1/executions/e1/ingest"
 * ```
 */
export function toWebSocketUrl(url: string): string {
  const parsed = new URL(url);
  const scheme = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" }[
    parsed.protocol
  ];
  if (!scheme) throw new TypeError(`unsupported ingest URL scheme: ${parsed.protocol}`);
  parsed.protocol = scheme;
  return parsed.href;
}

/**
 * A reconnecting ingest connection for one execution (PROTOCOL.md 9.3). Frames handed to
 * {@link IngestConnection.send} are numbered when first sent, kept until acknowledged and
 * resent after a reconnect; while disconnected they are held back up to the buffer limits.
 * The connection ends for good on 4000, 4001, 4401/4403, after `reconnectAttempts` failed
 * dials in a row, or on {@link IngestConnection.close}; {@link IngestConnection.closed}
 * tells how.
 *
 * @example
 * ```ts
 * const conn = new IngestConnection({ url: ingestUrl, token, onEvent: console.log });
 * conn.connect();
 * conn.send({ streamEventType: "output", data: { stream: "stdout", text: "building…" } });
 * const end = await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
 * ```
 */
export class IngestConnection {
  /** Resolves once, when the connection has ended for good. */
  readonly closed: Promise<IngestEnd>;
  readonly #url: string;
  readonly #token: string;
  readonly #wrapperId: string;
  readonly #options: Required<
    Omit<IngestConnectionOptions, "url" | "token" | "wrapperId" | "onEvent">
  >;
  readonly #onEvent: (event: IngestEvent) => void;
  readonly #outbox: Outbox;
  readonly #lifetime = new AbortController();
  #resolveClosed!: (end: IngestEnd) => void;
  #state: ConnectionState = "idle";
  /** Bumped whenever the current socket is given up; a socket's handlers check it. */
  #generation = 0;
  #socket: WebSocket | undefined;
  #dials = 0;
  #failedDials = 0;
  #attempt = 0;
  #hellos = 0;
  #maxFrameBytes: number;
  #lastHeardAt = 0;
  #heartbeatTimer: Timer | undefined;
  #silenceTimer: Timer | undefined;
  #connectTimer: Timer | undefined;
  #doneTimer: Timer | undefined;
  #ackTimer: Timer | undefined;
  #terminalStatus: TerminalStatus | undefined;

  /**
   * Checks the URL (a `TypeError` for a scheme other than http(s) or ws(s)) and fills in the
   * defaults; dials nothing until {@link IngestConnection.connect}.
   */
  constructor(options: IngestConnectionOptions) {
    this.#url = toWebSocketUrl(options.url);
    this.#token = options.token;
    this.#wrapperId = options.wrapperId ?? crypto.randomUUID();
    this.#onEvent = options.onEvent ?? (() => {});
    this.#options = {
      heartbeatMs: 20_000,
      silenceTimeoutMs: 45_000,
      reconnectBaseMs: 1000,
      reconnectMaxMs: 5000,
      reconnectAttempts: 10,
      connectTimeoutMs: 5000,
      bufferLimit: 10_000,
      bufferBytes: 64 * 1024 * 1024,
      maxFrameBytes: 524_288,
      doneWaitMs: 2000,
      random: Math.random,
      delay: abortableDelay,
      now: () => new Date(),
      ...withoutUndefined(options),
    };
    this.#maxFrameBytes = this.#options.maxFrameBytes;
    this.#outbox = new Outbox(this.#options);
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** Makes the first dial (at once). Calling it again does nothing. */
  connect(): void {
    if (this.#state === "idle") this.#dial();
  }

  /**
   * Queues a frame to be stored (a `complete`, `interrupted` or fatal `error` frame is
   * the execution's last). Returns false when it was dropped: the buffer is full (counted
   * in the next `wrapper_resumed`), a terminal frame was already queued, or the connection
   * has ended. Never blocks.
   */
  send(frame: OutgoingFrame): boolean {
    if (this.#state === "ended") return false;
    const result = this.#outbox.push(frame);
    this.#flush();
    return result === "queued";
  }

  /**
   * Queues the terminal frame and resolves when the connection has ended: on the service's
   * 4000 (`done`), or, once the frame is acknowledged, after `doneWaitMs` without a 4000 or
   * when the socket drops (`acknowledged`). Reconnects while the frame waits for its
   * acknowledgement; `ackTimeoutMs` bounds that wait (`unacknowledged`).
   */
  finish(frame: OutgoingFrame, options: { ackTimeoutMs?: number } = {}): Promise<IngestEnd> {
    const status = terminalStatusOfFrame(frame);
    if (!status) throw new TypeError(`not a terminal frame: ${frame.streamEventType}`);
    if (this.#state !== "ended" && !this.#outbox.hasTerminal) {
      this.#terminalStatus = status;
      if (options.ackTimeoutMs !== undefined) {
        this.#ackTimer = setTimeout(
          () => this.#end({ kind: "unacknowledged", status }),
          options.ackTimeoutMs,
        );
      }
      this.send(frame);
    }
    return this.closed;
  }

  /** Ends the connection for good; a dial still in progress closes itself unused. */
  close(): void {
    this.#end({ kind: "closed" });
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The frame limit in force: the smallest of the option and every `hello` seen. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** Frames sent and not yet acknowledged. */
  get unacknowledged(): number {
    return this.#outbox.unacknowledged;
  }

  /** Frames waiting to be sent for the first time. */
  get held(): number {
    return this.#outbox.held;
  }

  #dial(): void {
    const generation = ++this.#generation;
    const dial = ++this.#dials;
    this.#state = "dialing";
    this.#onEvent({ type: "dialing", dial });
    const socket = new WebSocket(this.#url, {
      headers: {
        authorization: `Bearer ${this.#token}`,
        "x-tether-dial": `${this.#wrapperId}/${dial}`,
      },
    });
    this.#socket = socket;
    const current = () => generation === this.#generation;
    socket.onmessage = (event) => {
      if (current()) this.#receive(event.data);
      else socket.close(); // a dial that completed after it was given up
    };
    socket.onclose = (event) => {
      if (current()) this.#lost(event.code || CloseCode.abnormal, event.reason);
    };
    socket.onerror = () => {}; // the close event that follows decides
    this.#connectTimer = setTimeout(() => {
      this.#abandonSocket(CloseCode.normal, "connect timeout");
      this.#lost(CloseCode.abnormal, "connect timeout");
    }, this.#options.connectTimeoutMs);
  }

  #receive(data: unknown): void {
    this.#lastHeardAt = performance.now();
    if (typeof data !== "string") {
      return this.#onEvent({ type: "warning", message: "ignored a binary frame" });
    }
    let parsed;
    try {
      parsed = ReceivedFrame.safeParse(JSON.parse(data));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) {
      return this.#onEvent({
        type: "warning",
        message: `ignored a bad frame: ${data.slice(0, 200)}`,
      });
    }
    const frame = parsed.data;
    switch (frame.type) {
      case "hello":
        return this.#hello(frame);
      case "ack":
        this.#outbox.ack(frame.seq);
        return this.#flush();
      case "kill":
        return this.#onEvent({ type: "kill", kill: frame });
      case "input": {
        const { type: _, ...input } = frame;
        return this.#onEvent({ type: "input", input });
      }
      case "ping":
        return this.#transmit(PONG_FRAME);
      case "error":
        if (frame.code === ErrorCode.seqGap && frame.expectedSeq !== undefined) {
          if (this.#outbox.rewind(frame.expectedSeq)) return this.#flush();
        }
        return this.#onEvent({
          type: "warning",
          message: `service error: ${JSON.stringify(frame)}`,
        });
    }
  }

  #hello(hello: ReceivedHello): void {
    if (this.#state !== "dialing") {
      return this.#onEvent({ type: "warning", message: "ignored a second hello" });
    }
    clearTimeout(this.#connectTimer);
    this.#state = "open";
    this.#failedDials = 0;
    this.#attempt = 0;
    this.#maxFrameBytes = Math.min(this.#maxFrameBytes, hello.maxFrameBytes ?? Infinity);
    this.#outbox.resume({ ...hello, maxFrameBytes: this.#maxFrameBytes });
    this.#heartbeatTimer = setInterval(
      () => this.#transmit(HEARTBEAT_FRAME),
      this.#options.heartbeatMs,
    );
    this.#watchSilence();
    this.#onEvent({ type: "hello", hello, first: ++this.#hellos === 1 });
    this.#flush();
  }

  /** Re-arms itself for the remaining time instead of being reset on every message. */
  #watchSilence(): void {
    const silentFor = performance.now() - this.#lastHeardAt;
    const remaining = this.#options.silenceTimeoutMs - silentFor;
    this.#silenceTimer = setTimeout(() => {
      if (performance.now() - this.#lastHeardAt < this.#options.silenceTimeoutMs) {
        return this.#watchSilence();
      }
      this.#abandonSocket(CloseCode.silence, "silence");
      this.#lost(CloseCode.silence, "silence");
    }, Math.max(0, remaining));
  }

  /** Sends whatever the outbox allows now, and notices an acknowledged terminal frame. */
  #flush(): void {
    if (this.#state !== "open") return;
    for (const text of this.#outbox.take()) this.#transmit(text);
    if (this.#outbox.terminalAcked && this.#doneTimer === undefined) {
      // Acknowledged: from now on only the 4000 or the done wait decide.
      clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
      const status = this.#terminalStatus!;
      this.#doneTimer = setTimeout(
        () => this.#end({ kind: "acknowledged", status }),
        this.#options.doneWaitMs,
      );
    }
  }

  #transmit(text: string): void {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(text);
  }

  /** Gives up the current socket: its late events are ignored from now on. */
  #abandonSocket(code: number, reason: string): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#generation++;
    try {
      socket?.close(code, reason);
    } catch {
      // A socket that is already closing.
    }
  }

  /** The current socket closed (or was given up): decide between ending and reconnecting. */
  #lost(code: number, reason: string): void {
    const wasOpen = this.#state === "open";
    this.#outbox.suspend();
    this.#socket = undefined;
    this.#generation++;
    this.#stopTimers();
    this.#onEvent({ type: "disconnected", code, reason, wasOpen });
    if (code === CloseCode.executionDone) {
      return this.#end({ kind: "done", status: parseExecutionDoneReason(reason), reason });
    }
    if (this.#outbox.terminalAcked) {
      return this.#end({ kind: "acknowledged", status: this.#terminalStatus! });
    }
    if (code === CloseCode.unauthorized || code === CloseCode.forbidden) {
      return this.#end({ kind: "refused", code });
    }
    if (code === CloseCode.replaced && wasOpen) return this.#end({ kind: "replaced" });
    if (code === CloseCode.notActiveYet) {
      return this.#wait(this.#options.reconnectMaxMs, "not_active");
    }
    // A 4001 before hello is a late, abandoned dial of ours: an ordinary failed attempt.
    if (!wasOpen && ++this.#failedDials >= this.#options.reconnectAttempts) {
      return this.#end({ kind: "gave_up", failedDials: this.#failedDials });
    }
    const { reconnectBaseMs: baseMs, reconnectMaxMs: maxMs, random } = this.#options;
    this.#wait(backoffDelay(++this.#attempt, { baseMs, maxMs, random }), "backoff");
  }

  #wait(delayMs: number, cause: "backoff" | "not_active"): void {
    this.#state = "waiting";
    this.#onEvent({ type: "waiting", delayMs, attempt: this.#attempt, cause });
    const generation = this.#generation;
    this.#options.delay(delayMs, { signal: this.#lifetime.signal }).then(
      () => generation === this.#generation && this.#state === "waiting" && this.#dial(),
      () => {}, // aborted: the connection ended
    );
  }

  #stopTimers(): void {
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#silenceTimer);
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#doneTimer);
    this.#doneTimer = undefined;
  }

  #end(end: IngestEnd): void {
    if (this.#state === "ended") return;
    this.#abandonSocket(CloseCode.normal, "");
    this.#state = "ended";
    this.#stopTimers();
    clearTimeout(this.#ackTimer);
    this.#lifetime.abort();
    this.#onEvent({ type: "ended", end });
    this.#resolveClosed(end);
  }
}
