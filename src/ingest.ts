/**
 * One admitted wrapper connection (PROTOCOL.md 5): frame validation, seq/ack with resend
 * dedupe and `SEQ_GAP`, group commit (frames that arrive while a commit is in flight go
 * into the next one), terminal frames, liveness, pings, flood and in-flight limits, and
 * the disconnect record when the socket closes.
 *
 * The connection never decides ownership itself: every commit checks in KV that it is
 * still the execution's current connection.
 *
 * @module
 */
import { MetricName } from "./metrics.ts";
import {
  CloseCode,
  CompleteData,
  cutErrorText,
  ErrorCode,
  ErrorFrameData,
  ErrorText,
  executionDoneReason,
  type ExecutionStatus,
  InterruptedData,
  isTerminal,
  LIVENESS_EVENT_TYPES,
  RESERVED_EVENT_TYPES,
  STREAM_EVENT_TYPE_RE,
  WrapperFrame,
} from "./protocol.ts";
import {
  commitFrames,
  deliveredInputIdOf,
  type PreparedFrame,
  recordDisconnect,
  touchHeartbeat,
} from "./lifecycle.ts";
import { InputSender } from "./input_delivery.ts";
import type { Runtime } from "./runtime.ts";
import type { ConnectionHandle } from "./hub.ts";
import { MAX_JSON_DEPTH, messageTooDeep } from "./json_depth.ts";
import { envelopeTail, type NewEvent } from "./store/mod.ts";

/** A commit carries at most this many bytes of events (KV allows 819,200 per commit). */
const MAX_BATCH_BYTES = 700_000;
/** …and at most this many events (KV allows 1,000 mutations per commit). */
const MAX_BATCH_EVENTS = 800;
/** A service close waits until the wrapper has sent nothing for this long… */
const CLOSE_QUIET_MS = 10;
/** …but never longer than this. */
const CLOSE_MAX_WAIT_MS = 1000;
/** Consecutive seconds over the frame rate that close the connection. */
const FLOOD_SECONDS = 3;

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

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
}

interface QueuedFrame {
  frame: PreparedFrame;
  bytes: number;
}

/** True for a frame {@link WrapperFrame} accepts as it is, checked without zod. */
function isPlainFrame(json: object): json is WrapperFrame {
  const { streamEventType: type, seq, timestamp } = json as Record<string, unknown>;
  return typeof type === "string" && STREAM_EVENT_TYPE_RE.test(type) &&
    !RESERVED_EVENT_TYPES.has(type) &&
    (seq === undefined || (Number.isSafeInteger(seq) && (seq as number) >= 1)) &&
    (timestamp === undefined || typeof timestamp === "string");
}

/** Classifies a frame: the transition it asks for, or a validation error. */
function terminalOf(
  type: string,
  data: unknown,
): { terminal?: PreparedFrame["terminal"]; invalid?: string } {
  switch (type) {
    case "complete": {
      const parsed = CompleteData.safeParse(data);
      return parsed.success
        ? { terminal: { status: "completed" } }
        : { invalid: "complete needs data.exitCode (number)" };
    }
    case "interrupted": {
      const parsed = InterruptedData.safeParse(data ?? {});
      return parsed.success
        ? {
          terminal: {
            status: "interrupted",
            error: parsed.data.reason ?? ErrorText.userInterrupted,
          },
        }
        : { invalid: "interrupted needs data.reason to be a string" };
    }
    case "error": {
      if (data === undefined) return {};
      const parsed = ErrorFrameData.safeParse(data);
      if (!parsed.success) return { invalid: "error data has fields of the wrong type" };
      const d = parsed.data;
      return d.fatal === true
        ? { terminal: { status: "failed", error: d.error ?? d.message ?? ErrorText.fatalError } }
        : {};
    }
    default:
      return {};
  }
}

/** Serves one admitted ingest socket until it closes. */
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
  #committing?: Promise<void>;
  #lastSentAt = Date.now();
  /** Admission has just written liveness, so the first write is due one debounce later. */
  #lastHeartbeatWrite = Date.now();
  #rate = { second: 0, count: 0, overStreak: 0 };
  #pingTimer?: ReturnType<typeof setInterval>;
  #closeTimer?: ReturnType<typeof setTimeout>;
  #lastReceivedAt = 0;
  #release?: () => void;
  readonly #inputs: InputSender;

  constructor(
    private readonly rt: Runtime,
    private readonly socket: WebSocket,
    private readonly admitted: AdmittedConnection,
  ) {
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

  /** Sends `hello` (then `kill` when an interrupt is pending, then inputs) and starts serving. */
  start(): void {
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
    const tick = Math.max(10, Math.min(1000, Math.floor(this.rt.config.pingMs / 4)));
    this.#pingTimer = setInterval(() => {
      if (Date.now() - this.#lastSentAt >= this.rt.config.pingMs) this.#send({ type: "ping" });
    }, tick);
  }

  /** Hub command: close with a service code (4000 done, 4001 replaced, 1012 restart). */
  close(code: number, reason: string): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    this.#serviceClose = { code, reason };
    // Closing a Deno WebSocket while the peer's frames are still unread resets the TCP
    // connection, and the wrapper then sees 0 instead of our code. So the close frame goes
    // out once the wrapper has been quiet for a moment (or after a bounded wait).
    const giveUpAt = Date.now() + CLOSE_MAX_WAIT_MS;
    const closeWhenQuiet = () => {
      const now = Date.now();
      if (now - this.#lastReceivedAt < CLOSE_QUIET_MS && now < giveUpAt) {
        this.#closeTimer = setTimeout(closeWhenQuiet, CLOSE_QUIET_MS);
        return;
      }
      try {
        this.socket.close(code, reason);
      } catch {
        // the socket is already gone; onclose records it
      }
    };
    closeWhenQuiet();
  }

  /** Hub command: ask the wrapper to stop its agent. */
  kill(reason: string): void {
    this.#send({ type: "kill", signal: "SIGTERM", reason: cutErrorText(reason) });
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
    this.#lastReceivedAt = Date.now();
    if (this.#state !== "open" || this.#terminalSeen) return;
    if (this.#flooded()) return;
    // Every frame is a sign of life, also one refused, a resend or a gap (PROTOCOL.md 5.1);
    // stored frames refresh it in their commit too, and both writes are debounced.
    this.#refreshLiveness();
    if (typeof raw !== "string") {
      this.#reject("BINARY_NOT_SUPPORTED", "frames must be text (JSON)");
      return;
    }
    const bytes = raw.length * 3 <= this.rt.config.maxFrameBytes
      ? raw.length
      : new TextEncoder().encode(raw).length;
    if (bytes > this.rt.config.maxFrameBytes) {
      this.rt.metrics.inc(MetricName.framesRejected, { code: "FRAME_TOO_LARGE" });
      this.close(CloseCode.tooBig, `frame exceeds ${this.rt.config.maxFrameBytes} bytes`);
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      this.#reject("INVALID_FRAME", "frame is not JSON");
      return;
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      this.#reject("INVALID_FRAME", "frame is not a JSON object");
      return;
    }
    // A timestamp that is not an ISO string is replaced by the service's clock, not refused.
    if ("timestamp" in json && typeof json.timestamp !== "string") delete json.timestamp;
    const rawSeq = (json as { seq?: unknown }).seq;
    const seq = Number.isSafeInteger(rawSeq) && (rawSeq as number) >= 1
      ? rawSeq as number
      : undefined;
    if (messageTooDeep(json)) {
      return this.#invalid(`frame nests deeper than ${MAX_JSON_DEPTH} levels`, seq);
    }
    // The common well-formed frame skips zod (the hot path); anything else gets its verdict.
    let frame: WrapperFrame;
    if (isPlainFrame(json)) {
      frame = json;
    } else {
      const parsed = WrapperFrame.safeParse(json);
      if (!parsed.success) {
        this.#invalid(parsed.error.issues[0]?.message ?? "invalid frame", seq);
        return;
      }
      frame = parsed.data;
    }
    if (LIVENESS_EVENT_TYPES.has(frame.streamEventType)) {
      // A numbered liveness frame would leave its seq waiting for an ack forever: refuse it.
      if (frame.seq !== undefined) return this.#invalid("heartbeat and pong carry no seq", seq);
      return;
    }
    const { terminal, invalid } = terminalOf(frame.streamEventType, frame.data);
    const delivered = deliveredInputIdOf(frame);
    if (invalid || (delivered && "invalid" in delivered)) {
      this.#invalid(invalid ?? (delivered as { invalid: string }).invalid, frame.seq);
      return;
    }
    if (frame.seq !== undefined && !this.#admitSeq(frame.seq)) return;
    const timestamp = frame.timestamp !== undefined && ISO_TIMESTAMP.test(frame.timestamp) &&
        !Number.isNaN(Date.parse(frame.timestamp))
      ? frame.timestamp
      : new Date().toISOString();
    if (terminal) this.#terminalSeen = true;
    const event: NewEvent = {
      executionId: this.admitted.executionId,
      streamEventType: frame.streamEventType,
      timestamp,
      data: frame.data ?? null,
    };
    // Serialize now, while the previous batch's commit is in flight, not in the next commit.
    event.tail = envelopeTail(this.admitted.sessionId, event);
    const deliveredInputId = delivered?.inputId;
    this.#enqueue({ seq: frame.seq, terminal, event, deliveredInputId }, bytes);
  }

  /** A rejected frame: error frame; its seq, when next in line, is used up (acked at once). */
  #invalid(message: string, seq: number | undefined): void {
    this.#reject("INVALID_FRAME", message, seq === undefined ? {} : { seq });
    if (seq !== undefined && seq === this.#expectedSeq) {
      this.#expectedSeq++;
      this.#gapReportedFor = undefined;
      this.#enqueue({ seq }, 0);
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
        this.#reject("SEQ_GAP", `expected seq ${this.#expectedSeq}`, {
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
  #flooded(): boolean {
    const second = Math.floor(Date.now() / 1000);
    const rate = this.#rate;
    if (second !== rate.second) {
      const wasOver = rate.count > this.rt.config.maxFramesPerSec;
      rate.overStreak = wasOver && second === rate.second + 1 ? rate.overStreak + 1 : 0;
      rate.second = second;
      rate.count = 0;
    }
    rate.count++;
    if (rate.count > this.rt.config.maxFramesPerSec && rate.overStreak >= FLOOD_SECONDS - 1) {
      this.rt.metrics.inc(MetricName.framesRejected, { code: "FLOOD" });
      this.close(CloseCode.policy, "too many frames per second");
      return true;
    }
    return false;
  }

  #refreshLiveness(): void {
    const now = Date.now();
    if (now - this.#lastHeartbeatWrite < this.admitted.heartbeatWriteMs) return;
    this.#lastHeartbeatWrite = now;
    touchHeartbeat(this.rt.ctx, this.admitted.executionId, this.admitted.connectionId).catch(
      (err) => this.rt.log.warn("heartbeat write failed", { err: String(err) }),
    );
  }

  #enqueue(frame: PreparedFrame, bytes: number): void {
    this.#batch.push({ frame, bytes });
    // A rejected frame's seq is acked at once; other frames ride the group commit.
    this.#committing ??= this.#drain();
  }

  /** Commits batches until none is left; frames arriving meanwhile join the next batch. */
  async #drain(): Promise<void> {
    try {
      while (this.#batch.length > 0) {
        const take = this.#takeBatch();
        const result = await commitFrames(
          this.rt.ctx,
          this.admitted.sessionId,
          this.admitted.executionId,
          this.admitted.connectionId,
          take,
        );
        if (!result.ok) {
          // No longer the current connection: its hub message closes this socket.
          this.#batch = [];
          void this.rt.hub.deliverInbox();
          break;
        }
        const { lastSeq, status, refused } = result.value;
        for (const { seq } of refused) {
          this.#reject(
            ErrorCode.invalidFrame,
            "input_delivered names an inputId above lastInputId",
            {
              seq,
            },
          );
        }
        const hadSeq = take.some((f) => f.seq !== undefined);
        this.#durableSeq = lastSeq;
        if (hadSeq) this.#send({ type: "ack", seq: lastSeq });
        const ended = take.find((f) => f.terminal);
        if (ended) this.#finishTerminal(status);
      }
    } catch (err) {
      this.rt.log.error("frame commit failed", {
        sessionId: this.admitted.sessionId,
        executionId: this.admitted.executionId,
        err: String(err),
      });
      // Nothing was acked for these frames: the wrapper resends them after reconnecting.
      this.close(1011, "storage error");
    } finally {
      this.#committing = undefined;
    }
  }

  #takeBatch(): PreparedFrame[] {
    let bytes = 0;
    let n = 0;
    while (n < this.#batch.length && n < MAX_BATCH_EVENTS) {
      const size = this.#batch[n].bytes + 200;
      if (n > 0 && bytes + size > MAX_BATCH_BYTES) break;
      bytes += size;
      n++;
    }
    return this.#batch.splice(0, n).map((q) => q.frame);
  }

  #finishTerminal(status: ExecutionStatus): void {
    if (isTerminal(status)) this.close(CloseCode.executionDone, executionDoneReason(status));
  }

  async #onClose(code: number, reason: string): Promise<void> {
    if (this.#state === "done") return;
    const recorded = this.#serviceClose ?? { code: code === 0 ? CloseCode.abnormal : code, reason };
    this.#state = "done";
    clearInterval(this.#pingTimer);
    clearTimeout(this.#closeTimer);
    this.#release?.();
    this.rt.metrics.set(MetricName.ingestSockets, this.rt.hub.connectionCount);
    try {
      // Frames that arrived before the close are still committed.
      await this.#committing;
      if (this.#batch.length > 0) await this.#drain();
      const graceStarted = await recordDisconnect(
        this.rt.ctx,
        this.admitted.executionId,
        this.admitted.connectionId,
        { ...recorded, byService: this.#serviceClose !== undefined },
      );
      if (graceStarted) {
        this.rt.metrics.inc(MetricName.graceStarted);
        this.rt.log.info("grace started", {
          sessionId: this.admitted.sessionId,
          executionId: this.admitted.executionId,
          event: "grace_started",
          wsCloseCode: recorded.code,
        });
      }
    } catch (err) {
      this.rt.log.error("disconnect record failed", { err: String(err) });
    } finally {
      this.#resolveClosed();
    }
  }
}
