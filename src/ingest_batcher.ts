/**
 * Cross-execution group commit: the frames that the ingest connections of one instance hand
 * over at about the same time share KV commits (`commitFrameBatch`), within what one commit
 * may hold (100 checks, 1,000 mutations, 800 KiB). With thousands of quiet runs each
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
  type LifecycleContext,
  type NotCurrent,
  type Outcome,
} from "./lifecycle.ts";

/** Options of {@link FrameBatcher}. */
export interface FrameBatcherOptions {
  /**
   * Shared commits in flight at once (they touch different executions). On a remote KV each
   * takes a round trip or two, so a few overlap; locally they rarely do. Default 8.
   */
  maxInFlight?: number;
  /**
   * Least time between the starts of two shared commits, in ms: works of many executions
   * arriving meanwhile share the next commit instead of each taking one. A work that only
   * continues a stream of the last commit (one busy session) goes at once. Default 15: a
   * commit costs about as much CPU however little it carries (SQLite syncs each one), and 15
   * keeps the ack p99 near 20 ms with 2,000 quiet runs (`deno task bench:many`).
   */
  minIntervalMs?: number;
  /**
   * How long a liveness-only refresh may wait for a commit that carries frames before it
   * takes one of its own, in ms (liveness writes are debounced by seconds anyway). Default 250.
   */
  touchDelayMs?: number;
}

/** Works taken for one round of shared commits (three checks each: a third of KV's 100). */
const MAX_WORKS = 32;

/** What a connection learns of its work: stored up to a seq, or not current any more. */
export type Committed = Outcome<FrameCommit, NotCurrent>;

interface Waiting {
  work: FrameWork;
  done: PromiseWithResolvers<Committed>;
}

/**
 * The instance's queue of frame works and the commits that take them.
 *
 * @example
 * ```ts
 * const batcher = new FrameBatcher(rt.ctx);
 * const result = await batcher.submit(work);
 * if (result.ok) console.log("durable up to", result.value.lastSeq);
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
  /** Sessions of the last commit started: their next works continue a stream. */
  #lastSessions = new Set<string>();
  /**
   * Sessions with a commit in flight: their next work (or liveness refresh) waits for it,
   * since both would write the same records and the later one would only fail its checks.
   */
  readonly #busy = new Set<string>();
  #timer?: ReturnType<typeof setTimeout>;

  constructor(ctx: LifecycleContext, options: FrameBatcherOptions = {}) {
    this.#ctx = ctx;
    this.#maxInFlight = options.maxInFlight ?? 8;
    this.#minIntervalMs = options.minIntervalMs ?? 15;
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
      const taken = this.#inFlight < this.#maxInFlight ? this.#take() : [];
      if (taken.length > 0) void this.#commit(taken);
      else this.#armTouches(this.#minIntervalMs);
    }, delayMs);
  }

  /** Commits `work`, alone or with others; its events are published once stored. */
  submit(work: FrameWork): Promise<Committed> {
    if (work.frames.some((f) => f.terminal)) return commitFrames(this.#ctx, work);
    const done = Promise.withResolvers<Committed>();
    this.#queue.push({ work, done });
    this.#pump();
    return done.promise;
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#maxInFlight) {
      // An idle instance commits at once, and so does a lone stream continuing (latency).
      // Otherwise commits start at most every `minIntervalMs`: with many executions each
      // sending little, the works arriving in between share one commit (CPU), and each
      // waits at most that long.
      const wait = this.#continuesAlone()
        ? 0
        : this.#lastStart + this.#minIntervalMs - performance.now();
      if (wait > 0) {
        this.#timer ??= setTimeout(() => {
          this.#timer = undefined;
          this.#pump();
        }, wait);
        return;
      }
      const taken = this.#take();
      // Every waiting work's session is committing: the commit ending pumps again.
      if (taken.length === 0) return;
      this.#lastStart = performance.now();
      void this.#commit(taken);
    }
  }

  /** Whether nothing is in flight and every waiting work continues a session of the last commit. */
  #continuesAlone(): boolean {
    return this.#inFlight === 0 &&
      this.#queue.every((waiting) => this.#lastSessions.has(waiting.work.sessionId));
  }

  /**
   * The oldest works, at most one per session (they would share its head) and none of a
   * session already committing, at most {@link MAX_WORKS}, then as many pending liveness
   * refreshes as still fit. `transactMany` splits them into as few commits as KV's limits
   * allow.
   */
  #take(): Waiting[] {
    const taken: Waiting[] = [];
    const kept: Waiting[] = [];
    const sessions = new Set<string>();
    for (const waiting of this.#queue) {
      const { sessionId } = waiting.work;
      if (taken.length < MAX_WORKS && !sessions.has(sessionId) && !this.#busy.has(sessionId)) {
        sessions.add(sessionId);
        taken.push(waiting);
      } else kept.push(waiting);
    }
    this.#queue = kept;
    for (const [executionId, work] of this.#touches) {
      if (taken.length >= MAX_WORKS) break;
      if (this.#busy.has(work.sessionId)) continue;
      this.#touches.delete(executionId);
      // A frame commit of the same session refreshes liveness itself when it is due.
      if (sessions.has(work.sessionId)) continue;
      sessions.add(work.sessionId);
      const done = Promise.withResolvers<Committed>();
      done.promise.catch(() => {}); // nobody waits for a refresh; the next one retries
      taken.push({ work, done });
    }
    this.#lastSessions = sessions;
    return taken;
  }

  async #commit(batch: Waiting[]): Promise<void> {
    this.#inFlight++;
    for (const { work } of batch) this.#busy.add(work.sessionId);
    try {
      const results = await commitFrameBatch(this.#ctx, batch.map((w) => w.work));
      batch.forEach((w, i) => {
        const result = results[i];
        if (result.ok) w.done.resolve(result.value);
        else w.done.reject(result.error);
      });
    } catch (err) {
      for (const w of batch) w.done.reject(err);
    } finally {
      for (const { work } of batch) this.#busy.delete(work.sessionId);
      if (this.#touches.size === 0) {
        clearTimeout(this.#touchTimer);
        this.#touchTimer = undefined;
      }
      this.#inFlight--;
      this.#pump();
    }
  }
}
