/**
 * Cross-execution group commit: the frames that the ingest connections of one instance hand
 * over at about the same time go into one KV commit (`commitFrameBatch`), within what one
 * commit may hold (100 checks, 1,000 mutations, 800 KiB). With thousands of quiet runs each
 * sending little, the cost is per commit, not per byte, so sharing commits is what keeps the
 * service's CPU and the ack latency flat as the number of runs grows.
 *
 * Each connection has at most one work here at a time (its own frames stay in order and its
 * next frames wait in its own group commit). Terminal frames commit on their own: ending an
 * execution reads and writes much more than storing frames.
 *
 * @module
 */
import {
  commitFrameBatch,
  commitFrames,
  type FrameCommit,
  type FrameWork,
  frameWorkCost,
  type LifecycleContext,
} from "./lifecycle.ts";

/** Options of {@link FrameBatcher}. */
export interface FrameBatcherOptions {
  /** Shared commits in flight at once (they touch different executions). Default 4. */
  maxInFlight?: number;
  /**
   * Least time between the starts of two shared commits, in ms: under load, works arriving
   * meanwhile share the next commit instead of each taking one. Default 4.
   */
  minIntervalMs?: number;
  /**
   * How long a liveness-only refresh may wait for a commit that carries frames before it
   * takes one of its own, in ms (liveness writes are debounced by seconds anyway). Default 250.
   */
  touchDelayMs?: number;
}

/** What one commit may hold, with margins for the envelope and record overhead. */
const MAX_CHECKS = 96;
const MAX_MUTATIONS = 900;
const MAX_BYTES = 700_000;

interface Waiting {
  work: FrameWork;
  bytes: number;
  done: PromiseWithResolvers<FrameCommit>;
}

/**
 * The instance's queue of frame works and the commits that take them.
 *
 * @example
 * ```ts
 * const batcher = new FrameBatcher(rt.ctx);
 * const result = await batcher.submit(work, bytes);
 * if (result.ok) rt.committed(result.effects);
 * ```
 */
export class FrameBatcher {
  readonly #ctx: LifecycleContext;
  readonly #maxInFlight: number;
  readonly #minIntervalMs: number;
  readonly #touchDelayMs: number;
  #queue: Waiting[] = [];
  /** Liveness-only refreshes by execution, with when the oldest was asked for. */
  #touches = new Map<string, FrameWork>();
  #touchTimer?: ReturnType<typeof setTimeout>;
  #touchDue = 0;
  #inFlight = 0;
  #lastStart = -Infinity;
  #timer?: ReturnType<typeof setTimeout>;

  constructor(ctx: LifecycleContext, options: FrameBatcherOptions = {}) {
    this.#ctx = ctx;
    this.#maxInFlight = options.maxInFlight ?? 4;
    this.#minIntervalMs = options.minIntervalMs ?? 4;
    this.#touchDelayMs = options.touchDelayMs ?? 250;
  }

  /**
   * Refreshes an execution's liveness with the next commit that has room for it, or on its
   * own after `touchDelayMs` (or `maxDelayMs` when shorter: an execution with a short
   * heartbeat timeout must not look stale). Nothing waits on it.
   */
  touch(work: FrameWork, maxDelayMs = Infinity): void {
    this.#touches.set(work.executionId, { ...work, frames: [] });
    this.#armTouches(Math.min(this.#touchDelayMs, maxDelayMs));
  }

  /** Commits the waiting refreshes in `delayMs`, unless an earlier wake-up is set. */
  #armTouches(delayMs: number): void {
    const due = performance.now() + delayMs;
    if (this.#touchTimer !== undefined && this.#touchDue <= due) return;
    clearTimeout(this.#touchTimer);
    this.#touchDue = due;
    this.#touchTimer = setTimeout(() => {
      this.#touchTimer = undefined;
      if (this.#touches.size === 0) return;
      if (this.#inFlight < this.#maxInFlight) void this.#commit(this.#take());
      else this.#armTouches(this.#minIntervalMs);
    }, delayMs);
  }

  /** Commits `work` (its frames' serialized size is `bytes`), alone or with others. */
  submit(work: FrameWork, bytes: number): Promise<FrameCommit> {
    if (work.frames.some((f) => f.terminal)) return commitFrames(this.#ctx, work);
    const done = Promise.withResolvers<FrameCommit>();
    this.#queue.push({ work, bytes, done });
    this.#pump();
    return done.promise;
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#maxInFlight) {
      const wait = this.#lastStart + this.#minIntervalMs - performance.now();
      if (wait > 0) {
        this.#timer ??= setTimeout(() => {
          this.#timer = undefined;
          this.#pump();
        }, wait);
        return;
      }
      this.#lastStart = performance.now();
      void this.#commit(this.#take());
    }
  }

  /**
   * The oldest works that fit one commit, at most one per session (they share its head),
   * then as many pending liveness refreshes as still fit.
   */
  #take(): Waiting[] {
    const taken: Waiting[] = [];
    const kept: Waiting[] = [];
    const sessions = new Set<string>();
    let checks = 0, mutations = 0, bytes = 0;
    const fits = (work: FrameWork, size: number) => {
      const cost = frameWorkCost(work, size);
      const ok = taken.length === 0 || (
        checks + cost.checks <= MAX_CHECKS && mutations + cost.mutations <= MAX_MUTATIONS &&
        bytes + size <= MAX_BYTES && !sessions.has(work.sessionId)
      );
      if (ok) {
        sessions.add(work.sessionId);
        checks += cost.checks;
        mutations += cost.mutations;
        bytes += size;
      }
      return ok;
    };
    for (const waiting of this.#queue) {
      if (fits(waiting.work, waiting.bytes)) taken.push(waiting);
      else kept.push(waiting);
    }
    this.#queue = kept;
    for (const [executionId, work] of this.#touches) {
      // A frame commit of the same session refreshes liveness itself when it is due.
      if (sessions.has(work.sessionId)) {
        this.#touches.delete(executionId);
        continue;
      }
      if (!fits(work, 0)) break;
      this.#touches.delete(executionId);
      const done = Promise.withResolvers<FrameCommit>();
      done.promise.catch(() => {}); // nobody waits for a refresh; the next one retries
      taken.push({ work, bytes: 0, done });
    }
    return taken;
  }

  async #commit(batch: Waiting[]): Promise<void> {
    this.#inFlight++;
    try {
      const results = await commitFrameBatch(this.#ctx, batch.map((w) => w.work));
      batch.forEach((w, i) => w.done.resolve(results[i]));
    } catch (err) {
      for (const w of batch) w.done.reject(err);
    } finally {
      if (this.#touches.size === 0) {
        clearTimeout(this.#touchTimer);
        this.#touchTimer = undefined;
      }
      this.#inFlight--;
      this.#pump();
    }
  }
}
