/**
 * The input channel's transitions (PROTOCOL.md section 12): accepting an input (its `input`
 * event, the execution's `lastInputId` and `inputClosed`, the kept input and the wake-up of
 * the instance holding the wrapper's connection, all in one commit), the wrapper's
 * `input_delivered` confirmations, and the input fields of the execution view.
 *
 * An execution record written before inputs existed has none of the fields: it reads as
 * `lastInputId` 0, `deliveredInputId` 0, `inputClosed` false.
 *
 * @module
 */
import {
  ErrorCode,
  type InputEventData,
  InputEventType,
  type InputRequest,
  isTerminal,
  type TerminalStatus,
} from "../protocol.ts";
import { withoutUndefined } from "../objects.ts";
import {
  type AgentInputRecord,
  type ExecutionRecord,
  isLive,
  keepAgentInput,
  postToInbox,
  records,
} from "../store/mod.ts";
import { recallIdempotent, rememberIdempotent, requestHash } from "./idempotency.ts";
import type { SessionNotFound } from "./sessions.ts";
import {
  change,
  done,
  type LifecycleContext,
  type Outcome,
  type Refusal,
  refuse,
  serviceEvent,
} from "./transition.ts";

/** The `202` body of an accepted input. */
export interface InputAcceptedBody extends Record<string, unknown> {
  executionId: string;
  inputId: number;
  status: "pending" | "running";
}

/** Why {@link acceptInput} refused; the route maps each to its HTTP status. */
export type InputRefusal =
  | SessionNotFound
  | Refusal<typeof ErrorCode.executionNotFound>
  | Refusal<typeof ErrorCode.executionEnded, { status: TerminalStatus }>
  | Refusal<typeof ErrorCode.inputClosed>
  | Refusal<typeof ErrorCode.inputQueueFull>
  | Refusal<typeof ErrorCode.idempotencyKeyReused>;

/**
 * The input counters of an execution (PROTOCOL.md section 12), with the defaults of a record
 * that has none.
 *
 * @example
 * ```ts
 * inputState(exec); // { lastInputId: 0, deliveredInputId: 0, inputClosed: false } before any input
 * ```
 */
export function inputState(exec: ExecutionRecord): {
  lastInputId: number;
  deliveredInputId: number;
  inputClosed: boolean;
} {
  return {
    lastInputId: exec.lastInputId ?? 0,
    deliveredInputId: exec.deliveredInputId ?? 0,
    inputClosed: exec.inputClosed ?? false,
  };
}

/**
 * Accepts an input for a `pending` or `running` execution: the next `inputId`, its `input`
 * event, the kept input for (re)delivery and, when a wrapper is connected, an inbox message
 * to the instance that holds it. With an idempotency key, a retry gets the first answer.
 *
 * @example
 * ```ts
 * const outcome = await acceptInput(ctx, "s1", "exc_…", { data: "yes" });
 * if (outcome.ok) console.log(outcome.value.inputId); // 1
 * ```
 */
export async function acceptInput(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
  body: InputRequest,
  idempotencyKey?: string,
): Promise<Outcome<InputAcceptedBody, InputRefusal>> {
  const hash = await requestHash(body);
  return await change(ctx, sessionId, async (tx, p) => {
    const [session, exec] = await Promise.all([
      records.session(sessionId).get(tx),
      records.execution(executionId).get(tx),
    ]);
    if (!isLive(session)) return refuse({ code: ErrorCode.sessionNotFound });
    if (!exec || exec.sessionId !== sessionId) {
      return refuse({ code: ErrorCode.executionNotFound });
    }
    const idempotency = idempotencyKey === undefined
      ? undefined
      : records.inputIdempotency(sessionId, executionId, idempotencyKey);
    const previous = idempotency && await recallIdempotent(tx, idempotency, hash);
    if (previous === "reused") return refuse({ code: ErrorCode.idempotencyKeyReused });
    if (previous) return done(previous.body as InputAcceptedBody);
    const refusal = refusalFor(ctx, exec);
    if (refusal) return refuse(refusal);
    const inputId = inputState(exec).lastInputId + 1;
    const input: AgentInputRecord = withoutUndefined({
      inputId,
      data: body.data,
      endOfInput: body.endOfInput === true ? true as const : undefined,
    });
    keepAgentInput(tx, sessionId, executionId, input);
    records.execution(executionId).set(
      tx,
      withoutUndefined({
        ...exec,
        lastInputId: inputId,
        inputClosed: input.endOfInput ?? exec.inputClosed,
      }),
    );
    p.events.push(
      serviceEvent(executionId, InputEventType.input, p.at, input satisfies InputEventData),
    );
    const conn = await records.conn(executionId).get(tx);
    if (conn) {
      postToInbox(tx, conn.instanceId, { type: "input", connectionId: conn.connectionId });
      p.notified.add(conn.instanceId);
    }
    const accepted: InputAcceptedBody = {
      executionId,
      inputId,
      status: exec.status as InputAcceptedBody["status"],
    };
    if (idempotency) {
      rememberIdempotent(tx, idempotency, { requestHash: hash, executionId, body: accepted });
    }
    return done(accepted);
  });
}

/** Why an execution takes no input now, or `undefined` when it does. */
function refusalFor(ctx: LifecycleContext, exec: ExecutionRecord): InputRefusal | undefined {
  if (isTerminal(exec.status)) return { code: ErrorCode.executionEnded, status: exec.status };
  const { lastInputId, deliveredInputId, inputClosed } = inputState(exec);
  if (inputClosed) return { code: ErrorCode.inputClosed };
  if (lastInputId - deliveredInputId >= ctx.config.maxPendingInputs) {
    return { code: ErrorCode.inputQueueFull };
  }
  return undefined;
}

/**
 * In a frame commit: whether a confirmation of `inputId` is valid for the execution as
 * stored (it names an accepted input), and the record with `deliveredInputId` raised to it.
 * A confirmation at or below `deliveredInputId` is valid and changes nothing; one above
 * `lastInputId` is invalid, an `INVALID_FRAME` (PROTOCOL.md section 12).
 *
 * @example
 * ```ts
 * const delivery = confirmDelivery(exec, 3);
 * if (delivery.valid) exec = delivery.exec; // deliveredInputId is now at least 3
 * ```
 */
export function confirmDelivery(
  exec: ExecutionRecord,
  inputId: number,
): { valid: true; exec: ExecutionRecord } | { valid: false } {
  const { lastInputId, deliveredInputId } = inputState(exec);
  if (inputId > lastInputId) return { valid: false };
  if (inputId <= deliveredInputId) return { valid: true, exec };
  return { valid: true, exec: { ...exec, deliveredInputId: inputId } };
}
