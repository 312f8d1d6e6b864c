/**
 * The instance-wide memory budget of readers (PROTOCOL.md 10: what an instance holds for
 * viewers and readers is bounded whatever the size of the stored events). Every reader (a
 * WebSocket or SSE viewer, a Durable Streams read, a JSON events page) holds a
 * {@link ReaderLease}: bytes it has read and not yet handed to the network count against
 * the budget until its connection's buffer has drained them.
 *
 * A reader that finds the budget full waits. While anyone waits longer than `stallMs`, the
 * leases that hold bytes and have not drained any for `stallMs` are evicted (a viewer is
 * closed with 1013): a reader that stopped reading cannot hold shared memory forever.
 *
 * @module
 */
import { delay } from "./async.ts";

/** Options of {@link ReadBudget}. */
export interface ReadBudgetOptions {
  /** How often a waiting reader looks again. Default 10 ms. */
  pollMs?: number;
  /** How long a waiter waits before stalled holders are evicted. Default 2000 ms. */
  stallMs?: number;
}

/** What a reader tells its lease about itself. */
export interface LeaseOptions {
  /** Bytes the reader has queued on its connection and not yet written. Default: none. */
  buffered?: () => number;
  /** Ends the reader because it holds budget without draining (a viewer closes with 1013). */
  evict?: () => void;
}

/**
 * A byte budget shared by every reader of one instance.
 *
 * @example
 * ```ts
 * const budget = new ReadBudget(128 * 1024 * 1024);
 * using lease = budget.open({ buffered: () => socket.bufferedAmount });
 * if (await lease.reserve(1024 * 1024, signal)) {
 *   // read at most about 1 MiB, send it, then:
 *   lease.settle();
 * }
 * ```
 */
export class ReadBudget {
  #used = 0;
  readonly #leases = new Set<ReaderLease>();
  readonly #pollMs: number;
  readonly #stallMs: number;

  constructor(readonly capacity: number, options: ReadBudgetOptions = {}) {
    this.#pollMs = options.pollMs ?? 10;
    this.#stallMs = options.stallMs ?? 2000;
  }

  /** Bytes held by all leases (as of their last update). */
  get used(): number {
    return this.#used;
  }

  /** Opens a lease for one reader; dispose it when the reader ends. */
  open(options: LeaseOptions = {}): ReaderLease {
    const lease = new ReaderLease(this, options);
    this.#leases.add(lease);
    return lease;
  }

  /** @internal Moves the shared count by `delta` bytes. */
  adjust(delta: number): void {
    this.#used += delta;
  }

  /** @internal Forgets a disposed lease. */
  forget(lease: ReaderLease): void {
    this.#leases.delete(lease);
  }

  /** @internal True when `bytes` more fit (an empty budget always admits one read). */
  fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.capacity;
  }

  /** @internal Waits one poll period, after updating every lease from its buffer. */
  async idle(waitingSince: number, signal: AbortSignal): Promise<void> {
    for (const lease of this.#leases) lease.sync();
    if (Date.now() - waitingSince >= this.#stallMs) this.#evictStalled();
    await delay(this.#pollMs, { signal }).catch(() => {});
  }

  #evictStalled(): void {
    const now = Date.now();
    for (const lease of this.#leases) {
      if (lease.held > 0 && now - lease.lastDrainAt >= this.#stallMs) lease.evict();
    }
  }
}

/**
 * One reader's share of a {@link ReadBudget}: the bytes of its read in flight plus what its
 * connection still buffers. Disposing it gives them back.
 *
 * @example
 * ```ts
 * using lease = rt.readBudget.open({ buffered: () => socket.bufferedAmount });
 * if (!(await lease.reserve(2 * 1024 * 1024, signal))) return; // aborted or evicted
 * ```
 */
export class ReaderLease implements Disposable {
  #inFlight = 0;
  #held = 0;
  #lastBuffered = 0;
  #lastDrainAt = Date.now();
  #evicted = false;
  #disposed = false;

  constructor(private readonly budget: ReadBudget, private options: LeaseOptions) {}

  /** Replaces what the lease knows about its reader (when a read becomes a response body). */
  track(options: LeaseOptions): void {
    this.options = options;
    this.sync();
  }

  /** Bytes this lease holds: its in-flight read plus its connection's buffer. */
  get held(): number {
    return this.#held;
  }

  /** When the reader's buffer last shrank (or was empty). */
  get lastDrainAt(): number {
    return this.#lastDrainAt;
  }

  /** True once the budget evicted this reader. */
  get evicted(): boolean {
    return this.#evicted;
  }

  /** Takes `bytes` for a read if they fit now. */
  tryReserve(bytes: number): boolean {
    this.sync();
    if (!this.budget.fits(bytes)) return false;
    this.#inFlight += bytes;
    this.#held += bytes;
    this.budget.adjust(bytes);
    return true;
  }

  /** Waits until `bytes` fit, then takes them; false when `signal` aborts or the lease is evicted. */
  async reserve(bytes: number, signal: AbortSignal): Promise<boolean> {
    const since = Date.now();
    while (!this.tryReserve(bytes)) {
      if (signal.aborted || this.#evicted) return false;
      await this.budget.idle(since, signal);
    }
    return true;
  }

  /** Replaces the in-flight reservation by what the read actually holds (it may overshoot). */
  hold(bytes: number): void {
    this.#inFlight = bytes;
    this.sync();
  }

  /** Ends an in-flight read: from now on the lease holds what its buffer holds. */
  settle(): void {
    this.hold(0);
  }

  /** Re-reads the buffer: bytes written to the network go back to the budget. */
  sync(): void {
    if (this.#disposed) return;
    const buffered = this.options.buffered?.() ?? 0;
    if (buffered < this.#lastBuffered || buffered === 0) this.#lastDrainAt = Date.now();
    this.#lastBuffered = buffered;
    const held = this.#inFlight + buffered;
    this.budget.adjust(held - this.#held);
    this.#held = held;
  }

  /** Ends the reader (the budget calls it on a reader that holds bytes and does not drain). */
  evict(): void {
    if (this.#evicted) return;
    this.#evicted = true;
    this.options.evict?.();
  }

  /** Gives everything back. */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.budget.adjust(-this.#held);
    this.#held = 0;
    this.#inFlight = 0;
    this.budget.forget(this);
  }
}

/**
 * A piece of a response body: text, encoded as it is written, or UTF-8 bytes written as they
 * are (a large event's stored bytes: no text is ever made of them).
 */
export type BodyPiece = string | Uint8Array;

/** Characters (or bytes) of a body written per chunk of a {@link leasedBodyStream}. */
const STREAM_CHUNK_UNITS = 256 * 1024;

/**
 * A response body that writes the pieces of `first`, then those `next` produces (until it
 * returns `undefined`), about 256 KiB at a time as the network takes them: pieces are never
 * joined into one large copy. From then on the lease holds what the network has not taken
 * yet, so memory goes back to the budget as the client reads; `next` reserves through the
 * lease before it reads. An evicted lease ends the body with an error. The lease is
 * disposed and `onEnd` runs once when the body ends, fails or is cancelled.
 *
 * @example
 * ```ts
 * const lease = rt.readBudget.open();
 * await lease.reserve(4 * 1024 * 1024, signal);
 * const pieces = await readSomething();
 * return new Response(leasedBodyStream(lease, pieces));
 * ```
 */
export function leasedBodyStream(
  lease: ReaderLease,
  first: readonly BodyPiece[],
  next: (lease: ReaderLease) => Promise<readonly BodyPiece[] | undefined> = () =>
    Promise.resolve(undefined),
  onEnd: () => void = () => {},
): ReadableStream<Uint8Array> {
  const pending = new PieceQueue(first);
  let ended = false;
  let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
  const finish = () => {
    if (ended) return;
    ended = true;
    lease[Symbol.dispose]();
    onEnd();
  };
  lease.track({
    buffered: () => pending.units,
    evict: () => {
      finish();
      controllerRef?.error(new Error("reader evicted: it held memory without reading"));
    },
  });
  lease.settle();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controllerRef = controller;
    },
    async pull(controller) {
      try {
        while (pending.units === 0) {
          const more = ended ? undefined : await next(lease);
          if (more === undefined) {
            const evicted = ended;
            finish();
            if (!evicted) controller.close();
            return;
          }
          pending.push(more);
          lease.settle();
        }
        controller.enqueue(pending.take(STREAM_CHUNK_UNITS));
        lease.sync();
      } catch (err) {
        finish();
        controller.error(err);
      }
    },
    cancel() {
      finish();
    },
  }, { highWaterMark: 0 });
}

/**
 * `pieces` as chunks of about 256 KiB to write: small texts joined, large ones cut, bytes as
 * they are.
 *
 * @example
 * ```ts
 * for (const chunk of bodyChunks(["id: 1\ndata: ", json, "\n\n"])) controller.enqueue(chunk);
 * ```
 */
export function bodyChunks(pieces: readonly BodyPiece[]): Uint8Array[] {
  const queue = new PieceQueue(pieces);
  const chunks: Uint8Array[] = [];
  while (queue.units > 0) chunks.push(queue.take(STREAM_CHUNK_UNITS));
  return chunks;
}

/** Pieces waiting to be written, taken about a chunk at a time. */
class PieceQueue {
  readonly #pieces: BodyPiece[] = [];
  #head = 0;
  /** Characters (or bytes) of the first piece already taken. */
  #at = 0;
  /** Characters of texts plus bytes of byte pieces waiting. */
  units = 0;
  readonly #encoder = new TextEncoder();

  constructor(pieces: readonly BodyPiece[]) {
    this.push(pieces);
  }

  push(pieces: readonly BodyPiece[]): void {
    for (const piece of pieces) {
      if (piece.length === 0) continue;
      this.#pieces.push(piece);
      this.units += piece.length;
    }
  }

  /**
   * About `size` units from the front: texts encoded together (a surrogate pair is never
   * split), or a run of one byte piece on its own (a view, not a copy).
   */
  take(size: number): Uint8Array {
    const first = this.#pieces[this.#head];
    if (typeof first !== "string") {
      const end = Math.min(first.length, this.#at + size);
      const chunk = first.subarray(this.#at, end);
      this.#advance(first, end);
      this.units -= chunk.length;
      return chunk;
    }
    const parts: string[] = [];
    let taken = 0;
    while (taken < size && this.#head < this.#pieces.length) {
      const text = this.#pieces[this.#head];
      if (typeof text !== "string") break;
      let end = Math.min(text.length, this.#at + size - taken);
      if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end++;
      parts.push(this.#at === 0 && end === text.length ? text : text.slice(this.#at, end));
      taken += end - this.#at;
      this.#advance(text, end);
    }
    this.units -= taken;
    return this.#encoder.encode(parts.length === 1 ? parts[0] : parts.join(""));
  }

  /** Marks the head piece taken up to `end`; the queue empties once all are taken. */
  #advance(piece: BodyPiece, end: number): void {
    if (end === piece.length) {
      this.#pieces[this.#head++] = "";
      this.#at = 0;
    } else this.#at = end;
    if (this.#head === this.#pieces.length) {
      this.#pieces.length = 0;
      this.#head = 0;
    }
  }
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
