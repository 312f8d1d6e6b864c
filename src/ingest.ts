/**
 * One admitted wrapper connection (PROTOCOL.md 5): parsing (the rules are `src/frames.ts`'s
 * classifier), seq/ack with resend dedupe and `SEQ_GAP`, group commit (frames that arrive
 * while a commit is in flight go into the next one; the instance's connections share KV
 * commits through `src/ingest_batcher.ts`), terminal frames, liveness, pings, the flood,
 * in-flight and pending-bytes limits (PROTOCOL.md 10), inputs sent after `hello`, and the
 * disconnect record when the socket closes.
 *
 * The connection never decides ownership itself: every commit checks in KV that it is
 * still the execution's current connection.
 *
 * @module
 */
import { MetricName, SocketRejection } from "./metrics.ts";
import {
  CloseCode,
  cutErrorText,
  ErrorCode,
  executionDoneReason,
  type ExecutionStatus,
  isTerminal,
} from "./protocol.ts";
import { classifyFrame, type FrameEnd, type FrameVerdict } from "./frames.ts";
import {
  type FrameCommit,
  type NotCurrent,
  type Outcome,
  type PreparedFrame,
  recordDisconnect,
} from "./lifecycle.ts";
import { FrameBatcher } from "./ingest_batcher.ts";
import { InputSender } from "./input_delivery.ts";
import { isoTime } from "./iso_time.ts";
import { Limiter } from "./limiter.ts";
import type { Runtime } from "./runtime.ts";
import type { ConnectionHandle } from "./hub.ts";
import {
  envelopeTail,
  KnownEntries,
  MAX_EVENT_BYTES,
  type NewEvent,
  StoredBytes,
  type StoredSize,
  storedSize,
} from "./store/mod.ts";

/**
 * A connection's own commit carries at most this many bytes of events as KV stores them (KV
 * allows 819,200 per commit, the records written beside them included).
 */
const MAX_BATCH_BYTES = 700_000;
/** …and at most this many events (KV allows 1,000 mutations per commit). */
const MAX_BATCH_EVENTS = 800;
/** A service close waits until the wrapper has sent nothing for this long… */
const CLOSE_QUIET_MS = 10;
/** …but never longer than this. */
const CLOSE_MAX_WAIT_MS = 1000;
/** Why a connection holding more than `maxPendingBytes` of frames is closed. */
const PENDING_BYTES_REASON = "too many bytes waiting to be stored";
/** Consecutive seconds over the frame rate that close the connection. */
const FLOOD_SECONDS = 3;

/** What admission established for this connection. */
export interface AdmittedConnection {
  sessionId: string;
  executionId: string;
  connectionId: string;
  lastSeq: number;
  graceMs: number;
  /** Debounce of liveness writes for this execution. */
  heartbeatWriteMs: number;
  killReason?: string;
  /** The execution's `deliveredInputId` at admission (PROTOCOL.md 12). */
  deliveredInputId: number;
  /**
   * What admission's commit left in the execution's records (see `KnownEntries`), so even the
   * first frame commit skips the reads. Default: empty.
   */
  known?: KnownEntries;
}

/**
 * A frame waiting for the connection's next commit, with its size, and its event. Classes,
 * not object literals, on purpose: the frames of a burst are all still queued when V8
 * collects its young heap, and V8 then allocates every later object of such a literal in
 * the old heap ("allocation-site pretenuring"), where the frames, and the event texts they
 * hold, stay until a full collection (`--trace-gc` showed the heap growing ~1 KB per frame
 * and young collections 4–5× slower). Class instances are not pretenured that way.
 */
class QueuedFrame implements PreparedFrame {
  constructor(
    readonly bytes: number,
    readonly seq?: number,
    readonly event?: NewEvent,
    readonly terminal?: FrameEnd,
    readonly deliveredInputId?: number,
    /** What its event takes in KV (a frame that stores nothing takes nothing). */
    readonly stored?: StoredSize,
  ) {}
}

/** The event of a queued frame (see {@link QueuedFrame} for why a class). */
class FrameEvent implements NewEvent {
  tail?: string;
  constructor(
    readonly executionId: string,
    readonly streamEventType: string,
    readonly timestamp: string,
    readonly data: unknown,
  ) {}
}

/** One shared-commit queue per instance (keyed by its lifecycle context). */
const batchers = new WeakMap<Runtime["ctx"], FrameBatcher>();

function batcherOf(rt: Runtime): FrameBatcher {
  let batcher = batchers.get(rt.ctx);
  if (!batcher) batchers.set(rt.ctx, batcher = new FrameBatcher(rt.ctx));
  return batcher;
}

/** Admissions an instance runs at once; the others wait their turn, oldest first. */
const ADMISSIONS_AT_ONCE = 16;
const admissionLimiters = new WeakMap<Runtime["ctx"], Limiter>();

/**
 * Runs an admission in the instance's turn order. In a reconnect storm (a restart, thousands
 * of wrappers at once) all admissions in flight together would all finish late, after every
 * wrapper's connect timeout, and each retry would add more; taking them a few at a time lets
 * the first finish in time. A dial whose socket closed while it waited (its wrapper gave up)
 * is skipped: `undefined`.
 *
 * @example
 * ```ts
 * const outcome = await inAdmissionTurn(rt, socket, () => admitConnection(rt.ctx, ...));
 * ```
 */
export function inAdmissionTurn<T>(
  rt: Runtime,
  socket: WebSocket,
  admit: () => Promise<T>,
): Promise<T | undefined> {
  let limiter = admissionLimiters.get(rt.ctx);
  if (!limiter) admissionLimiters.set(rt.ctx, limiter = new Limiter(ADMISSIONS_AT_ONCE));
  return limiter.run(() => socket.readyState === WebSocket.OPEN ? admit() : undefined);
}

/**
 * Frames a wrapper sends before its `hello` (a simple wrapper need not wait for it): kept
 * while its dial is admitted, then served in order by the connection. Beyond
 * `maxPendingBytes` of them none is kept, and the connection closes with 1008 once admitted,
 * as it does for frames waiting to be stored.
 *
 * @example
 * ```ts
 * const early = new EarlyFrames(socket, rt.config.maxPendingBytes);
 * // … admission …
 * new IngestConnection(rt, socket, admitted).start(early);
 * ```
 */
export class EarlyFrames {
  #frames: unknown[] = [];
  #bytes = 0;
  #overflowed = false;

  constructor(socket: WebSocket, maxBytes: number) {
    socket.onmessage = (ev) => {
      if (this.#overflowed) return;
      const data = ev.data as string | Blob | ArrayBuffer;
      this.#frames.push(data);
      this.#bytes += typeof data === "string"
        ? data.length
        : data instanceof Blob
        ? data.size
        : data.byteLength;
      if (this.#bytes > maxBytes) {
        this.#overflowed = true;
        this.#frames = [];
      }
    };
  }

  /** Whether more than `maxBytes` arrived (then nothing is kept). */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** The frames kept so far, oldest first (the socket's own handler takes the next ones). */
  take(): unknown[] {
    return this.#frames.splice(0);
  }
}

/**
 * Serves one admitted ingest socket until it closes: it sends `hello` (then `kill` and inputs
 * when due), commits the wrapper's frames in order, acknowledges them, enforces the limits,
 * and records the close.
 *
 * @example
 * ```ts
 * const connection = new IngestConnection(rt, socket, { ...admission, connectionId, known });
 * connection.start();
 * ```
 */
export class IngestConnection implements ConnectionHandle {
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  #state: "open" | "closing" | "done" = "open";
  /** Code and reason of a close the service started (recorded instead of what the socket reports). */
  #serviceClose?: { code: number; reason: string };
  #terminalSeen = false;
  #expectedSeq: number;
  #durableSeq: number;
  #gapReportedFor?: number;
  #batch: QueuedFrame[] = [];
  /** Bytes of frames received and not yet committed (PROTOCOL.md 10). */
  #pendingBytes = 0;
  #committing?: Promise<void>;
  /** What this connection's last commit left in its records: the next one skips the reads. */
  readonly #known: KnownEntries;
  #lastSentAt = Date.now();
  /** Admission has just written liveness, so the first write is due one debounce later. */
  #lastHeartbeatWrite = Date.now();
  #rate = { second: 0, count: 0, overStreak: 0 };
  #pingTimer?: ReturnType<typeof setTimeout>;
  #closeTimer?: ReturnType<typeof setTimeout>;
  #lastReceivedAt = 0;
  #release?: () => void;
  readonly #inputs: InputSender;

  constructor(
    private readonly rt: Runtime,
    private readonly socket: WebSocket,
    private readonly admitted: AdmittedConnection,
  ) {
    this.#known = admitted.known ?? new KnownEntries();
    this.#expectedSeq = admitted.lastSeq + 1;
    this.#durableSeq = admitted.lastSeq;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#inputs = new InputSender({
      kv: rt.kv,
      sessionId: admitted.sessionId,
      executionId: admitted.executionId,
      deliveredInputId: admitted.deliveredInputId,
      send: (frame) => this.#send(frame),
      onError: (err) => rt.log.warn("input delivery failed", { err: String(err) }),
    });
  }

  /**
   * Sends `hello` (then `kill` when an interrupt is pending, then inputs) and starts serving,
   * beginning with the frames that arrived before `hello`.
   */
  start(early?: EarlyFrames): void {
    const { executionId, lastSeq, graceMs, killReason, deliveredInputId } = this.admitted;
    this.#release = this.rt.hub.holdConnection(this.admitted.connectionId, this);
    this.rt.metrics.set(MetricName.ingestSockets, this.rt.hub.connectionCount);
    this.socket.onmessage = (ev) => this.#onMessage(ev.data);
    this.socket.onclose = (ev) => void this.#onClose(ev.code, ev.reason);
    this.socket.onerror = () => {};
    if (this.socket.readyState !== WebSocket.OPEN) {
      // Lost while being admitted: record it like any other loss.
      void this.#onClose(0, "");
      return;
    }
    this.#send({
      type: "hello",
      executionId,
      lastSeq,
      graceMs,
      maxFrameBytes: this.rt.config.maxFrameBytes,
      maxInFlight: this.rt.config.maxInFlight,
      deliveredInputId,
    });
    if (killReason !== undefined) this.kill(killReason);
    void this.#inputs.wake();
    this.#armPing();
    if (early?.overflowed) return this.#tooManyPendingBytes();
    for (const data of early?.take() ?? []) this.#onMessage(data);
  }

  /** Hub command: close with a service code (4000 done, 4001 replaced, 1012 restart). */
  close(code: number, reason: string): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    this.#serviceClose = { code, reason };
    this.#closeWhenQuiet(code, reason, Date.now() + CLOSE_MAX_WAIT_MS);
  }

  /** Hub command: ask the wrapper to stop its agent. */
  kill(reason: string): void {
    this.#send({ type: "kill", signal: "SIGTERM", reason: cutErrorText(reason) });
  }

  /**
   * Closing a Deno WebSocket while the peer's frames are still unread resets the TCP
   * connection, and the wrapper then sees 0 instead of our code. So the close frame goes
   * out once the wrapper has been quiet for a moment (or after a bounded wait).
   */
  #closeWhenQuiet(code: number, reason: string, giveUpAt: number): void {
    const now = Date.now();
    if (now - this.#lastReceivedAt < CLOSE_QUIET_MS && now < giveUpAt) {
      this.#closeTimer = setTimeout(
        () => this.#closeWhenQuiet(code, reason, giveUpAt),
        CLOSE_QUIET_MS,
      );
      return;
    }
    try {
      this.socket.close(code, reason);
    } catch {
      // the socket is already gone; onclose records it
    }
  }

  /**
   * One timer per connection (not a polling interval per socket), due once the connection
   * has been sent nothing for `pingMs` plus a quarter of it (at most 1 s): the ping goes out
   * when a poll every quarter would have sent it, never before the connection was quiet for
   * `pingMs`.
   */
  #armPing(): void {
    const { pingMs } = this.rt.config;
    const slack = Math.min(1000, Math.floor(pingMs / 4));
    const due = this.#lastSentAt + pingMs + slack - Date.now();
    this.#pingTimer = setTimeout(() => {
      if (Date.now() - this.#lastSentAt >= pingMs) this.#send({ type: "ping" });
      if (this.#state === "open") this.#armPing();
    }, Math.max(10, due));
  }

  /** Hub command: inputs were accepted; send the ones this connection has not sent. */
  deliverInputs(): void {
    void this.#inputs.wake();
  }

  /** Sends a frame; false when the socket is no longer open for it. */
  #send(message: unknown): boolean {
    if (this.#state !== "open" || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    this.#lastSentAt = Date.now();
    return true;
  }

  #reject(code: string, message: string, extra: { seq?: number; expectedSeq?: number } = {}) {
    this.rt.metrics.inc(MetricName.framesRejected, { code });
    this.#send({ type: "error", code, message, ...extra });
  }

  #onMessage(raw: unknown): void {
    // One clock reading per frame serves the flood count, liveness and the event's timestamp.
    const now = this.#lastReceivedAt = Date.now();
    if (this.#state !== "open" || this.#terminalSeen) return;
    if (this.#flooded(now)) return;
    // Every frame is a sign of life, also one refused, a resend or a gap (PROTOCOL.md 5.1);
    // the write is debounced and rides a shared commit.
    this.#refreshLiveness(now);
    const parsed = this.#parse(raw);
    if (parsed) this.#accept(classifyFrame(parsed.json, parsed.text), parsed.bytes, now);
    if (this.#batch.length > 0) this.#committing ??= this.#drain();
  }

  /** Text, size and JSON checks: the frame, parsed and as text, and its size; `undefined` once refused. */
  #parse(raw: unknown): { json: unknown; text: string; bytes: number } | undefined {
    if (typeof raw !== "string") {
      this.#reject(ErrorCode.binaryNotSupported, "frames must be text (JSON)");
      return undefined;
    }
    const max = this.rt.config.maxFrameBytes;
    const bytes = raw.length * 3 <= max ? raw.length : new TextEncoder().encode(raw).length;
    if (bytes > max) {
      this.rt.metrics.inc(MetricName.framesRejected, { code: SocketRejection.frameTooLarge });
      this.close(CloseCode.tooBig, `frame exceeds ${max} bytes`);
      return undefined;
    }
    try {
      return { json: JSON.parse(raw), text: raw, bytes };
    } catch {
      this.#reject(ErrorCode.invalidFrame, "frame is not JSON");
      return undefined;
    }
  }

  /**
   * Acts on the classifier's verdict: refuse, liveness only, or queue the event (stamped
   * with `now` when the frame carries no timestamp of its own).
   */
  #accept(verdict: FrameVerdict, bytes: number, now: number): void {
    if (verdict.kind === "invalid") return this.#invalid(verdict.message, verdict.seq);
    if (verdict.kind === "liveness") return;
    const { frame, end, deliveredInputId } = verdict;
    const event = new FrameEvent(
      this.admitted.executionId,
      frame.streamEventType,
      frame.timestamp ?? isoTime(now),
      frame.data ?? null,
    );
    // Serialize now, while the previous batch's commit is in flight, not in the next commit.
    event.tail = envelopeTail(this.admitted.sessionId, event);
    const stored = storedSize(event.tail);
    if (stored.units > MAX_EVENT_BYTES) {
      // Its data written again is longer than the frame (numbers such as 1E20): it can never
      // be stored, and a wrapper resending it after every storage error would never get past it.
      const message =
        `frame data takes ${stored.units} bytes once stored, more than ${MAX_EVENT_BYTES}`;
      return this.#invalid(message, frame.seq);
    }
    if (frame.seq !== undefined && !this.#admitSeq(frame.seq)) return;
    if (end) this.#terminalSeen = true;
    this.#enqueue(new QueuedFrame(bytes, frame.seq, event, end, deliveredInputId, stored));
  }

  /** A rejected frame: error frame; its seq, when next in line, is used up (acked at once). */
  #invalid(message: string, seq: number | undefined): void {
    this.#reject(ErrorCode.invalidFrame, message, seq === undefined ? {} : { seq });
    if (seq !== undefined && seq === this.#expectedSeq) {
      this.#expectedSeq++;
      this.#gapReportedFor = undefined;
      this.#enqueue(new QueuedFrame(0, seq));
    }
  }

  /** Seq rules: true when the frame is the next one; resends are re-acked, gaps refused. */
  #admitSeq(seq: number): boolean {
    if (seq < this.#expectedSeq) {
      if (seq <= this.#durableSeq) this.#send({ type: "ack", seq: this.#durableSeq });
      return false;
    }
    if (seq > this.#expectedSeq) {
      if (this.#gapReportedFor !== this.#expectedSeq) {
        this.#gapReportedFor = this.#expectedSeq;
        this.#reject(ErrorCode.seqGap, `expected seq ${this.#expectedSeq}`, {
          seq,
          expectedSeq: this.#expectedSeq,
        });
      }
      return false;
    }
    this.#expectedSeq++;
    this.#gapReportedFor = undefined;
    if (this.#expectedSeq - 1 - this.#durableSeq > 2 * this.rt.config.maxInFlight) {
      this.close(CloseCode.policy, "too many unacknowledged frames");
      return false;
    }
    return true;
  }

  /** More than the frame rate in each of 3 consecutive seconds closes with 1008. */
  #flooded(now: number): boolean {
    const second = Math.floor(now / 1000);
    const rate = this.#rate;
    if (second !== rate.second) {
      const wasOver = rate.count > this.rt.config.maxFramesPerSec;
      rate.overStreak = wasOver && second === rate.second + 1 ? rate.overStreak + 1 : 0;
      rate.second = second;
      rate.count = 0;
    }
    rate.count++;
    if (rate.count > this.rt.config.maxFramesPerSec && rate.overStreak >= FLOOD_SECONDS - 1) {
      this.rt.metrics.inc(MetricName.framesRejected, { code: SocketRejection.flood });
      this.close(CloseCode.policy, "too many frames per second");
      return true;
    }
    return false;
  }

  #refreshLiveness(now: number): void {
    if (now - this.#lastHeartbeatWrite < this.admitted.heartbeatWriteMs) return;
    this.#lastHeartbeatWrite = now;
    const { sessionId, executionId, connectionId } = this.admitted;
    // Written within an eighth of a debounce: liveness (stale after two debounces, half the
    // heartbeat timeout) keeps almost a whole debounce of margin for the commit itself.
    batcherOf(this.rt).touch(
      { sessionId, executionId, connectionId, frames: [], known: this.#known },
      this.admitted.heartbeatWriteMs / 8,
    );
  }

  /** Queues a frame for the next commit; too many bytes waiting closes with 1008. */
  #enqueue(frame: QueuedFrame): void {
    this.#batch.push(frame);
    this.#pendingBytes += frame.bytes;
    if (this.#pendingBytes > this.rt.config.maxPendingBytes) this.#tooManyPendingBytes();
  }

  #tooManyPendingBytes(): void {
    this.rt.metrics.inc(MetricName.framesRejected, { code: SocketRejection.pendingBytes });
    this.close(CloseCode.policy, PENDING_BYTES_REASON);
  }

  /** Commits batches until none is left; frames arriving meanwhile join the next batch. */
  async #drain(): Promise<void> {
    try {
      while (this.#batch.length > 0) {
        const { frames, bytes } = this.#takeBatch();
        const { sessionId, executionId, connectionId } = this.admitted;
        let result: Outcome<FrameCommit, NotCurrent>;
        try {
          result = await batcherOf(this.rt).submit({
            sessionId,
            executionId,
            connectionId,
            frames,
            known: this.#known,
          });
        } finally {
          this.#pendingBytes -= bytes;
        }
        if (!result.ok) {
          // No longer the current connection: its hub message closes this socket.
          this.#dropQueued();
          void this.rt.hub.deliverInbox();
          break;
        }
        this.#committed(frames, result.value);
      }
    } catch (err) {
      this.rt.log.error("frame commit failed", {
        sessionId: this.admitted.sessionId,
        executionId: this.admitted.executionId,
        err: String(err),
      });
      // Nothing was acked for these frames: the wrapper resends them after reconnecting.
      this.#dropQueued();
      this.close(CloseCode.internalError, "storage error");
    } finally {
      this.#committing = undefined;
    }
  }

  /**
   * After a commit (its events are published already): refuse what the commit refused (an
   * `input_delivered` above `lastInputId`), ack the stored seqs, close after a terminal frame.
   */
  #committed(frames: readonly PreparedFrame[], result: FrameCommit): void {
    for (const { seq } of result.refused) {
      const message = "input_delivered names an inputId above lastInputId";
      this.#reject(ErrorCode.invalidFrame, message, { seq });
    }
    this.#durableSeq = result.lastSeq;
    if (frames.some((f) => f.seq !== undefined)) this.#send({ type: "ack", seq: result.lastSeq });
    if (frames.some((f) => f.terminal)) this.#finishTerminal(result.status);
  }

  #dropQueued(): void {
    this.#batch = [];
    this.#pendingBytes = 0;
  }

  /** The next frames to commit: as many as one commit holds, in KV's bytes of their events. */
  #takeBatch(): { frames: QueuedFrame[]; bytes: number } {
    const stored = new StoredBytes();
    let n = 0;
    while (n < this.#batch.length && n < MAX_BATCH_EVENTS) {
      const size = this.#batch[n].stored;
      if (size) {
        if (n > 0 && stored.with(size) > MAX_BATCH_BYTES) break;
        stored.add(size);
      }
      n++;
    }
    const frames = this.#batch.splice(0, n);
    return { frames, bytes: frames.reduce((sum, q) => sum + q.bytes, 0) };
  }

  #finishTerminal(status: ExecutionStatus): void {
    if (isTerminal(status)) this.close(CloseCode.executionDone, executionDoneReason(status));
  }

  async #onClose(code: number, reason: string): Promise<void> {
    if (this.#state === "done") return;
    const recorded = this.#serviceClose ?? { code: code === 0 ? CloseCode.abnormal : code, reason };
    this.#state = "done";
    clearTimeout(this.#pingTimer);
    clearTimeout(this.#closeTimer);
    this.#release?.();
    this.rt.metrics.set(MetricName.ingestSockets, this.rt.hub.connectionCount);
    try {
      // Frames that arrived before the close are still committed.
      await this.#committing;
      if (this.#batch.length > 0) await this.#drain();
      await this.#recordClose(recorded);
    } catch (err) {
      this.rt.log.error("disconnect record failed", { err: String(err) });
    } finally {
      this.#resolveClosed();
    }
  }

  /** The disconnect record; a close that starts a grace is counted and logged. */
  async #recordClose(recorded: { code: number; reason: string }): Promise<void> {
    const { sessionId, executionId, connectionId } = this.admitted;
    const graceStarted = await recordDisconnect(this.rt.ctx, executionId, connectionId, {
      ...recorded,
      byService: this.#serviceClose !== undefined,
    });
    if (!graceStarted) return;
    this.rt.metrics.inc(MetricName.graceStarted);
    this.rt.log.info("grace started", {
      sessionId,
      executionId,
      event: "grace_started",
      wsCloseCode: recorded.code,
    });
  }
}
