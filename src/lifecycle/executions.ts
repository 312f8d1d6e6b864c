/**
 * Execution creation (active at once or queued FIFO, idempotency keys) and the execution
 * views of the API, with `health`.
 *
 * @module
 */
import { newExecutionId, sha256Hex } from "../ids.ts";
import type { CreateExecutionBody, ExecutionCreated, ExecutionView, Health } from "../protocol.ts";
import {
  type ActiveSlot,
  armTimer,
  type ExecutionRecord,
  type GraceRecord,
  IDEMPOTENCY_TTL_MS,
  records,
  transact,
} from "../store/mod.ts";
import { change, type Effects, type LifecycleContext, statusEvent, strip } from "./transition.ts";

/** Everything the 201 body of a creation needs besides the stored record. */
export interface CreationUrls {
  ingestUrl: (executionId: string) => string;
  streamUrl: string;
}

export type CreateExecutionResult =
  | { ok: true; body: ExecutionCreated }
  | { ok: false; status: 404; error: "SESSION_NOT_FOUND" }
  | { ok: false; status: 409; error: "EXECUTION_IN_PROGRESS"; activeExecutionId: string }
  | { ok: false; status: 429; error: "QUEUE_FULL" }
  | { ok: false; status: 422; error: "IDEMPOTENCY_KEY_REUSED" };

/**
 * Creates an execution: active at once on an idle session (arming the pending-start
 * deadline), else queued FIFO. With an idempotency key, a retry gets the first response.
 */
export async function createExecution(
  ctx: LifecycleContext,
  sessionId: string,
  body: CreateExecutionBody,
  urls: CreationUrls,
  idempotencyKey?: string,
): Promise<{ result: CreateExecutionResult; effects: Effects }> {
  const requestHash = await sha256Hex(canonicalJson(body));
  const executionId = newExecutionId();
  const token = await ctx.credentials.ingestToken(executionId);
  const tokenHash = await sha256Hex(token);
  const { result, effects } = await change(
    ctx,
    sessionId,
    async (tx, p): Promise<CreateExecutionResult> => {
      const session = await records.session(sessionId).get(tx);
      if (!session || session.deletedAt) {
        return {
          ok: false,
          status: 404,
          error: "SESSION_NOT_FOUND",
        };
      }
      if (idempotencyKey !== undefined) {
        const previous = await records.idempotency(sessionId, idempotencyKey).get(tx);
        if (previous) {
          if (previous.requestHash !== requestHash) {
            return {
              ok: false,
              status: 422,
              error: "IDEMPOTENCY_KEY_REUSED",
            };
          }
          return {
            ok: true,
            body: {
              ...previous.body,
              ingestToken: await ctx.credentials.ingestToken(previous.executionId),
            },
          };
        }
      }
      const [active, queue] = await Promise.all([
        records.active(sessionId).get(tx),
        records.queue(sessionId).get(tx),
      ]);
      if (active && body.ifIdle) {
        return {
          ok: false,
          status: 409,
          error: "EXECUTION_IN_PROGRESS",
          activeExecutionId: active.executionId,
        };
      }
      const waiting = queue?.executionIds ?? [];
      if (active && waiting.length >= ctx.config.maxQueue) {
        return {
          ok: false,
          status: 429,
          error: "QUEUE_FULL",
        };
      }
      const exec: ExecutionRecord = strip({
        executionId,
        sessionId,
        status: "pending",
        graceMs: body.graceMs ?? ctx.config.disconnectGraceMs,
        heartbeatTimeoutMs: body.heartbeatTimeoutMs ?? ctx.config.heartbeatTimeoutMs,
        callbackUrl: body.callbackUrl,
        createdAt: p.at,
        activatedAt: active ? undefined : p.at,
        lastSeq: 0,
        tokenHash,
      });
      records.execution(executionId).set(tx, exec);
      records.input(executionId).set(tx, { input: body.input ?? null });
      records.sessionExecution(sessionId, executionId).set(tx, true);
      if (active) {
        records.queue(sessionId).set(tx, { executionIds: [...waiting, executionId] });
      } else {
        records.active(sessionId).set(tx, { executionId });
        armTimer(tx, "pending", executionId, p.now + ctx.config.pendingTimeoutMs);
      }
      p.events.push(statusEvent(exec, null, !active, p.at));
      const response: Omit<ExecutionCreated, "ingestToken"> = {
        executionId,
        sessionId,
        status: "pending",
        active: !active,
        queuePosition: active ? waiting.length + 1 : 0,
        ingestUrl: urls.ingestUrl(executionId),
        streamUrl: urls.streamUrl,
      };
      if (idempotencyKey !== undefined) {
        records.idempotency(sessionId, idempotencyKey).set(
          tx,
          { requestHash, executionId, body: response },
          { expireIn: IDEMPOTENCY_TTL_MS },
        );
      }
      return { ok: true, body: { ...response, ingestToken: token } };
    },
  );
  return { result, effects };
}

/**
 * JSON with object keys sorted at every depth, so a retry that sends the same body with its
 * keys in another order counts as the same body.
 */
function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
        : v,
  );
}

/** The execution as the API shows it, or `null` when it is not of this (live) session. */
export async function executionView(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
): Promise<ExecutionView | null> {
  const views = await executionViews(ctx, sessionId, [executionId]);
  return views[0] ?? null;
}

/** Views of several executions of one session, in the order given (unknown ones skipped). */
export async function executionViews(
  ctx: LifecycleContext,
  sessionId: string,
  executionIds: readonly string[],
): Promise<ExecutionView[]> {
  const now = ctx.now();
  return await transact(ctx.kv, async (tx) => {
    // One getMany: a single view (four keys) is one snapshot, so `active` and `status`
    // agree even while a promotion commits; a page reads in batches, not key by key.
    const values = await tx.getMany<unknown[]>([
      records.active(sessionId).key,
      records.grace(sessionId).key,
      ...executionIds.flatMap((eid) => [records.execution(eid).key, records.input(eid).key]),
    ]);
    const active = values[0] as ActiveSlot | null;
    const grace = values[1] as GraceRecord | null;
    const out: ExecutionView[] = [];
    executionIds.forEach((eid, i) => {
      const exec = values[2 + 2 * i] as ExecutionRecord | null;
      const input = values[3 + 2 * i] as { input: unknown } | null;
      if (!exec || exec.sessionId !== sessionId) return;
      out.push(toView(exec, input?.input ?? null, active?.executionId === eid, grace, now));
    });
    return out;
  });
}

function toView(
  exec: ExecutionRecord,
  input: unknown,
  active: boolean,
  grace: GraceRecord | null,
  now: number,
): ExecutionView {
  return strip({
    executionId: exec.executionId,
    sessionId: exec.sessionId,
    status: exec.status,
    active,
    input,
    graceMs: exec.graceMs,
    heartbeatTimeoutMs: exec.heartbeatTimeoutMs,
    createdAt: exec.createdAt,
    activatedAt: exec.activatedAt,
    startedAt: exec.startedAt,
    completedAt: exec.completedAt,
    lastHeartbeatAt: exec.lastHeartbeatAt === undefined
      ? undefined
      : new Date(exec.lastHeartbeatAt).toISOString(),
    error: exec.error,
    health: health(exec, grace, now),
  });
}

/** `disconnected` over `stale` over `healthy`; `null` unless running. */
export function health(exec: ExecutionRecord, grace: GraceRecord | null, now: number): Health {
  if (exec.status !== "running") return null;
  if (grace?.executionId === exec.executionId) return "disconnected";
  const last = exec.lastHeartbeatAt ?? Date.parse(exec.startedAt ?? exec.createdAt);
  return now - last > exec.heartbeatTimeoutMs / 2 ? "stale" : "healthy";
}
