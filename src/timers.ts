/**
 * Durable deadlines, the firing side. A deadline is a KV entry written in the same commit as
 * the state change that arms it (see `armTimer`); this module wakes them up: KV queue
 * messages where queues work, an in-process sweep, and `Deno.cron` where idle instances are
 * stopped. Firing commits the effect together with the checked deletion of the entry, so
 * however many wake-ups arrive, each deadline has at most one effect.
 *
 * Completion callbacks and session purges do I/O, so they run outside a transaction: a
 * callback first claims its deadline (replacing it by a lease), sends, then records the
 * outcome; a purge deletes in batches and removes the tombstone last.
 *
 * @module
 */
import { delay } from "./async.ts";
import type { TimerWakeup } from "./config.ts";
import { fireDeadline } from "./lifecycle.ts";
import type { Runtime } from "./runtime.ts";
import {
  armTimer,
  listDueTimers,
  purgeSessionData,
  records,
  timerKey,
  type TimerRecord,
  transact,
} from "./store/mod.ts";

/** Timers read per sweep listing (a sweep lists again until nothing new is due). */
const SWEEP_PAGE = 500;
/** A queue message that arrives before its due time waits at most this long (ms); the sweep covers the rest. */
const MAX_EARLY_WAIT_MS = 1000;

/** Options of {@link DeadlineRunner}. */
export interface DeadlineRunnerOptions {
  wakeups: readonly TimerWakeup[];
  /** Sweep period in ms. Default 500. */
  sweepMs?: number;
  /** Base of the callback retry backoff (1 min × 2ⁿ in production). Default 60000. */
  callbackBackoffMs?: number;
  /** Tries of a callback before giving up. Default 5. */
  callbackTries?: number;
  /** How long a claimed callback is leased before another wake-up may retry it. Default 30000. */
  callbackLeaseMs?: number;
  /** Timeout of one callback request. Default 10000. */
  callbackTimeoutMs?: number;
  /** Deadlines fired at once, queue wake-ups and sweep together. Default 8. */
  concurrency?: number;
}

/** Wakes and fires the deadlines of one instance. */
export class DeadlineRunner {
  readonly #rt: Runtime;
  readonly #options: Required<DeadlineRunnerOptions>;
  readonly #limit: Limiter;
  /** Local wake-ups of deadlines that fall due before the next sweep, by key. */
  readonly #scheduled = new Map<string, ReturnType<typeof setTimeout>>();
  /** Keys being fired by this instance: a second wake-up for one of them is dropped. */
  readonly #inFlight = new Set<string>();
  readonly #stop = new AbortController();
  #sweepTimer?: ReturnType<typeof setInterval>;
  #sweeping?: Promise<void>;

  constructor(rt: Runtime, options: DeadlineRunnerOptions) {
    this.#rt = rt;
    this.#options = {
      sweepMs: 500,
      callbackBackoffMs: 60_000,
      callbackTries: 5,
      callbackLeaseMs: 30_000,
      callbackTimeoutMs: 10_000,
      concurrency: 8,
      ...options,
    };
    this.#limit = new Limiter(this.#options.concurrency);
  }

  /** The wake-ups this runner uses (`cron` included when the platform needs it). */
  get wakeups(): readonly TimerWakeup[] {
    return this.#options.wakeups;
  }

  /** Starts the configured wake-ups (`cron` is registered by the entry point, once per process). */
  start(): void {
    if (this.#options.wakeups.includes("queue")) {
      this.#rt.kv.listenQueue((message) => this.#onQueueMessage(message)).catch(() => {});
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
    await this.#sweeping;
  }

  get #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  async #onQueueMessage(message: unknown): Promise<void> {
    const key = (message as { timer?: Deno.KvKey })?.timer;
    if (!Array.isArray(key) || this.#stopped) return;
    // Queue delays are measured from the enqueue, which may precede the commit's clock
    // reading; a message a little early waits instead of finding its deadline not yet due.
    const early = typeof key[1] === "number" ? key[1] - this.#rt.ctx.now() : 0;
    if (early > 0) {
      await delay(Math.min(early, MAX_EARLY_WAIT_MS), { signal: this.#stop.signal }).catch(
        () => {},
      );
    }
    // A local wake-up already covers it: do not take a firing slot just to find it done.
    const id = JSON.stringify(key);
    if (this.#stopped || this.#scheduled.has(id) || this.#inFlight.has(id)) return;
    await this.#limit.run(() => this.fire(key));
  }

  /** Fires every deadline that is due (one sweep at a time). */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweepOnce().finally(() => this.#sweeping = undefined);
    return this.#sweeping;
  }

  async #sweepOnce(): Promise<void> {
    try {
      // A deadline that failed to fire stays listed: stop when a listing brings nothing new.
      const tried = new Set<string>();
      while (!this.#stopped) {
        const now = this.#rt.ctx.now();
        // Also list what falls due before the next sweep and wake it locally on time:
        // lateness near zero instead of up to a sweep period. The local KV queue delivers a
        // burst of messages too slowly to be the only punctual wake-up (bench/deadlines.ts).
        const horizon = now + this.#options.sweepMs;
        const listed = await listDueTimers(this.#rt.kv, horizon, SWEEP_PAGE);
        const due: Deno.KvKey[] = [];
        for (const timer of listed) {
          const key = timerKey(timer);
          const id = JSON.stringify(key);
          if (timer.dueAt > now) this.#wakeAt(key, id, timer.dueAt - now);
          else if (!tried.has(id)) {
            tried.add(id);
            due.push(key);
          }
        }
        if (due.length === 0 || this.#stopped) return;
        await Promise.all(
          due.map((key) => this.#limit.run(() => this.#stopped ? undefined : this.fire(key))),
        );
      }
    } catch (err) {
      if (!this.#stopped) this.#rt.log.warn("sweep failed", { err: String(err) });
    }
  }

  /** Fires `key` in `wait` ms from a local timer (once per key, however many sweeps see it). */
  #wakeAt(key: Deno.KvKey, id: string, wait: number): void {
    if (this.#stopped || this.#scheduled.has(id)) return;
    this.#scheduled.set(
      id,
      setTimeout(() => {
        this.#scheduled.delete(id);
        if (!this.#stopped) void this.#limit.run(() => this.fire(key));
      }, wait + 1),
    );
  }

  /** Fires one deadline by its key; a no-op when another wake-up already fired it. */
  async fire(key: Deno.KvKey): Promise<void> {
    const rt = this.#rt;
    const id = JSON.stringify(key);
    if (this.#inFlight.has(id)) return;
    this.#inFlight.add(id);
    try {
      const timer = (await rt.kv.get<TimerRecord>(key)).value;
      if (!timer || timer.dueAt > rt.ctx.now()) return;
      const lateness = rt.ctx.now() - timer.dueAt;
      let outcome: string;
      if (timer.kind === "callback") outcome = await this.#callback(key, timer);
      else if (timer.kind === "purge") outcome = await this.#purge(key, timer);
      else {
        const firing = await fireDeadline(rt.ctx, key, timer);
        if (!firing.ok) return;
        outcome = firing.value.outcome;
      }
      rt.metrics.deadline(timer.kind, outcome, lateness);
      if (timer.kind === "grace" && outcome !== "noop") {
        rt.metrics.inc("tether_grace_expired_total");
      }
      if (outcome !== "noop" && outcome !== "rearmed") {
        rt.log.info("deadline fired", { kind: timer.kind, id: timer.id, outcome, lateness });
      }
    } catch (err) {
      rt.log.error("deadline failed", { key: id, err: String(err) });
    } finally {
      this.#inFlight.delete(id);
    }
  }

  async #callback(key: Deno.KvKey, timer: TimerRecord): Promise<string> {
    const rt = this.#rt;
    const { callback } = timer;
    const attempt = timer.attempt ?? 1;
    // Claim: replace the deadline by a lease, so one wake-up sends and a crash still retries.
    const lease = rt.ctx.now() + this.#options.callbackLeaseMs;
    const claimed = await transact(rt.kv, async (tx) => {
      if (!(await tx.get(key))) return false;
      tx.delete(key);
      if (callback) armTimer(tx, "callback", timer.id, lease, { attempt, callback });
      return true;
    }, { queues: rt.ctx.queues });
    if (!claimed || !callback) return "noop";
    const leaseKey = timerKey({ ...timer, dueAt: lease });
    const retry = await this.#post(callback.url, JSON.stringify(callback.body));
    const again = retry && attempt < this.#options.callbackTries;
    await transact(rt.kv, async (tx) => {
      if (!(await tx.get(leaseKey))) return;
      tx.delete(leaseKey);
      if (again) {
        const wait = this.#options.callbackBackoffMs * 2 ** (attempt - 1);
        armTimer(tx, "callback", timer.id, rt.ctx.now() + wait, {
          attempt: attempt + 1,
          callback,
        });
      }
    }, { queues: rt.ctx.queues });
    if (!retry) return "delivered";
    return again ? "retry" : "gave-up";
  }

  /** POSTs a signed callback; returns true when it should be retried. */
  async #post(url: string, body: string): Promise<boolean> {
    try {
      const res = await fetch(url, {
        method: "POST",
        body,
        headers: {
          "content-type": "application/json",
          "x-tether-signature": await this.#rt.credentials.signature(body),
        },
        signal: AbortSignal.timeout(this.#options.callbackTimeoutMs),
      });
      await res.body?.cancel();
      return res.status === 429 || res.status >= 500;
    } catch {
      return true;
    }
  }

  async #purge(key: Deno.KvKey, timer: TimerRecord): Promise<string> {
    const rt = this.#rt;
    const session = await transact(rt.kv, (tx) => records.session(timer.id).get(tx));
    if (!session?.deletedAt || session.incarnation !== timer.incarnation) {
      await transact(rt.kv, async (tx) => {
        if (await tx.get(key)) tx.delete(key);
      });
      return "noop";
    }
    await purgeSessionData(rt.kv, timer.id);
    return await transact(rt.kv, async (tx) => {
      if (!(await tx.get(key))) return "noop";
      tx.delete(key);
      const current = await records.session(timer.id).get(tx);
      if (current?.deletedAt && current.incarnation === timer.incarnation) {
        records.session(timer.id).delete(tx);
      }
      return "purged";
    });
  }
}

/**
 * Which wake-ups to use when none are configured: queues only where a probe shows they
 * work (the current Deno Deploy has none), always the sweep, and cron where a platform
 * stops idle instances (no local KV path).
 */
export async function chooseWakeups(kv: Deno.Kv, localKv: boolean): Promise<TimerWakeup[]> {
  const wakeups: TimerWakeup[] = ["sweep"];
  if (await queuesWork(kv)) wakeups.unshift("queue");
  if (!localKv) wakeups.push("cron");
  return wakeups;
}

async function queuesWork(kv: Deno.Kv): Promise<boolean> {
  try {
    const result = await kv.atomic().enqueue({ probe: true }).commit();
    return result.ok;
  } catch {
    return false;
  }
}

/** Runs at most `max` tasks at once; the rest wait their turn in order. */
class Limiter {
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  async run<T>(task: () => Promise<T> | T): Promise<T> {
    // A finishing task hands its slot straight to the next waiter.
    if (this.#active < this.max) this.#active++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
