/**
 * The frame of every transition: the context it runs in, the events it accumulates,
 * `change()`, which runs it as one optimistic KV transaction that also appends its events
 * and then runs the after-commit step itself, and {@link Outcome}, the one result shape of
 * every transition.
 *
 * No caller is handed effects to run: `change()` (and the batched deadline firing, through
 * `afterCommit`) hands them to `ctx.committed` as soon as the commit succeeded, so none can
 * be forgotten.
 *
 * @module
 */
import type { Config } from "../config.ts";
import type { Credentials } from "../auth.ts";
import { withoutUndefined } from "../objects.ts";
import type { ExecutionStatus, ExecutionStatusData } from "../protocol.ts";
import {
  appendEvents,
  type ExecutionRecord,
  type KnownEntries,
  type NewEvent,
  type StoredEvent,
  transact,
  type Tx,
} from "../store/mod.ts";

/** What transitions need from their surroundings. */
export interface LifecycleContext {
  kv: Deno.Kv;
  config: Config;
  credentials: Credentials;
  /** This instance's id: connections it admits are owned by it. */
  instanceId: string;
  /** Whether commits also enqueue KV queue wake-ups for the deadlines they arm. */
  queues: boolean;
  now: () => number;
  /**
   * The after-commit step (push stored events to local viewers, wake the instances the
   * commit addressed). `change()` calls it once per successful commit.
   */
  committed(effects: Effects): void;
}

/** What a committed transition leaves to do after the commit (see `LifecycleContext.committed`). */
export interface Effects {
  sessionId: string;
  /** Events the commit stored, to push to this instance's viewers. */
  stored: StoredEvent[];
  /** Instances whose inbox got a message (close or kill a connection). */
  notified: Set<string>;
}

/**
 * The events and notifications a transition accumulates before its commit, and the commit's
 * clock: every event the service emits in one commit carries `at` (PROTOCOL.md section 3).
 *
 * @example
 * ```ts
 * const p = new Pending(ctx.now());
 * p.events.push(statusEvent(exec, null, true, p.at));
 * ```
 */
export class Pending {
  readonly events: NewEvent[] = [];
  readonly notified = new Set<string>();
  constructor(readonly now: number) {}
  get at(): string {
    return new Date(this.now).toISOString();
  }
}

/**
 * The one result shape of every transition: `ok` with what it did, or `ok: false` with why
 * it refused (a refusal commits nothing). Refusals are domain words (`code`); routes map
 * them to HTTP statuses or close codes.
 *
 * @example
 * ```ts
 * const outcome: Outcome<number, Refusal<"SESSION_NOT_FOUND">> = done(3);
 * if (outcome.ok) console.log(outcome.value);
 * ```
 */
export type Outcome<T, R extends Refusal = never> =
  | { ok: true; value: T }
  | ([R] extends [never] ? never : { ok: false; refusal: R });

/** Why a transition refused: a domain code and the details a caller may report. */
export type Refusal<C extends string = string, D extends object = object> = { code: C } & D;

/** The `ok` outcome carrying `value`. */
export const done = <T>(value: T): { ok: true; value: T } => ({ ok: true, value });

/** The refused outcome carrying `refusal`. */
export const refuse = <R extends Refusal>(refusal: R): { ok: false; refusal: R } => ({
  ok: false,
  refusal,
});

/**
 * Runs `body` as one optimistic transaction; the events it pushed onto `Pending` are
 * appended to the session's log in the same commit, with consecutive eventIds. Once the
 * commit succeeded, runs `ctx.committed` with what it stored and whom it notified.
 * `options.known`: records the caller's last commit left (see `KnownEntries`). A refusal
 * should write nothing, so that it commits nothing.
 *
 * @example
 * ```ts
 * const outcome = await change(ctx, "ses_1", async (tx, p) => {
 *   const exec = await records.execution(executionId).get(tx);
 *   if (!exec) return refuse({ code: ErrorCode.executionNotFound });
 *   p.events.push(serviceEvent(executionId, "interrupted", p.at, { reason }));
 *   return done(exec.status);
 * });
 * ```
 */
export async function change<T>(
  ctx: LifecycleContext,
  sessionId: string,
  body: (tx: Tx, p: Pending) => Promise<T>,
  options: { known?: KnownEntries } = {},
): Promise<T> {
  const { result, effects } = await transact(ctx.kv, async (tx) => {
    const p = new Pending(ctx.now());
    const result = await body(tx, p);
    const stored = await appendEvents(tx, sessionId, p.events, p.now);
    return { result, effects: { sessionId, stored, notified: p.notified } };
  }, { queues: ctx.queues, known: options.known });
  afterCommit(ctx, effects);
  return result;
}

/**
 * Runs `ctx.committed` for a commit that stored events or notified an instance. For callers
 * that commit without {@link change} (the batched deadline firing).
 *
 * @example
 * ```ts
 * if (result.ok && result.value) afterCommit(ctx, result.value.effects);
 * ```
 */
export function afterCommit(ctx: LifecycleContext, effects: Effects): void {
  if (effects.stored.length > 0 || effects.notified.size > 0) ctx.committed(effects);
}

/**
 * The `execution_status` event of a creation, promotion or transition (PROTOCOL.md section 7):
 * `error` is included only for `failed` and `interrupted`.
 *
 * @example
 * ```ts
 * p.events.push(statusEvent(running, "pending", true, p.at)); // pending → running
 * ```
 */
export function statusEvent(
  exec: ExecutionRecord,
  previousStatus: ExecutionStatus | null,
  active: boolean,
  at: string,
): NewEvent {
  const data: ExecutionStatusData = withoutUndefined({
    status: exec.status,
    previousStatus,
    active,
    error: exec.status === "failed" || exec.status === "interrupted" ? exec.error : undefined,
  });
  return {
    executionId: exec.executionId,
    streamEventType: "execution_status",
    timestamp: at,
    data,
  };
}

/** An event the service emits itself, stamped with the commit's time. */
export const serviceEvent = (
  executionId: string,
  streamEventType: string,
  at: string,
  data: unknown,
): NewEvent => ({
  executionId,
  streamEventType,
  timestamp: at,
  data,
});
