/**
 * Durable deadlines, the firing side. A deadline is a KV entry written in the same commit as
 * the state change that arms it (see `armTimer`); this module wakes them up: KV queue
 * messages where queues deliver, an in-process sweep, and `Deno.cron` where idle instances
 * are stopped. Firing commits the effect together with the checked deletion of the entry, so
 * however many wake-ups arrive, each deadline has at most one effect.
 *
 * Deadlines that fall due together fire in batches: one batch's firings run side by side and
 * share KV commits where their records do not overlap (`fireDeadlines`). A deadline whose
 * firing fails is logged, counted and retried with a growing backoff, without holding up the
 * others. Completion callbacks and session purges do I/O, so they run outside a transaction
 * (`src/deadline_io.ts`).
 *
 * @module
 */
import { delay } from "./async.ts";
import type { TimerWakeup } from "./config.ts";
import { DeadlineIo, type DeadlineIoOptions } from "./deadline_io.ts";
import {
  deadlineKey,
  type DeadlineRef,
  type Fired,
  fireDeadlines,
  type FiringOutcome,
  IO_DEADLINE_KINDS,
  type ListedDeadline,
  readAhead,
} from "./lifecycle.ts";
import { MetricName } from "./metrics.ts";
import type { Runtime } from "./runtime.ts";
import { listDueTimers, type TimerEntry } from "./store/mod.ts";
import { Limiter } from "./limiter.ts";
import { QueueChannel } from "./queue_probe.ts";

/** Timers read per sweep listing. */
const SWEEP_PAGE = 500;
/** A queue message that arrives before its due time waits at most this long (ms); the sweep covers the rest. */
const MAX_EARLY_WAIT_MS = 1000;
/**
 * How long a deadline this instance fired is remembered (ms): a queue message for it that
 * arrives later (the local wake-up won the race) is dropped without reading KV.
 */
const RECENTLY_FIRED_MS = 30_000;

/** Options of {@link DeadlineRunner}. */
export interface DeadlineRunnerOptions extends DeadlineIoOptions {
  wakeups: readonly TimerWakeup[];
  /** Sweep period in ms. Default 500. */
  sweepMs?: number;
  /** Batches fired at once. Default 4. */
  concurrency?: number;
  /** Deadlines per batch (their commits are shared where they do not overlap). Default 48. */
  batchSize?: number;
  /** First retry delay of a deadline whose firing failed (doubling). Default 1000. */
  failureBackoffMs?: number;
  /** Longest retry delay of a failing deadline. Default 300000. */
  maxFailureBackoffMs?: number;
  /**
   * Heartbeat deadlines wake at the next multiple of this many ms at or after their due time,
   * so the heartbeat checks of many executions fire in one batch and share commits (nearly
   * all of them only re-arm). Adds at most this much to a silent execution's failure; 0 wakes
   * each at its own due time. Default 250.
   */
  heartbeatSlotMs?: number;
}

/**
 * A deadline's key as a log field: `timer/<due time ISO>/<kind>/<id>` (never redacted).
 *
 * @example
 * ```ts
 * deadlineLabel(["timer", 0, "heartbeat", "exc_1"]);
 * // "timer/1970-01-01T00:00:00.000Z/heartbeat/exc_1"
 * ```
 */
export function deadlineLabel(key: Deno.KvKey): string {
  const [, dueAt, kind, id] = key;
  const due = typeof dueAt === "number" ? new Date(dueAt).toISOString() : String(dueAt);
  return `timer/${due}/${String(kind)}/${String(id)}`;
}

/**
 * Wakes and fires the deadlines of one instance, from the wake-up sources it is given, in
 * batches, retrying failed firings with backoff.
 *
 * @example
 * ```ts
 * const runner = new DeadlineRunner(rt, { wakeups: ["sweep"], sweepMs: 100 });
 * runner.start();
 * await runner.stop();
 * ```
 */
export class DeadlineRunner {
  readonly #rt: Runtime;
  #options: Required<Omit<DeadlineRunnerOptions, keyof DeadlineIoOptions>>;
  readonly #io: DeadlineIo;
  readonly #limit: Limiter;
  readonly #ioLimit: Limiter;
  /** Local wake-ups of deadlines that fall due before the next sweep, by key. */
  readonly #scheduled = new Map<string, ReturnType<typeof setTimeout>>();
  /** Keys being fired by this instance: a second wake-up for one of them is dropped. */
  readonly #inFlight = new Set<string>();
  /** Deadlines waiting for the next batch (wake-ups arriving together fire together). */
  readonly #queued = new Map<string, DeadlineRef>();
  #flush?: Promise<void>;
  /** Batches committing now: a stop waits for them (KV is closed right after). */
  readonly #batches = new Set<Promise<void>>();
  /** Deadlines this instance fired (or found gone) lately, by key, oldest first: when. */
  readonly #recentlyFired = new Map<string, number>();
  /** Deadlines whose firing failed: not retried before `retryAt`. */
  readonly #failing = new Map<string, { failures: number; retryAt: number }>();
  readonly #stop = new AbortController();
  #sweepTimer?: ReturnType<typeof setInterval>;
  #sweeping?: Promise<Promise<void>[]>;

  constructor(rt: Runtime, options: DeadlineRunnerOptions) {
    this.#rt = rt;
    this.#options = {
      wakeups: options.wakeups,
      sweepMs: options.sweepMs ?? 500,
      concurrency: options.concurrency ?? 4,
      batchSize: options.batchSize ?? 48,
      failureBackoffMs: options.failureBackoffMs ?? 1000,
      maxFailureBackoffMs: options.maxFailureBackoffMs ?? 300_000,
      heartbeatSlotMs: options.heartbeatSlotMs ?? 250,
    };
    this.#io = new DeadlineIo(rt, options);
    this.#limit = new Limiter(this.#options.concurrency);
    this.#ioLimit = new Limiter(this.#options.concurrency * 2);
  }

  /** The wake-ups this runner uses (`cron` included when the platform needs it). */
  get wakeups(): readonly TimerWakeup[] {
    return this.#options.wakeups;
  }

  /** Adds queue wake-ups once the delivery probe showed queues work, served by `channel`. */
  useQueue(channel: QueueChannel): void {
    if (this.#stopped || this.#options.wakeups.includes("queue")) return;
    this.#options.wakeups = ["queue", ...this.#options.wakeups];
    channel.onMessage((message) => this.#onQueueMessage(message));
  }

  /** Starts the configured wake-ups (`cron` is registered by the entry point, once per process). */
  start(): void {
    if (this.#options.wakeups.includes("queue")) {
      new QueueChannel(this.#rt.kv).onMessage((message) => this.#onQueueMessage(message));
    }
    if (this.#options.wakeups.includes("sweep")) {
      this.#sweepTimer = setInterval(() => void this.sweep(), this.#options.sweepMs);
    }
  }

  /** Stops the sweep; queue messages arriving later are ignored. */
  async stop(): Promise<void> {
    this.#stop.abort();
    clearInterval(this.#sweepTimer);
    for (const timer of this.#scheduled.values()) clearTimeout(timer);
    this.#scheduled.clear();
    this.#queued.clear();
    await Promise.all([this.#sweeping, ...this.#batches]);
  }

  get #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  async #onQueueMessage(message: unknown): Promise<void> {
    const key = (message as { timer?: Deno.KvKey })?.timer;
    if (!Array.isArray(key) || this.#stopped) return;
    // Queue delays are measured from the enqueue, which may precede the commit's clock
    // reading; a message a little early waits instead of finding its deadline not yet due.
    // (A heartbeat check waits for its slot, to fire with the others of that slot.)
    const early = typeof key[1] === "number" ? this.#wakeTime(key) - this.#rt.ctx.now() : 0;
    if (early > 0) {
      await delay(Math.min(early, MAX_EARLY_WAIT_MS), { signal: this.#stop.signal }).catch(
        () => {},
      );
    }
    // A local wake-up already covers it, or fired it: do not read KV just to find it done.
    const id = JSON.stringify(key);
    if (this.#stopped || this.#scheduled.has(id) || this.#recentlyFired.has(id)) return;
    // Not awaited: the message is acknowledged at once, so a burst of them is not delivered
    // one firing at a time behind each other.
    void this.#fireSoon([key]);
  }

  /**
   * Fires every deadline that is due and resolves once they fired. The periodic sweep skips
   * a tick while the previous one is still firing: under overload, listing again would only
   * add reads, and what falls due meanwhile was scheduled locally by the previous listing.
   */
  async sweep(): Promise<void> {
    await Promise.all(await this.#list());
  }

  /** One sweep at a time: the listing and the firings it started. */
  #list(): Promise<Promise<void>[]> {
    this.#sweeping ??= this.#listDue().then(async (firing) => {
      await Promise.all(firing);
      return firing;
    }).finally(() => this.#sweeping = undefined);
    return this.#sweeping;
  }

  async #listDue(): Promise<Promise<void>[]> {
    const firing: Promise<void>[] = [];
    try {
      // Pages continue after the last key seen: a deadline that failed, or is still
      // firing, is not read again in the same listing, and nothing later than the horizon
      // is read at all.
      let after: Deno.KvKey | undefined;
      while (!this.#stopped) {
        const now = this.#rt.ctx.now();
        // Also list what falls due before the sweep after next and wake it locally on time:
        // lateness near zero instead of up to a sweep period, and a whole period or more
        // to read ahead what the firings will read.
        const horizon = now + 2 * this.#options.sweepMs;
        const page = await listDueTimers(this.#rt.kv, horizon, { limit: SWEEP_PAGE, after });
        const due: TimerEntry[] = [];
        const later: TimerEntry[] = [];
        for (const entry of page) {
          const wakeAt = this.#wakeTime(entry.key);
          if (wakeAt > now) later.push(entry);
          else if (this.#mayTry(entry.key, now)) due.push(entry);
        }
        this.#wakeAll(later);
        firing.push(this.#fireSoon(due));
        if (page.length < SWEEP_PAGE) break;
        after = page[page.length - 1].key;
      }
    } catch (err) {
      if (!this.#stopped) this.#rt.log.warn("sweep failed", { err: String(err) });
    }
    return firing;
  }

  /** When to wake a deadline: its due time, or for a heartbeat check the slot it falls in. */
  #wakeTime(key: Deno.KvKey): number {
    const dueAt = Number(key[1]);
    const slot = this.#options.heartbeatSlotMs;
    return key[2] === "heartbeat" && slot > 0 ? Math.ceil(dueAt / slot) * slot : dueAt;
  }

  /** Remembers a deadline that is gone from KV now, forgetting those fired long ago. */
  #rememberFired(key: Deno.KvKey): void {
    const now = this.#rt.ctx.now();
    this.#recentlyFired.set(JSON.stringify(key), now);
    for (const [id, at] of this.#recentlyFired) {
      if (at > now - RECENTLY_FIRED_MS) break;
      this.#recentlyFired.delete(id);
    }
  }

  /** Whether a failing deadline's backoff allows another try now. */
  #mayTry(key: Deno.KvKey, now: number): boolean {
    const failing = this.#failing.get(JSON.stringify(key));
    return !failing || failing.retryAt <= now;
  }

  /**
   * Fires listed deadlines at their wake times from local timers (once per key, however many
   * sweeps see it), from their listed entries (checked at commit) instead of reading them
   * again, and with what their firings read read meanwhile, 10 keys per KV call
   * (`readAhead`): a storm's reads are done before it is due. A read ahead that fails only
   * leaves those reads to the firings.
   */
  #wakeAll(entries: readonly TimerEntry[]): void {
    const fresh = entries.filter((e) => !this.#scheduled.has(JSON.stringify(e.key)));
    if (this.#stopped || fresh.length === 0) return;
    const ahead = readAhead(this.#rt.kv, fresh.map((e) => e.key)).catch(() => []);
    // Waits count from now, not from before the listing (a slow KV takes a while to list).
    const now = this.#rt.ctx.now();
    fresh.forEach((entry, i) => {
      const id = JSON.stringify(entry.key);
      const wait = Math.max(0, this.#wakeTime(entry.key) - now);
      this.#scheduled.set(
        id,
        setTimeout(async () => {
          const listed: ListedDeadline = { ...entry, ahead: (await ahead)[i] };
          this.#scheduled.delete(id);
          void this.#fireSoon([listed]);
        }, wait + 1),
      );
    });
  }

  /**
   * Queues deadlines for the next batch and resolves once that batch (and any it had to wait
   * for) has fired. Deadlines already queued or firing are not queued twice.
   */
  #fireSoon(refs: readonly DeadlineRef[]): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    for (const ref of refs) {
      const id = JSON.stringify(deadlineKey(ref));
      if (!this.#inFlight.has(id)) this.#queued.set(id, ref);
    }
    // Wake-ups of the same instant (timers due together, a sweep page) share one flush.
    this.#flush ??= delay(0).then(() => {
      this.#flush = undefined;
      return this.#fireQueued();
    });
    return this.#flush;
  }

  async #fireQueued(): Promise<void> {
    const refs = [...this.#queued.entries()];
    this.#queued.clear();
    if (this.#stopped || refs.length === 0) return;
    for (const [id] of refs) this.#inFlight.add(id);
    const work: Promise<void>[] = [];
    const isIo = (ref: DeadlineRef) => IO_DEADLINE_KINDS.has(String(deadlineKey(ref)[2]));
    const inTx = refs.flatMap(([, ref]) => isIo(ref) ? [] : [ref]);
    for (let i = 0; i < inTx.length; i += this.#options.batchSize) {
      const batch = inTx.slice(i, i + this.#options.batchSize);
      const firing = this.#limit.run(() => this.#fireBatch(batch));
      this.#batches.add(firing);
      work.push(firing.finally(() => this.#batches.delete(firing)));
    }
    for (const [, ref] of refs.filter(([, ref]) => isIo(ref))) {
      work.push(this.#ioLimit.run(() => this.#fireIo(deadlineKey(ref))));
    }
    await Promise.all(work);
  }

  /** Fires deadlines by key (tests, and the cron); a no-op for keys another wake-up fired. */
  fire(...keys: Deno.KvKey[]): Promise<void> {
    return this.#fireSoon(keys);
  }

  async #fireBatch(refs: DeadlineRef[]): Promise<void> {
    const keys = refs.map(deadlineKey);
    try {
      if (this.#stopped) return;
      const results = await fireDeadlines(this.#rt.ctx, refs);
      results.forEach((result, i) => {
        if (result.ok) this.#fired(keys[i], result.value);
        else this.#failed(keys[i], result.error);
      });
    } finally {
      for (const key of keys) this.#inFlight.delete(JSON.stringify(key));
    }
  }

  async #fireIo(key: Deno.KvKey): Promise<void> {
    try {
      if (this.#stopped) return;
      const firing = await this.#io.fire(key);
      if (firing) this.#record(key, firing.timer.kind, firing.outcome, firing.timer.dueAt);
      else this.#failing.delete(JSON.stringify(key));
    } catch (err) {
      this.#failed(key, err);
    } finally {
      this.#inFlight.delete(JSON.stringify(key));
    }
  }

  #fired(key: Deno.KvKey, fired: Fired | null): void {
    // Deleted by this firing's commit, or found gone: a queue message for it is moot.
    if (fired?.outcome !== "early") this.#rememberFired(key);
    if (!fired) {
      this.#failing.delete(JSON.stringify(key));
      return;
    }
    this.#record(key, fired.timer.kind, fired.outcome, fired.timer.dueAt);
  }

  /** Metrics and logs of one firing. */
  #record(key: Deno.KvKey, kind: string, outcome: FiringOutcome, dueAt: number): void {
    const rt = this.#rt;
    if (outcome === "early") return; // still armed: a later wake-up fires it
    this.#failing.delete(JSON.stringify(key));
    const lateness = rt.ctx.now() - dueAt;
    rt.metrics.deadline(kind, outcome, lateness);
    if (kind === "grace" && outcome !== "noop") rt.metrics.inc(MetricName.graceExpired);
    if (outcome !== "noop" && outcome !== "rearmed") {
      rt.log.info("deadline fired", { deadline: deadlineLabel(key), kind, outcome, lateness });
    }
  }

  /** A firing that threw: logged, counted, and retried later with a growing backoff. */
  #failed(key: Deno.KvKey, err: unknown): void {
    const rt = this.#rt;
    const id = JSON.stringify(key);
    const failures = (this.#failing.get(id)?.failures ?? 0) + 1;
    const wait = Math.min(
      this.#options.failureBackoffMs * 2 ** (failures - 1),
      this.#options.maxFailureBackoffMs,
    );
    this.#failing.set(id, { failures, retryAt: rt.ctx.now() + wait });
    rt.metrics.inc(MetricName.deadlineFailures, { kind: String(key[2]) });
    rt.log.error("deadline failed", {
      deadline: deadlineLabel(key),
      failures,
      retryInMs: wait,
      err: String(err),
    });
  }
}

/**
 * The wake-ups an instance starts with when none are configured: the sweep, plus cron where
 * the KV is shared and outlives the process (no local KV path), so a stopped instance's
 * deadlines still fire. Queues join once {@link probeQueueDelivery} saw a message arrive.
 *
 * @example
 * ```ts
 * baseWakeups(false); // ["sweep", "cron"]: Deno Deploy
 * ```
 */
export function baseWakeups(localKv: boolean): TimerWakeup[] {
  return localKv ? ["sweep"] : ["sweep", "cron"];
}
