/**
 * Session transitions: creation (with its TTL deadline), reads, and deletion as one commit
 * (a tombstone, live executions failed, a purge deadline).
 *
 * @module
 */
import { newSessionId, randomSecret } from "../ids.ts";
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

/** Creates a session (and arms its TTL); fails when the id exists or is still a tombstone. */
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
      metadata: input.metadata ?? {},
      incarnation: randomSecret(12),
    };
    records.session(sessionId).set(tx, session);
    armTimer(tx, "ttl", sessionId, p.now + ctx.config.sessionTtlMs, {
      incarnation: session.incarnation,
    });
    return done(session);
  });
}

/** A live (not deleted) session, or `null`. */
export async function getLiveSession(
  kv: Deno.Kv,
  sessionId: string,
): Promise<SessionRecord | null> {
  const session = await transact(kv, (tx) => records.session(sessionId).get(tx));
  return isLive(session) ? session : null;
}

/** `GET /v1/sessions/:sid` body, or `null` for an unknown or deleted session. */
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
 * Deletes a session in one commit: a tombstone, every non-terminal execution failed with
 * `Session deleted`, and a `purge` deadline that removes the data in the background.
 * Refused for an unknown or already deleted session.
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
 * deleted`, clears its records and arms the purge. `false` when already gone.
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
  armTimer(tx, "purge", sessionId, p.now, { incarnation: session.incarnation });
  return true;
}
