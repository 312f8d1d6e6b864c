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
  #queue: Waiting[] = [];
  #inFlight = 0;
  #lastStart = -Infinity;
  #timer?: ReturnType<typeof setTimeout>;

  constructor(ctx: LifecycleContext, options: FrameBatcherOptions = {}) {
    this.#ctx = ctx;
    this.#maxInFlight = options.maxInFlight ?? 4;
    this.#minIntervalMs = options.minIntervalMs ?? 4;
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

  /** The oldest works that fit one commit, at most one per session (they share its head). */
  #take(): Waiting[] {
    const taken: Waiting[] = [];
    const kept: Waiting[] = [];
    const sessions = new Set<string>();
    let checks = 0, mutations = 0, bytes = 0;
    for (const waiting of this.#queue) {
      const cost = frameWorkCost(waiting.work, waiting.bytes);
      const fits = taken.length === 0 || (
        checks + cost.checks <= MAX_CHECKS && mutations + cost.mutations <= MAX_MUTATIONS &&
        bytes + waiting.bytes <= MAX_BYTES && !sessions.has(waiting.work.sessionId)
      );
      if (!fits) {
        kept.push(waiting);
        continue;
      }
      taken.push(waiting);
      sessions.add(waiting.work.sessionId);
      checks += cost.checks;
      mutations += cost.mutations;
      bytes += waiting.bytes;
    }
    this.#queue = kept;
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
      this.#inFlight--;
      this.#pump();
    }
  }
}
