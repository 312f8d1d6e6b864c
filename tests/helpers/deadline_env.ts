/**
 * Shared setup of the deadline tests: which wake-up variants to run them under, short
 * timers, and direct looks at the deadline records that the REST API does not show.
 *
 * By default every deadline test runs twice: with the sweep alone (as on a platform
 * without KV queues) and with queue messages plus a slow sweep (so the queue does the
 * work). `TETHER_TIMER_WAKEUPS=sweep` (or any list) runs only that variant.
 *
 * @module
 */
import type { Config, TimerWakeup } from "../../src/config.ts";
import { loadConfig } from "../../src/config.ts";
import {
  type GraceRecord,
  type InterruptFlag,
  listTimers,
  records,
  type TimerRecord,
  transact,
} from "../../src/store/mod.ts";
import type { TestServer } from "./server.ts";

/** One way of waking deadlines, as a label and the config it needs. */
export interface WakeupVariant {
  /** For test names, e.g. `queue+sweep`. */
  label: string;
  /** `timerWakeups` and a `sweepMs` to suit them. */
  config: Partial<Config>;
}

/**
 * The variants to run: from `TETHER_TIMER_WAKEUPS` when set, else sweep and queue+sweep.
 *
 * @example
 * ```ts
 * for (const { label, config } of wakeupVariants()) {
 *   serverTest(`[${label}] a grace fires once`, async (server) => {
 *     const run = await createRun(server, "s1");
 *   }, { config });
 * }
 * ```
 */
export function wakeupVariants(): WakeupVariant[] {
  const fromEnv = loadConfig({ TETHER_TIMER_WAKEUPS: Deno.env.get("TETHER_TIMER_WAKEUPS") })
    .timerWakeups;
  const variant = (wakeups: TimerWakeup[]): WakeupVariant => ({
    label: wakeups.join("+"),
    // With queues on, a slow sweep leaves the firing to the queue messages.
    config: { timerWakeups: wakeups, sweepMs: wakeups.includes("queue") ? 1000 : 50 },
  });
  return fromEnv ? [variant(fromEnv)] : [variant(["sweep"]), variant(["queue", "sweep"])];
}

/**
 * The session's grace record, or `null`.
 *
 * @example
 * ```ts
 * await eventually(async () => (await graceRecord(server, "s1")) !== null, "the grace");
 * ```
 */
export function graceRecord(server: TestServer, sessionId: string): Promise<GraceRecord | null> {
  return transact(server.kv, (tx) => records.grace(sessionId).get(tx));
}

/**
 * The session's interrupt flag, or `null`.
 *
 * @example
 * ```ts
 * assert.equal(await interruptFlag(server, "s1"), null);
 * ```
 */
export function interruptFlag(
  server: TestServer,
  sessionId: string,
): Promise<InterruptFlag | null> {
  return transact(server.kv, (tx) => records.interrupt(sessionId).get(tx));
}

/**
 * Armed deadlines of one execution or session (any kind unless given).
 *
 * @example
 * ```ts
 * const armed = await timersOf(server, run.executionId, "heartbeat");
 * assert.equal(armed.length, 1);
 * ```
 */
export async function timersOf(
  server: TestServer,
  id: string,
  kind?: TimerRecord["kind"],
): Promise<TimerRecord[]> {
  return (await listTimers(server.kv)).filter((t) =>
    t.id === id && (kind === undefined || t.kind === kind)
  );
}
