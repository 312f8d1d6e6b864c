/**
 * A deadline storm (issue 13): N running executions lose their wrapper in the same instant, so
 * N disconnect graces fall due in the same millisecond. Used by `bench/deadlines.ts --storm`
 * and `tests/deadline_storm_test.ts`.
 *
 * Each execution is admitted for real (a connection record); then every disconnect is
 * recorded with the service's clock frozen at one instant T, so every grace is due at
 * T + grace, whatever the arming took.
 *
 * @module
 */
import {
  admitConnection,
  createExecution,
  createSession,
  recordDisconnect,
} from "../../src/lifecycle.ts";
import type { Service } from "../../src/service.ts";
import { type ExecutionRecord, records, transact } from "../../src/store/mod.ts";

/**
 * A clock the storm freezes while it arms the graces; pass `now` to `createService`.
 *
 * @example
 * ```ts
 * const clock = new StormClock();
 * const service = await createService(config, kv, { now: clock.now });
 * const { runs, dueAt } = await armGraceStorm(service, clock, { count: 300, graceMs: 2000 });
 * ```
 */
export class StormClock {
  #frozen?: number;
  /** The service's clock: real time, except while frozen. */
  readonly now = (): number => this.#frozen ?? Date.now();
  /** From now on `now()` returns `at`, until {@link StormClock.thaw}. */
  freeze(at: number): void {
    this.#frozen = at;
  }
  /** Back to real time. */
  thaw(): void {
    this.#frozen = undefined;
  }
}

/** One execution of the storm. */
export interface StormRun {
  /** Its session. */
  sessionId: string;
  /** The execution. */
  executionId: string;
  /** The connection admitted for it. */
  connectionId: string;
}

/** Options of {@link armGraceStorm}. */
export interface StormOptions {
  /** Executions in the storm. */
  count: number;
  /** Grace of every execution (ms); every grace is due at the same instant, this long after arming began. */
  graceMs: number;
  /** Creations and disconnects run at once. Default 8. */
  concurrency?: number;
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) await task(i);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Options of {@link admitRuns}. */
export interface AdmitOptions {
  /** Sessions and executions to create and admit. */
  count: number;
  /** Grace of every execution (ms); the service's default when absent. */
  graceMs?: number;
  /** Heartbeat timeout of every execution (ms); the service's default when absent. */
  heartbeatTimeoutMs?: number;
  /** Creations run at once. Default 8. */
  concurrency?: number;
}

/**
 * Creates `count` sessions with one execution each and admits a connection for each (as a
 * wrapper's `hello` would): `count` running executions, each with its heartbeat deadline.
 *
 * @example
 * ```ts
 * const [run] = await admitRuns(service, { count: 1, heartbeatTimeoutMs: 1000 });
 * ```
 */
export async function admitRuns(service: Service, options: AdmitOptions): Promise<StormRun[]> {
  const { count, graceMs, heartbeatTimeoutMs, concurrency = 8 } = options;
  const ctx = service.rt.ctx;
  const urls = { ingestUrl: () => "", streamUrl: "" };
  const runs: StormRun[] = [];
  await pool(count, concurrency, async (i) => {
    const sessionId = `storm-${i}`;
    await createSession(ctx, { sessionId });
    const created = await createExecution(ctx, sessionId, { graceMs, heartbeatTimeoutMs }, urls);
    if (!created.ok) throw new Error(`creation failed: ${created.refusal.code}`);
    const { executionId, ingestToken } = created.value.body;
    const connectionId = `con_${i}`;
    const path = { sessionId, executionId };
    const admitted = await admitConnection(ctx, path, ingestToken, connectionId, {
      wrapperId: "storm",
      n: 1,
    });
    if (!admitted.ok) throw new Error(`admission failed: ${admitted.refusal.code}`);
    runs.push({ sessionId, executionId, connectionId });
  });
  return runs;
}

/**
 * Creates and admits `count` executions, then disconnects them all at one frozen instant.
 *
 * @example
 * ```ts
 * const { runs, dueAt } = await armGraceStorm(service, clock, { count: 300, graceMs: 2000 });
 * const execs = await stormExecutions(kv, runs); // after every grace fired: all failed
 * ```
 */
export async function armGraceStorm(
  service: Service,
  clock: StormClock,
  options: StormOptions,
): Promise<{ runs: StormRun[]; dueAt: number; armMs: number }> {
  const { count, graceMs, concurrency = 8 } = options;
  const ctx = service.rt.ctx;
  const runs = await admitRuns(service, { count, graceMs, concurrency });
  const armedFrom = Date.now();
  clock.freeze(armedFrom);
  try {
    await pool(runs.length, concurrency, async (i) => {
      const close = { code: 1012, reason: "service restarted" };
      await recordDisconnect(ctx, runs[i].executionId, runs[i].connectionId, close);
    });
  } finally {
    clock.thaw();
  }
  const armMs = Date.now() - armedFrom;
  if (armMs >= graceMs) throw new Error(`arming took ${armMs} ms, past the due time`);
  return { runs, dueAt: armedFrom + graceMs, armMs };
}

/**
 * The execution records of the runs (read 10 per transaction).
 *
 * @example
 * ```ts
 * const execs = await stormExecutions(kv, runs);
 * assert.ok(execs.every((exec) => exec.status === "failed"));
 * ```
 */
export async function stormExecutions(kv: Deno.Kv, runs: StormRun[]): Promise<ExecutionRecord[]> {
  const out: ExecutionRecord[] = [];
  for (let i = 0; i < runs.length; i += 10) {
    const execs = await transact(
      kv,
      (tx) =>
        Promise.all(runs.slice(i, i + 10).map((r) => records.execution(r.executionId).get(tx))),
    );
    for (const exec of execs) if (exec) out.push(exec);
  }
  return out;
}
