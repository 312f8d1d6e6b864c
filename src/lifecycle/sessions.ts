/**
 * Session transitions: creation (with its TTL deadline), reads, and deletion as one commit
 * (a tombstone, live executions failed, a purge deadline).
 *
 * @module
 */
import { newSessionId, randomSecret } from "../ids.ts";
import { asJson } from "../objects.ts";
import { ErrorCode, type SessionView } from "../protocol.ts";
import {
  type ActiveSlot,
  armTimer,
  type HeadRecord,
  isLive,
  type QueueRecord,
  records,
  type SessionRecord,
  touchHead,
  transact,
  type Tx,
} from "../store/mod.ts";
import {
  change,
  done,
  type LifecycleContext,
  type Outcome,
  Pending,
  type Refusal,
  refuse,
} from "./transition.ts";
import { finishSession } from "./finish.ts";

/** Why a session transition refused: the session is unknown or deleted. */
export type SessionNotFound = Refusal<typeof ErrorCode.sessionNotFound>;

/**
 * Creates a session and arms its TTL deadline in one commit (PROTOCOL.md section 4). Refused
 * with `SESSION_EXISTS` when the id is taken, also while a deleted session of that id is still
 * being removed. Each creation gets a new incarnation, which tickets name.
 *
 * @example
 * ```ts
 * const created = await createSession(ctx, { sessionId: "ses_1", metadata: { repo: "web" } });
 * if (!created.ok) console.log(created.refusal.code); // "SESSION_EXISTS"
 * ```
 */
export async function createSession(
  ctx: LifecycleContext,
  input: { sessionId?: string; metadata?: Record<string, unknown> },
): Promise<Outcome<SessionRecord, Refusal<typeof ErrorCode.sessionExists>>> {
  const sessionId = input.sessionId ?? newSessionId();
  return await change(ctx, sessionId, async (tx, p) => {
    if (await records.session(sessionId).get(tx)) {
      return refuse({ code: ErrorCode.sessionExists });
    }
    const session: SessionRecord = {
      sessionId,
      createdAt: p.at,
      // Measured as JSON at the edge, so stored as JSON reads back (see asJson).
      metadata: asJson(input.metadata ?? {}),
      incarnation: randomSecret(12),
    };
    records.session(sessionId).set(tx, session);
    armTimer(tx, "ttl", sessionId, p.now + ctx.config.sessionTtlMs, {
      incarnation: session.incarnation,
    });
    return done(session);
  });
}

/**
 * A live (not deleted) session, or `null`.
 *
 * @example
 * ```ts
 * const session = await getLiveSession(kv, "ses_1");
 * if (session) console.log(session.incarnation);
 * ```
 */
export async function getLiveSession(
  kv: Deno.Kv,
  sessionId: string,
): Promise<SessionRecord | null> {
  const session = await transact(kv, (tx) => records.session(sessionId).get(tx));
  return isLive(session) ? session : null;
}

/**
 * The session's live record (`null` once deleted) and its newest eventId, as one snapshot:
 * where a viewer of a deleted session stops (the deletion's own events included).
 *
 * @example
 * ```ts
 * const { live, lastEventId } = await sessionAndHead(kv, "ses_1");
 * if (!live) console.log("deleted after event", lastEventId);
 * ```
 */
export async function sessionAndHead(
  kv: Deno.Kv,
  sessionId: string,
): Promise<{ live: SessionRecord | null; lastEventId: number }> {
  return await transact(kv, async (tx) => {
    const [session, head] = await tx.getMany<[SessionRecord, HeadRecord]>([
      records.session(sessionId).key,
      records.head(sessionId).key,
    ]);
    return { live: isLive(session) ? session : null, lastEventId: head?.lastEventId ?? 0 };
  });
}

/**
 * The `GET /v1/sessions/:sid` body (PROTOCOL.md section 4), read as one snapshot, or `null`
 * for an unknown or deleted session.
 *
 * @example
 * ```ts
 * const view = await sessionView(ctx, "ses_1");
 * console.log(view?.activeExecutionId, view?.queuedExecutionIds, view?.lastEventId);
 * ```
 */
export async function sessionView(
  ctx: LifecycleContext,
  sessionId: string,
): Promise<SessionView | null> {
  return await transact(ctx.kv, async (tx) => {
    // One snapshot: a read-only transaction is not checked at commit, and separate reads
    // could show an execution both active and queued while a promotion commits.
    const [session, active, queue, head] = await tx.getMany<
      [SessionRecord, ActiveSlot, QueueRecord, HeadRecord]
    >([
      records.session(sessionId).key,
      records.active(sessionId).key,
      records.queue(sessionId).key,
      records.head(sessionId).key,
    ]);
    if (!isLive(session)) return null;
    return {
      sessionId,
      createdAt: session.createdAt,
      metadata: session.metadata,
      activeExecutionId: active?.executionId ?? null,
      queuedExecutionIds: queue?.executionIds ?? [],
      lastEventId: head?.lastEventId ?? 0,
    };
  });
}

/**
 * Deletes a session in one commit (PROTOCOL.md section 4): a tombstone, every non-terminal
 * execution failed with `Session deleted` (their connections closed with 4000), and a `purge`
 * deadline that removes the data in the background. Refused with `SESSION_NOT_FOUND` for an
 * unknown or already deleted session.
 *
 * @example
 * ```ts
 * const deleted = await deleteSession(ctx, "ses_1");
 * if (!deleted.ok) console.log(deleted.refusal.code); // "SESSION_NOT_FOUND"
 * ```
 */
export async function deleteSession(
  ctx: LifecycleContext,
  sessionId: string,
): Promise<Outcome<void, SessionNotFound>> {
  return await change(
    ctx,
    sessionId,
    async (tx, p) =>
      await tombstone(ctx, tx, p, sessionId)
        ? done(undefined)
        : refuse({ code: ErrorCode.sessionNotFound }),
  );
}

/**
 * Inside a transaction: marks the session deleted, fails its live executions with `Session
 * deleted`, clears its records, wakes its viewers (through the head) and arms the purge.
 * `false`, writing nothing, when already gone. Shared by deletion and the TTL deadline.
 *
 * @example
 * ```ts
 * if (!(await tombstone(ctx, tx, p, sessionId))) return "noop";
 * ```
 */
export async function tombstone(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  sessionId: string,
): Promise<boolean> {
  const session = await records.session(sessionId).get(tx);
  if (!isLive(session)) return false;
  await finishSession(ctx, tx, p, sessionId);
  records.session(sessionId).set(tx, { ...session, deletedAt: p.at });
  await touchHead(tx, sessionId);
  armTimer(tx, "purge", sessionId, p.now + ctx.config.purgeDelayMs, {
    incarnation: session.incarnation,
  });
  return true;
}
