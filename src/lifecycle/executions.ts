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
  isLive,
  readExecutionInput,
  records,
  type StoredExecutionInput,
  storeExecutionInput,
  transact,
  type Tx,
} from "../store/mod.ts";
import { ErrorCode } from "../protocol.ts";
import type { SessionNotFound } from "./sessions.ts";
import {
  change,
  done,
  type LifecycleContext,
  type Outcome,
  type Pending,
  type Refusal,
  refuse,
  statusEvent,
} from "./transition.ts";
import { withoutUndefined } from "../objects.ts";
import { recallIdempotent, rememberIdempotent, requestHash } from "./idempotency.ts";
import { inputState } from "./input.ts";

/** Everything the 201 body of a creation needs besides the stored record. */
export interface CreationUrls {
  ingestUrl: (executionId: string) => string;
  streamUrl: string;
}

/** The body of a created execution (PROTOCOL.md 4), without its ingest token. */
export type CreatedExecution = Omit<ExecutionCreated, "ingestToken">;

/** What {@link createExecution} did: the body to answer, and whether it created anything. */
export interface Creation {
  body: CreatedExecution & { ingestToken: string };
  /** `false` for an idempotent retry: the first creation's body, nothing new stored. */
  created: boolean;
}

/** Why {@link createExecution} refused. */
export type CreationRefusal =
  | SessionNotFound
  | Refusal<typeof ErrorCode.executionInProgress, { activeExecutionId: string }>
  | Refusal<typeof ErrorCode.queueFull>
  | Refusal<typeof ErrorCode.idempotencyKeyReused>;

/** A creation request once its hash is computed (outside the transaction). */
interface CreationRequest {
  sessionId: string;
  body: CreateExecutionBody;
  urls: CreationUrls;
  idempotencyKey?: string;
  requestHash: string;
}

/** The new execution's id and ingest token, made by each attempt of the creation. */
interface NewIdentity {
  executionId: string;
  token: string;
  tokenHash: string;
}

/**
 * A new execution id and its token. Made after the creation's checked reads: a creation that
 * commits in between makes this attempt run again with a later id, so a session's ids (and
 * so its execution list) follow the order in which the executions were queued.
 */
async function newIdentity(ctx: LifecycleContext): Promise<NewIdentity> {
  const executionId = newExecutionId();
  const token = await ctx.credentials.ingestToken(executionId);
  return { executionId, token, tokenHash: await sha256Hex(token) };
}

/**
 * Creates an execution (PROTOCOL.md section 4): active at once on an idle session (arming the
 * pending-start deadline), else queued FIFO; its `execution_status` event is in the same
 * commit. Refused for an unknown session, with `EXECUTION_IN_PROGRESS` under `ifIdle` on a
 * busy session, and with `QUEUE_FULL` when `TETHER_MAX_QUEUE` executions already wait. With
 * an idempotency key, a retry gets the first response (`created: false`, its token derived
 * again) and the same key with another body is refused.
 *
 * @example
 * ```ts
 * const urls = { ingestUrl: (eid: string) => `${base}/…/${eid}/ingest`, streamUrl };
 * const creation = await createExecution(ctx, "ses_1", { input: "fix the tests" }, urls, "key-1");
 * if (creation.ok) console.log(creation.value.body.queuePosition); // 0 when active
 * ```
 */
export async function createExecution(
  ctx: LifecycleContext,
  sessionId: string,
  body: CreateExecutionBody,
  urls: CreationUrls,
  idempotencyKey?: string,
): Promise<Outcome<Creation, CreationRefusal>> {
  const request: CreationRequest = {
    sessionId,
    body,
    urls,
    idempotencyKey,
    requestHash: await requestHash(body),
  };
  return await change(ctx, sessionId, async (tx, p) => {
    if (!isLive(await records.session(sessionId).get(tx))) {
      return refuse({ code: ErrorCode.sessionNotFound });
    }
    const replay = await replayCreation(ctx, tx, request);
    if (replay) return replay;
    const [active, queue] = await Promise.all([
      records.active(sessionId).get(tx),
      records.queue(sessionId).get(tx),
    ]);
    const waiting = queue?.executionIds ?? [];
    if (active && body.ifIdle) {
      return refuse({
        code: ErrorCode.executionInProgress,
        activeExecutionId: active.executionId,
      });
    }
    if (active && waiting.length >= ctx.config.maxQueue) {
      return refuse({ code: ErrorCode.queueFull });
    }
    const identity = await newIdentity(ctx);
    const response = storeExecution(ctx, tx, p, request, identity, active ? waiting : null);
    return done({ body: { ...response, ingestToken: identity.token }, created: true });
  });
}

/**
 * Inside the creation's transaction: the first creation's outcome when the idempotency key
 * was already used (refused when with another body), `undefined` when it is new or absent.
 */
async function replayCreation(
  ctx: LifecycleContext,
  tx: Tx,
  request: CreationRequest,
): Promise<Outcome<Creation, CreationRefusal> | undefined> {
  if (request.idempotencyKey === undefined) return undefined;
  const idempotency = records.idempotency(request.sessionId, request.idempotencyKey);
  const previous = await recallIdempotent(tx, idempotency, request.requestHash);
  if (!previous) return undefined;
  if (previous === "reused") return refuse({ code: ErrorCode.idempotencyKeyReused });
  const ingestToken = await ctx.credentials.ingestToken(previous.executionId);
  return done({
    body: { ...(previous.body as unknown as CreatedExecution), ingestToken },
    created: false,
  });
}

/**
 * Inside the creation's transaction: stores the new execution, active at once when
 * `waiting` is `null` (an idle session) or queued behind `waiting`, with its event and
 * idempotency record. Returns the 201 body without the token.
 */
function storeExecution(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  request: CreationRequest,
  identity: NewIdentity,
  waiting: string[] | null,
): CreatedExecution {
  const { sessionId, body } = request;
  const { executionId } = identity;
  const active = waiting === null;
  const exec: ExecutionRecord = withoutUndefined({
    executionId,
    sessionId,
    status: "pending",
    graceMs: body.graceMs ?? ctx.config.disconnectGraceMs,
    heartbeatTimeoutMs: body.heartbeatTimeoutMs ?? ctx.config.heartbeatTimeoutMs,
    callbackUrl: body.callbackUrl,
    createdAt: p.at,
    activatedAt: active ? p.at : undefined,
    lastSeq: 0,
    tokenHash: identity.tokenHash,
  });
  records.execution(executionId).set(tx, exec);
  records.input(executionId).set(tx, storeExecutionInput(body.input));
  records.sessionExecution(sessionId, executionId).set(tx, true);
  if (active) {
    records.active(sessionId).set(tx, { executionId });
    armTimer(tx, "pending", executionId, p.now + ctx.config.pendingTimeoutMs);
  } else {
    records.queue(sessionId).set(tx, { executionIds: [...waiting, executionId] });
  }
  p.events.push(statusEvent(exec, null, active, p.at));
  const response: CreatedExecution = {
    executionId,
    sessionId,
    status: "pending",
    active,
    queuePosition: active ? 0 : waiting.length + 1,
    ingestUrl: request.urls.ingestUrl(executionId),
    streamUrl: request.urls.streamUrl,
  };
  if (request.idempotencyKey !== undefined) {
    rememberIdempotent(tx, records.idempotency(sessionId, request.idempotencyKey), {
      requestHash: request.requestHash,
      executionId,
      body: { ...response },
    });
  }
  return response;
}

/**
 * The execution as the API shows it (PROTOCOL.md section 4), or `null` when it is not of this
 * session. It does not check that the session is live: the routes' middleware has.
 *
 * @example
 * ```ts
 * const view = await executionView(ctx, "ses_1", executionId);
 * console.log(view?.status, view?.health);
 * ```
 */
export async function executionView(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
): Promise<ExecutionView | null> {
  const views = await executionViews(ctx, sessionId, [executionId]);
  return views[0] ?? null;
}

/**
 * Views of several executions of one session, in the order given (unknown ones, and ones of
 * another session, skipped), read as one snapshot.
 *
 * @example
 * ```ts
 * const ids = await listExecutionIds(kv, "ses_1", { limit: 100 });
 * const executions = await executionViews(ctx, "ses_1", ids);
 * ```
 */
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
      const input = readExecutionInput(values[3 + 2 * i] as StoredExecutionInput | null);
      if (!exec || exec.sessionId !== sessionId) return;
      out.push(toView(exec, input, active?.executionId === eid, grace, now));
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
  return withoutUndefined({
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
    ...inputState(exec),
  });
}

/**
 * An execution's `health` (PROTOCOL.md section 4): `null` unless running; then `disconnected`
 * while its grace runs, else `stale` when its last frame is older than half the heartbeat
 * timeout, else `healthy`.
 *
 * @example
 * ```ts
 * health(exec, grace, Date.now()); // "healthy", "stale", "disconnected" or null
 * ```
 */
export function health(exec: ExecutionRecord, grace: GraceRecord | null, now: number): Health {
  if (exec.status !== "running") return null;
  if (grace?.executionId === exec.executionId) return "disconnected";
  const last = exec.lastHeartbeatAt ?? Date.parse(exec.startedAt ?? exec.createdAt);
  return now - last > exec.heartbeatTimeoutMs / 2 ? "stale" : "healthy";
}
