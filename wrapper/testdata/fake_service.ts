/**
 * A scriptable stand-in for the service's ingest endpoint (PROTOCOL.md section 5), for the
 * wrapper's tests: a real `Deno.serve` WebSocket server on an ephemeral port, behind a small
 * TCP front that can cut connections abruptly (no close frame, as a dying network does).
 *
 * It stores frames by the contract's `seq` rules (resends acknowledged again and stored once,
 * `SEQ_GAP` once per expected seq, terminal frames answered with 4000), and every dial can be
 * scripted: accept with `hello` (and `kill`), stay silent, close with any code, refuse the
 * upgrade with an HTTP status, or drop the TCP connection.
 *
 * @example
 * ```ts
 * await using service = await startFakeService({ ack: "manual" });
 * service.plan({ kind: "close", code: 4009 }); // the first dial is queued
 * // … run a wrapper against service.url …
 * await service.waitFor(() => service.lastSeq >= 3);
 * service.ack();
 * ```
 *
 * @module
 */
import {
  CloseCode,
  ErrorCode,
  executionDoneReason,
  parseDialHeader,
  type TerminalStatus,
} from "../../src/protocol.ts";
import { terminalStatusOfFrame } from "../../src/frames.ts";

type Timer = ReturnType<typeof setTimeout>;

/** How the fake service answers one dial. */
export type DialPlan =
  /**
   * Upgrade and send `hello` (then `kill` when given, then the inputs above `deliveredInputId`).
   * `lastSeq` and `deliveredInputId` override the real ones.
   */
  | {
    kind: "accept";
    lastSeq?: number;
    deliveredInputId?: number;
    kill?: { signal?: "SIGTERM" | "SIGKILL"; reason?: string };
  }
  /** Upgrade and never say anything. */
  | { kind: "silent" }
  /** Upgrade, then close at once with this code. */
  | { kind: "close"; code: number; reason?: string }
  /** Refuse the upgrade with this HTTP status. */
  | { kind: "http"; status: number }
  /** Close the TCP connection before any HTTP is read. */
  | { kind: "drop" };

/** One dial as the fake service saw it. */
export interface DialRecord {
  /** The `X-Tether-Dial` header (`undefined` for a dropped dial, whose headers were never read). */
  dial?: string | null;
  /** The `Authorization` header. */
  authorization?: string | null;
  /** The request path and query. */
  path?: string;
  /** What the fake service did with it. */
  plan: DialPlan;
  /** `performance.now()` when it arrived. */
  at: number;
}

/** A frame the fake service stored. */
export interface StoredFrame {
  seq?: number;
  streamEventType: string;
  timestamp?: string;
  data?: unknown;
}

/** Options of {@link startFakeService}. */
export interface FakeServiceOptions {
  /** `hello.executionId`. Default `exc_01JTESTTESTTESTTESTTESTTEST`. */
  executionId?: string;
  /** `hello.maxInFlight`. Default 1000. */
  maxInFlight?: number;
  /** `hello.maxFrameBytes`. Default 524288. */
  maxFrameBytes?: number;
  /** `hello.graceMs`. Default 10000. */
  graceMs?: number;
  /** When acks go out: at once, after this many ms, or only on {@link FakeService.ack}. Default `"auto"`. */
  ack?: "auto" | "manual" | number;
  /** Answer a terminal frame with 4000 after acking it, as the service does. Default true. */
  closeOnTerminal?: boolean;
}

/**
 * One accepted WebSocket.
 *
 * @example
 * ```ts
 * const [connection] = service.connections;
 * connection.send({ type: "kill", signal: "SIGTERM", reason: "stop" });
 * ```
 */
export class FakeConnection {
  /** Every parsed frame received on this connection, liveness frames included. */
  readonly frames: Record<string, unknown>[] = [];
  /** Close code and reason as the server side saw them, once closed. */
  closedWith?: { code: number; reason: string };
  /** True after this connection took a terminal frame (later frames are ignored). */
  ended = false;
  readonly #socket: WebSocket;

  constructor(socket: WebSocket, readonly dial: DialRecord) {
    this.#socket = socket;
  }

  /** Sends a frame (an object is JSON-encoded, a string goes as is). */
  send(frame: unknown): void {
    if (this.#socket.readyState !== WebSocket.OPEN) return;
    this.#socket.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Closes with a close frame. */
  close(code: number, reason = ""): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.close(code, reason);
  }

  /** True while the socket is open. */
  get open(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }
}

/**
 * The running fake service; see {@link startFakeService}.
 *
 * @example
 * ```ts
 * await using service = await startFakeService({ ack: "manual" });
 * await service.waitFor(() => service.stored.length === 2);
 * ```
 */
export class FakeService {
  /** `http://127.0.0.1:<port>/v1/sessions/…/ingest` (the wrapper rewrites it to `ws:`). */
  readonly url: string;
  readonly dials: DialRecord[] = [];
  readonly connections: FakeConnection[] = [];
  /** Frames stored, in storage order. */
  readonly stored: StoredFrame[] = [];
  /** Highest stored `seq`. */
  lastSeq = 0;
  /** Terminal status once a terminal frame was stored (later dials get 4000). */
  status: TerminalStatus | undefined;
  /** How many times a frame with each seq arrived (resends included). */
  readonly arrivals = new Map<number, number>();
  /** Inputs given with {@link FakeService.input}, as `input` frames (PROTOCOL.md 12). */
  readonly inputs: Record<string, unknown>[] = [];
  /** Highest inputId a stored `input_delivered` frame confirmed. */
  deliveredInputId = 0;

  readonly #options: Required<FakeServiceOptions>;
  readonly #plans: DialPlan[] = [];
  #defaultPlan: DialPlan = { kind: "accept" };
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #front: Deno.TcpListener;
  readonly #pipes = new Set<{ client: Deno.Conn; backend?: Deno.Conn }>();
  readonly #changed = new EventTarget();
  #gapReported: number | undefined;
  #ackTimer: Timer | undefined;

  constructor(options: FakeServiceOptions) {
    this.#options = {
      executionId: "exc_01JTESTTESTTESTTESTTESTTEST",
      maxInFlight: 1000,
      maxFrameBytes: 524288,
      graceMs: 10_000,
      ack: "auto",
      closeOnTerminal: true,
      ...options,
    };
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => this.#upgrade(request),
    );
    this.#front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.url =
      `http://127.0.0.1:${this.#front.addr.port}/v1/sessions/ses_test/executions/${this.#options.executionId}/ingest`;
    this.#acceptLoop();
  }

  /** Scripts the next dials, in order; dials beyond them use the default plan. */
  plan(...plans: DialPlan[]): void {
    this.#plans.push(...plans);
  }

  /** Sets the plan for dials that have no scripted one. */
  setDefaultPlan(plan: DialPlan): void {
    this.#defaultPlan = plan;
  }

  /** Changes the ack mode (for example from `"manual"` back to `"auto"`). */
  setAckMode(ack: NonNullable<FakeServiceOptions["ack"]>): void {
    this.#options.ack = ack;
  }

  /** The newest connection that is still open. */
  get current(): FakeConnection | undefined {
    return this.connections.findLast((c) => c.open);
  }

  /** Sends `{"type":"ack","seq":lastSeq}` on the current connection. */
  ack(): void {
    this.current?.send({ type: "ack", seq: this.lastSeq });
  }

  /** Cuts every TCP connection without a close frame. */
  cut(): void {
    for (const pipe of this.#pipes) this.#closePipe(pipe);
  }

  /** Every received frame of every connection, in arrival order per connection. */
  get received(): Record<string, unknown>[] {
    return this.connections.flatMap((c) => c.frames);
  }

  /** Stored frames of one type. */
  storedOfType(type: string): StoredFrame[] {
    return this.stored.filter((f) => f.streamEventType === type);
  }

  /** Resolves once `predicate` holds (checked after every change), or rejects after the timeout. */
  async waitFor(predicate: () => boolean, options: { timeoutMs?: number; what?: string } = {}) {
    const { timeoutMs = 5000, what = predicate.toString() } = options;
    if (predicate()) return;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const check = () => predicate() && resolve();
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
    this.#changed.addEventListener("change", check);
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      this.#changed.removeEventListener("change", check);
    }
  }

  /** Accepts an input: sends it at once on an open connection, and after every `hello`. */
  input(input: { data?: unknown; endOfInput?: boolean }): number {
    const inputId = this.inputs.length + 1;
    const frame = { type: "input", inputId, ...input };
    this.inputs.push(frame);
    this.current?.send(frame);
    return inputId;
  }

  /** Stops the server and cuts every connection. */
  async close(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#front.close();
    this.cut();
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #notify(): void {
    this.#changed.dispatchEvent(new Event("change"));
  }

  #nextPlan(): DialPlan {
    if (this.#plans.length > 0) return this.#plans.shift()!;
    if (this.status && this.#defaultPlan.kind === "accept") {
      return {
        kind: "close",
        code: CloseCode.executionDone,
        reason: executionDoneReason(this.status),
      };
    }
    return this.#defaultPlan;
  }

  async #acceptLoop(): Promise<void> {
    for await (const client of this.#front) {
      const next = this.#plans[0] ?? this.#defaultPlan;
      if (next.kind === "drop") {
        if (this.#plans.length > 0) this.#plans.shift();
        this.dials.push({ plan: next, at: performance.now() });
        client.close();
        this.#notify();
        continue;
      }
      this.#pipe(client);
    }
  }

  async #pipe(client: Deno.Conn): Promise<void> {
    const pipe: { client: Deno.Conn; backend?: Deno.Conn } = { client };
    this.#pipes.add(pipe);
    try {
      pipe.backend = await Deno.connect({ hostname: "127.0.0.1", port: this.#server.addr.port });
      await Promise.all([
        client.readable.pipeTo(pipe.backend.writable),
        pipe.backend.readable.pipeTo(client.writable),
      ]);
    } catch {
      // A cut or a peer's reset ends the pipe; both sides are closed below.
    } finally {
      this.#closePipe(pipe);
    }
  }

  #closePipe(pipe: { client: Deno.Conn; backend?: Deno.Conn }): void {
    this.#pipes.delete(pipe);
    for (const conn of [pipe.client, pipe.backend]) {
      try {
        conn?.close();
      } catch {
        // Already closed.
      }
    }
  }

  #upgrade(request: Request): Response {
    const url = new URL(request.url);
    const record: DialRecord = {
      dial: request.headers.get("x-tether-dial"),
      authorization: request.headers.get("authorization"),
      path: url.pathname + url.search,
      plan: this.#nextPlan(),
      at: performance.now(),
    };
    this.dials.push(record);
    this.#notify();
    const { plan } = record;
    if (plan.kind === "http" || plan.kind === "drop") {
      return new Response("refused", { status: plan.kind === "http" ? plan.status : 503 });
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    const connection = new FakeConnection(socket, record);
    this.connections.push(connection);
    socket.onopen = () => {
      if (plan.kind === "close") {
        socket.close(plan.code, plan.reason ?? "");
      } else if (plan.kind === "accept") {
        // A higher lastSeq stands for frames stored before this test's wrapper existed.
        this.lastSeq = Math.max(this.lastSeq, plan.lastSeq ?? 0);
        connection.send({
          type: "hello",
          executionId: this.#options.executionId,
          lastSeq: plan.lastSeq ?? this.lastSeq,
          graceMs: this.#options.graceMs,
          maxFrameBytes: this.#options.maxFrameBytes,
          maxInFlight: this.#options.maxInFlight,
          deliveredInputId: plan.deliveredInputId ?? this.deliveredInputId,
        });
        if (plan.kill) connection.send({ type: "kill", signal: "SIGTERM", ...plan.kill });
        const delivered = plan.deliveredInputId ?? this.deliveredInputId;
        for (const input of this.inputs.slice(delivered)) connection.send(input);
      }
      this.#notify();
    };
    socket.onmessage = (event) => this.#receive(connection, event.data);
    socket.onclose = (event) => {
      connection.closedWith = { code: event.code, reason: event.reason };
      this.#notify();
    };
    socket.onerror = () => {};
    return response;
  }

  #receive(connection: FakeConnection, text: unknown): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(String(text));
    } catch {
      connection.send({ type: "error", code: ErrorCode.invalidFrame, message: "not JSON" });
      return;
    }
    connection.frames.push(frame);
    this.#notify();
    if (connection.ended || typeof frame.streamEventType !== "string") return;
    const type = frame.streamEventType;
    if (type === "heartbeat" || type === "pong") return;
    const seq = frame.seq;
    if (typeof seq === "number") {
      this.arrivals.set(seq, (this.arrivals.get(seq) ?? 0) + 1);
      if (seq <= this.lastSeq) return this.#scheduleAck(connection);
      if (seq > this.lastSeq + 1) {
        if (this.#gapReported !== this.lastSeq + 1) {
          this.#gapReported = this.lastSeq + 1;
          connection.send({
            type: "error",
            code: ErrorCode.seqGap,
            message: `expected seq ${this.lastSeq + 1}`,
            seq,
            expectedSeq: this.lastSeq + 1,
          });
        }
        return;
      }
      this.lastSeq = seq;
      this.#gapReported = undefined;
    }
    this.stored.push(frame as unknown as StoredFrame);
    const confirmed = (frame.data as { inputId?: unknown } | undefined)?.inputId;
    if (type === "input_delivered" && typeof confirmed === "number") {
      this.deliveredInputId = Math.max(this.deliveredInputId, confirmed);
    }
    this.#notify();
    const status = terminalStatusOfFrame(frame as unknown as StoredFrame);
    if (status) {
      this.status ??= status;
      connection.ended = true;
      connection.send({ type: "ack", seq: this.lastSeq });
      if (this.#options.closeOnTerminal) {
        connection.close(CloseCode.executionDone, executionDoneReason(this.status));
      }
      return;
    }
    if (typeof seq === "number") this.#scheduleAck(connection);
  }

  #scheduleAck(connection: FakeConnection): void {
    const { ack } = this.#options;
    if (ack === "auto") {
      connection.send({ type: "ack", seq: this.lastSeq });
    } else if (typeof ack === "number" && this.#ackTimer === undefined) {
      this.#ackTimer = setTimeout(() => {
        this.#ackTimer = undefined;
        connection.send({ type: "ack", seq: this.lastSeq });
      }, ack);
    }
  }
}

/**
 * Starts a {@link FakeService} on ephemeral ports.
 *
 * @example
 * ```ts
 * await using service = await startFakeService();
 * service.plan({ kind: "silent" }); // the next dial gets no hello
 * ```
 */
export function startFakeService(options: FakeServiceOptions = {}): Promise<FakeService> {
  return Promise.resolve(new FakeService(options));
}

/**
 * The parsed `X-Tether-Dial` headers of every dial that had one.
 *
 * @example
 * ```ts
 * dialNumbers(service).map((d) => d.n); // [1, 2, 3]
 * ```
 */
export function dialNumbers(service: FakeService): { wrapperId: string; n: number }[] {
  return service.dials.flatMap((d) => parseDialHeader(d.dial) ?? []);
}
