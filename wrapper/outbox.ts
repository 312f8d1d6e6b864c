/**
 * The wrapper's outgoing frame store (PROTOCOL.md 9.3): frames held back while they cannot
 * be sent, `seq` numbering at first send, the `maxInFlight` window of unacknowledged frames,
 * resends after a reconnect or a `SEQ_GAP`, the buffer limits with drop counting and the
 * `wrapper_resumed` marker. It does no I/O, so every ordering rule is testable on its own;
 * {@link IngestConnection} moves its frames over the socket.
 *
 * @module
 */
import { utf8Bytes } from "../src/bytes.ts";
import { terminalStatusOfFrame } from "../src/frames.ts";
import { withoutUndefined } from "../src/objects.ts";
import { EventType } from "../src/protocol.ts";

/** A frame as the wrapper hands it over, before it gets its `seq` and `timestamp`. */
export interface OutgoingFrame {
  /** Event type, e.g. `agent`, `output`, `complete`. */
  streamEventType: string;
  /** Payload; any JSON value. */
  data?: unknown;
  /** ISO-8601 time of the event; the outbox stamps the time of `push` when absent. */
  timestamp?: string;
}

/** Options of {@link Outbox}. */
export interface OutboxOptions {
  /** Most frames held back (not yet sent). Default 10000. */
  bufferLimit?: number;
  /** Most serialized bytes held back. Default 67108864. */
  bufferBytes?: number;
  /** Clock for frame timestamps. Default `() => new Date()`. */
  now?: () => Date;
}

/** Result of {@link Outbox.push}. */
export type PushResult = "queued" | "dropped";

interface HeldFrame {
  /** The frame serialized without `seq`: `{"streamEventType":…}`. */
  body: string;
  bytes: number;
  terminal: boolean;
}

interface SentFrame {
  seq: number;
  text: string;
  terminal: boolean;
}

/** Room a `seq` field takes at most: `"seq":9007199254740991,` */
const SEQ_FIELD_BYTES = `"seq":${Number.MAX_SAFE_INTEGER},`.length;

/**
 * Upper bound of the size a frame has on the wire once it carries a `seq` and a
 * `timestamp`: what has to stay within the frame limit.
 *
 * @example
 * ```ts
 * frameBytes({ streamEventType: "agent", data: { type: "x" } }) <= 524288; // true
 * ```
 */
export function frameBytes(frame: OutgoingFrame): number {
  const timestamp = frame.timestamp ?? "0000-00-00T00:00:00.000Z";
  return utf8Bytes(serializeBody({ ...frame, timestamp })) + SEQ_FIELD_BYTES;
}

function serializeBody(frame: OutgoingFrame): string {
  return JSON.stringify({
    streamEventType: frame.streamEventType,
    timestamp: frame.timestamp,
    data: frame.data,
  });
}

/**
 * Holds the wrapper's stored frames from `push` until the service acknowledges them.
 *
 * Frames wait in the *held* queue (unnumbered) until the connection is up and the window
 * has room; {@link Outbox.take} numbers them and moves them to the *sent* list, where they
 * stay until an ack covers their `seq`. A reconnect ({@link Outbox.resume}) resends the
 * sent list from the start, then the `wrapper_resumed` marker when frames were held back
 * or dropped, then the held frames.
 *
 * @example
 * ```ts
 * const outbox = new Outbox();
 * outbox.push({ streamEventType: "agent", data: { type: "x" } });
 * outbox.resume({ lastSeq: 0, maxInFlight: 1000, maxFrameBytes: 524288 });
 * outbox.take(); // ['{"seq":1,"streamEventType":"wrapper_resumed",…}', '{"seq":2,…}']
 * outbox.ack(2);
 * ```
 */
export class Outbox {
  readonly #bufferLimit: number;
  readonly #bufferBytes: number;
  readonly #now: () => Date;
  #held: HeldFrame[] = [];
  #heldBytes = 0;
  #sent: SentFrame[] = [];
  /** How many frames at the head of `#sent` went out on the current connection. */
  #transmitted = 0;
  #nextSeq = 1;
  #dropped = 0;
  #window = 0;
  #maxFrameBytes = Infinity;
  #terminalSeq: number | undefined;
  #terminalHeld = false;
  #acked = 0;

  /** Holds frames from the start; nothing is sent before the first {@link Outbox.resume}. */
  constructor(options: OutboxOptions = {}) {
    this.#bufferLimit = options.bufferLimit ?? 10_000;
    this.#bufferBytes = options.bufferBytes ?? 64 * 1024 * 1024;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Queues a frame to be sent. A non-terminal frame that does not fit the buffer limits is
   * dropped and counted for the next `wrapper_resumed`; a terminal frame is always kept.
   * Nothing is queued after a terminal frame (it is the execution's last).
   */
  push(frame: OutgoingFrame): PushResult {
    if (this.hasTerminal) return "dropped";
    const terminal = terminalStatusOfFrame(frame) !== undefined;
    const body = serializeBody({
      ...frame,
      timestamp: frame.timestamp ?? this.#now().toISOString(),
    });
    const bytes = utf8Bytes(body);
    // The limits bound what is held back; a frame the window takes at once is never held.
    const goesOutNow = this.#held.length === 0 && this.#sent.length < this.#window;
    const fits = goesOutNow || (this.#held.length < this.#bufferLimit &&
      this.#heldBytes + bytes <= this.#bufferBytes);
    if (!fits && !terminal) {
      this.#dropped++;
      return "dropped";
    }
    this.#held.push({ body, bytes, terminal });
    this.#heldBytes += bytes;
    this.#terminalHeld ||= terminal;
    return "queued";
  }

  /**
   * Starts a new connection after its `hello`: everything up to `lastSeq` counts as
   * acknowledged, numbering continues after it, the window becomes `maxInFlight`, and
   * the next {@link Outbox.take} resends every kept frame. Queues the `wrapper_resumed`
   * marker when frames were held back or dropped since the last one.
   */
  resume(hello: { lastSeq: number; maxInFlight: number; maxFrameBytes: number }): void {
    this.ack(hello.lastSeq);
    this.#nextSeq = Math.max(this.#nextSeq, hello.lastSeq + 1);
    this.#transmitted = 0;
    this.#window = hello.maxInFlight;
    this.#maxFrameBytes = hello.maxFrameBytes;
    if (this.#held.length > 0 || this.#dropped > 0) this.#queueMarker();
  }

  /**
   * Puts the `wrapper_resumed` marker before the held frames, reporting them and the frames
   * dropped since the last one. It bypasses the limits: it is what reports them.
   */
  #queueMarker(): void {
    const marker = {
      streamEventType: EventType.wrapperResumed,
      timestamp: this.#now().toISOString(),
      data: {
        bufferedEvents: this.#held.length,
        eventsLost: this.#dropped > 0,
        droppedEvents: this.#dropped,
      },
    };
    const body = serializeBody(marker);
    this.#held.unshift({ body, bytes: utf8Bytes(body), terminal: false });
    this.#heldBytes += this.#held[0].bytes;
    this.#dropped = 0;
  }

  /** The connection is lost: nothing goes out, and new frames are held back, until {@link Outbox.resume}. */
  suspend(): void {
    this.#window = 0;
  }

  /** Marks every frame with `seq ≤ seq` as stored. */
  ack(seq: number): void {
    let done = 0;
    while (done < this.#sent.length && this.#sent[done].seq <= seq) done++;
    if (done > 0) {
      this.#sent.splice(0, done);
      this.#transmitted = Math.max(0, this.#transmitted - done);
    }
    this.#acked = Math.max(this.#acked, seq);
  }

  /** Handles `SEQ_GAP`: the next {@link Outbox.take} resends from `expectedSeq` on. */
  rewind(expectedSeq: number): boolean {
    const index = this.#sent.findIndex((frame) => frame.seq === expectedSeq);
    if (index < 0 || index >= this.#transmitted) return false;
    this.#transmitted = index;
    return true;
  }

  /**
   * The frame texts to send now, in order: kept frames not yet sent on this connection,
   * then held frames (numbered here), as far as the window allows.
   */
  take(): string[] {
    const out: string[] = [];
    while (this.#transmitted < this.#sent.length && this.#transmitted < this.#window) {
      out.push(this.#fitted(this.#sent[this.#transmitted++]));
    }
    while (this.#held.length > 0 && this.#sent.length < this.#window) {
      // Drops not reported yet (the window was full, no reconnect followed) are reported
      // before the run's last frame: after it, the service stores nothing more.
      if (this.#held[0].terminal && this.#dropped > 0) this.#queueMarker();
      const held = this.#held.shift()!;
      this.#heldBytes -= held.bytes;
      const seq = this.#nextSeq++;
      const frame = { seq, text: `{"seq":${seq},${held.body.slice(1)}`, terminal: held.terminal };
      if (held.terminal) this.#terminalSeq = seq;
      this.#sent.push(frame);
      this.#transmitted++;
      out.push(this.#fitted(frame));
    }
    return out;
  }

  /**
   * A frame over the current frame limit (lowered by a later `hello` than the one it was
   * made for) would be refused with 1009 on every reconnect, so it goes out as a stub that
   * keeps its type, `seq` and timestamp, and what makes a terminal frame end the run
   * (`fatal`, `code`, `exitCode`).
   */
  #fitted(frame: SentFrame): string {
    const bytes = utf8Bytes(frame.text);
    if (bytes <= this.#maxFrameBytes) return frame.text;
    const { streamEventType, timestamp, data } = JSON.parse(frame.text);
    const { fatal, code, exitCode } = frame.terminal ? data ?? {} : {};
    frame.text = JSON.stringify({
      seq: frame.seq,
      streamEventType,
      timestamp,
      data: withoutUndefined({
        truncated: true,
        bytes,
        fatal,
        code: typeof code === "string" ? code.slice(0, 64) : undefined,
        exitCode,
      }),
    });
    return frame.text;
  }

  /** True once a terminal frame was pushed. */
  get hasTerminal(): boolean {
    return this.#terminalHeld;
  }

  /** True once the service acknowledged the terminal frame. */
  get terminalAcked(): boolean {
    return this.#terminalSeq !== undefined && this.#acked >= this.#terminalSeq;
  }

  /** Frames sent and not yet acknowledged. */
  get unacknowledged(): number {
    return this.#sent.length;
  }

  /** Frames waiting to be sent for the first time. */
  get held(): number {
    return this.#held.length;
  }

  /** Frames dropped since the last `wrapper_resumed`. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The `seq` the next new frame gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }
}
