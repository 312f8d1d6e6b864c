/**
 * The deadlines that do I/O, fired outside a transaction: completion callbacks (a signed
 * POST with durable retries) and session purges (batched deletes).
 *
 * A callback first claims its deadline (replacing it by a lease), sends, then records the
 * outcome, so one wake-up sends and a crash still retries. A purge deletes in batches and
 * removes the tombstone last.
 *
 * @module
 */
import { callbackTargetProblem, type ResolveHost, resolveWithDns } from "./callback_url.ts";
import { type FiringOutcome, parseTimer } from "./lifecycle.ts";
import type { Runtime } from "./runtime.ts";
import {
  armTimer,
  type CallbackTarget,
  purgeSessionData,
  records,
  type SessionRecord,
  timerKey,
  type TimerRecord,
  transact,
} from "./store/mod.ts";

/** Options of {@link DeadlineIo}. */
export interface DeadlineIoOptions {
  /** Base of the callback retry backoff (1 min × 2ⁿ in production). Default 60000. */
  callbackBackoffMs?: number;
  /** Tries of a callback before giving up. Default 5. */
  callbackTries?: number;
  /** How long a claimed callback is leased before another wake-up may retry it. Default 30000. */
  callbackLeaseMs?: number;
  /** Timeout of one callback request. Default 10000. */
  callbackTimeoutMs?: number;
  /** Callbacks may go to private addresses (`TETHER_CALLBACK_PRIVATE=allow`). Default false. */
  callbackPrivate?: boolean;
  /** Resolves callback host names before each try. Default: `Deno.resolveDns`. */
  resolveHost?: ResolveHost;
}

/** A fired I/O deadline. */
export interface IoFiring {
  timer: TimerRecord;
  outcome: FiringOutcome;
}

/**
 * Fires `callback` and `purge` deadlines, the ones that do I/O outside a transaction. The
 * deadline runner owns one and hands it the keys of due I/O deadlines.
 *
 * @example
 * ```ts
 * const io = new DeadlineIo(rt, { callbackTries: 2, callbackBackoffMs: 50 });
 * const fired = await io.fire(key); // null when the deadline is gone or not due yet
 * ```
 */
export class DeadlineIo {
  readonly #rt: Runtime;
  readonly #options: Required<DeadlineIoOptions>;

  constructor(rt: Runtime, options: DeadlineIoOptions = {}) {
    this.#rt = rt;
    this.#options = {
      callbackBackoffMs: options.callbackBackoffMs ?? 60_000,
      callbackTries: options.callbackTries ?? 5,
      callbackLeaseMs: options.callbackLeaseMs ?? 30_000,
      callbackTimeoutMs: options.callbackTimeoutMs ?? 10_000,
      callbackPrivate: options.callbackPrivate ?? false,
      resolveHost: options.resolveHost ?? resolveWithDns,
    };
  }

  /** Fires the deadline at `key`; `null` when it is gone or not due. */
  async fire(key: Deno.KvKey): Promise<IoFiring | null> {
    const raw = (await this.#rt.kv.get<unknown>(key)).value;
    if (raw === null) return null;
    const timer = parseTimer(raw);
    if (timer.dueAt > this.#rt.ctx.now()) return null;
    if (timer.kind === "callback") {
      return { timer, outcome: await this.#callback(key, timer.id, timer.attempt, timer.callback) };
    }
    if (timer.kind === "purge") {
      return { timer, outcome: await this.#purge(key, timer.id, timer.incarnation) };
    }
    throw new Error(`deadline kind ${timer.kind} does no I/O`);
  }

  async #callback(
    key: Deno.KvKey,
    executionId: string,
    attempt: number,
    callback: CallbackTarget,
  ): Promise<FiringOutcome> {
    const rt = this.#rt;
    const queues = { queues: rt.ctx.queues };
    const lease = rt.ctx.now() + this.#options.callbackLeaseMs;
    const claimed = await transact(rt.kv, async (tx) => {
      if (!(await tx.get(key))) return false;
      tx.delete(key);
      armTimer(tx, "callback", executionId, lease, { attempt, callback });
      return true;
    }, queues);
    if (!claimed) return "noop";
    const leaseKey = timerKey({
      kind: "callback",
      id: executionId,
      dueAt: lease,
      attempt,
      callback,
    });
    const failure = await this.#post(callback.url, JSON.stringify(callback.body));
    const again = failure !== undefined && attempt < this.#options.callbackTries;
    if (failure !== undefined) {
      rt.log.warn("callback try failed", { executionId, attempt, failure, retry: again });
    }
    await transact(rt.kv, async (tx) => {
      if (!(await tx.get(leaseKey))) return;
      tx.delete(leaseKey);
      if (!again) return;
      const wait = this.#options.callbackBackoffMs * 2 ** (attempt - 1);
      armTimer(tx, "callback", executionId, rt.ctx.now() + wait, {
        attempt: attempt + 1,
        callback,
      });
    }, queues);
    if (failure === undefined) return "delivered";
    return again ? "retry" : "gave-up";
  }

  /**
   * POSTs a signed callback. Returns why the try failed when it should be retried (network,
   * refused address, 3xx, 429, 5xx), `undefined` when it is done (2xx, or another 4xx).
   */
  async #post(rawUrl: string, body: string): Promise<string | undefined> {
    try {
      const url = new URL(rawUrl);
      if (!this.#options.callbackPrivate) {
        const problem = await callbackTargetProblem(url, this.#options.resolveHost);
        if (problem) return `not called: ${problem}`;
      }
      const res = await fetch(url, {
        method: "POST",
        body,
        // A redirect could re-post the signed body to a host nobody checked.
        redirect: "manual",
        headers: {
          "content-type": "application/json",
          "x-tether-signature": await this.#rt.credentials.signature(body),
        },
        signal: AbortSignal.timeout(this.#options.callbackTimeoutMs),
      });
      await res.body?.cancel();
      if (res.status >= 300 && res.status < 400) return `redirect ${res.status} not followed`;
      if (res.status === 429 || res.status >= 500) return `status ${res.status}`;
      return undefined;
    } catch (err) {
      return String(err);
    }
  }

  async #purge(key: Deno.KvKey, sessionId: string, incarnation: string): Promise<FiringOutcome> {
    const rt = this.#rt;
    const tombstone = await rt.kv.get<SessionRecord>(records.session(sessionId).key);
    const session = tombstone.value;
    const ours = session?.deletedAt && session.incarnation === incarnation;
    // Another instance may finish this purge first and the id be created again meanwhile:
    // then what is left under the id is the new session's, and stays.
    if (!ours || !(await purgeSessionData(rt.kv, sessionId, tombstone.versionstamp!))) {
      await transact(rt.kv, async (tx) => {
        if (await tx.get(key)) tx.delete(key);
      });
      return "noop";
    }
    return await transact(rt.kv, async (tx): Promise<FiringOutcome> => {
      if (!(await tx.get(key))) return "noop";
      tx.delete(key);
      const current = await records.session(sessionId).get(tx);
      if (current?.deletedAt && current.incarnation === incarnation) {
        records.session(sessionId).delete(tx);
      }
      return "purged";
    });
  }
}
