/**
 * Session transitions: creation (with its TTL deadline), reads, and deletion as one commit
 * (a tombstone, live executions failed, a purge deadline).
 *
 * @module
 */
import { newSessionId, randomSecret } from "../ids.ts";
import { ErrorText, isTerminal, type SessionView } from "../protocol.ts";
import {
  type ActiveSlot,
  armTimer,
  type HeadRecord,
  type QueueRecord,
  records,
  type SessionRecord,
  touchHead,
  transact,
  type Tx,
} from "../store/mod.ts";
import {
  change,
  type Effects,
  type LifecycleContext,
  Pending,
  serviceEvent,
} from "./transition.ts";
import { finish } from "./finish.ts";

/** The outcome of {@link createSession}. */
export type CreateSessionResult =
  | { ok: true; session: SessionRecord }
  | { ok: false; error: "SESSION_EXISTS" };

/** Creates a session (and arms its TTL); fails when the id exists or is still a tombstone. */
export async function createSession(
  ctx: LifecycleContext,
  input: { sessionId?: string; metadata?: Record<string, unknown> },
): Promise<CreateSessionResult> {
  const sessionId = input.sessionId ?? newSessionId();
  const { result } = await change(ctx, sessionId, async (tx, p) => {
    if (await records.session(sessionId).get(tx)) {
      return { ok: false, error: "SESSION_EXISTS" } as const;
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
    return { ok: true, session } as const;
  });
  return result;
}

/** A live (not deleted) session, or `null`. */
export async function getLiveSession(
  kv: Deno.Kv,
  sessionId: string,
): Promise<SessionRecord | null> {
  const session = await transact(kv, (tx) => records.session(sessionId).get(tx));
  return session && !session.deletedAt ? session : null;
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
    if (!session || session.deletedAt) return null;
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
 * Returns `false` for an unknown or already deleted session.
 */
export async function deleteSession(
  ctx: LifecycleContext,
  sessionId: string,
): Promise<{ deleted: boolean; effects: Effects }> {
  const { result, effects } = await change(
    ctx,
    sessionId,
    (tx, p) => tombstone(ctx, tx, p, sessionId),
  );
  return { deleted: result, effects };
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
  if (!session || session.deletedAt) return false;
  const [active, queue] = await Promise.all([
    records.active(sessionId).get(tx),
    records.queue(sessionId).get(tx),
  ]);
  const live = [...(active ? [active.executionId] : []), ...(queue?.executionIds ?? [])];
  for (const eid of live) {
    const exec = await records.execution(eid).get(tx);
    if (!exec || isTerminal(exec.status)) continue;
    const cause = serviceEvent(eid, "error", p.at, {
      error: ErrorText.sessionDeleted,
      fatal: true,
    });
    await finish(ctx, tx, p, exec, "failed", ErrorText.sessionDeleted, [cause], { promote: false });
  }
  for (const entry of [records.active, records.queue, records.interrupt, records.grace]) {
    entry(sessionId).delete(tx);
  }
  records.session(sessionId).set(tx, { ...session, deletedAt: p.at });
  await touchHead(tx, sessionId);
  armTimer(tx, "purge", sessionId, p.now, { incarnation: session.incarnation });
  return true;
}
