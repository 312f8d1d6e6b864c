/**
 * A restart storm (issue 13): a service process holding many ingest connections of the real
 * wrapper library ({@link IngestConnection}) is SIGKILLed and restarted on the same KV file
 * and port; every wrapper reconnects with its own jittered backoff. Measures the time until
 * all are back and the admission rate, and counts the wrappers that gave up and the
 * executions that did not survive (a grace that expired).
 *
 * @module
 */
import { IngestConnection } from "../../wrapper/mod.ts";
import { type ChildService, freePort, startChildService } from "./child_service.ts";
import { tempKvPath } from "./server.ts";

/** Options of {@link restartStorm}. */
export interface RestartStormOptions {
  /** Running executions, one wrapper connection each. */
  n: number;
  /** The executions' `graceMs`. */
  graceMs: number;
  /** Wrapper backoff (PROTOCOL.md 9 defaults: 1000 and 5000). */
  reconnectBaseMs: number;
  /** Longest reconnect delay (before jitter). */
  reconnectMaxMs: number;
  /** How long all may take to come back before the storm counts as failed. Default 60000. */
  timeoutMs?: number;
  /** Extra service environment. */
  env?: Record<string, string>;
}

/** What one storm measured. */
export interface RestartStormResult {
  /** Wrappers in the storm. */
  n: number;
  /** From the restarted service's `listening` line until the last wrapper's `hello`. */
  allBackMs: number;
  /** Admissions per second while the wrappers came back. */
  admissionsPerSec: number;
  /** Wrappers that came back (a second `hello`). */
  back: number;
  /** Wrappers whose connection ended (gave up, refused, done). */
  ended: number;
  /** Executions that are not `running` afterwards. */
  notRunning: number;
  /** From SIGKILL until the restarted service listened. */
  restartMs: number;
}

interface Wrapper {
  conn: IngestConnection;
  hellos: number[];
  ended: boolean;
  sessionId: string;
  executionId: string;
}

const CREATE_CONCURRENCY = 16;
/** Wrappers connected at once before the storm. */
const OPEN_BATCH = 100;

/**
 * Runs one storm and returns its figures (it asserts nothing itself).
 *
 * @example
 * ```ts
 * const options = { n: 60, graceMs: 4000, reconnectBaseMs: 100, reconnectMaxMs: 500 };
 * const result = await restartStorm(options);
 * console.log(`all back ${result.allBackMs} ms after the restart`);
 * ```
 */
export async function restartStorm(options: RestartStormOptions): Promise<RestartStormResult> {
  const kv = await tempKvPath();
  const port = freePort();
  const env = { ...options.env };
  const start = () => startChildService({ kvPath: kv.path, port, env, startTimeoutMs: 60_000 });
  let service: ChildService = await start();
  const wrappers: Wrapper[] = [];
  try {
    const runs = await createRuns(service, options.n, options.graceMs);
    // The first connections open a batch at a time: the storm measured is the restart's.
    for (let i = 0; i < runs.length; i += OPEN_BATCH) {
      const batch = runs.slice(i, i + OPEN_BATCH).map((run) => openWrapper(run, options));
      wrappers.push(...batch);
      await until(() => batch.every((w) => w.hellos.length >= 1), options.timeoutMs, "hellos");
    }
    const killedAt = Date.now();
    await service.kill("SIGKILL");
    service = await start();
    const readyAt = service.readyAt;
    await until(
      () => wrappers.every((w) => w.hellos.length >= 2 || w.ended),
      options.timeoutMs,
      "reconnects",
    ).catch(() => {});
    const back = wrappers.filter((w) => w.hellos.length >= 2);
    const returns = back.map((w) => w.hellos[1]).sort((a, b) => a - b);
    const allBackMs = (returns.at(-1) ?? NaN) - readyAt;
    const spanMs = Math.max(1, (returns.at(-1) ?? 0) - (returns[0] ?? 0));
    // Past every grace: an execution whose wrapper was not back in time has failed by now.
    await new Promise((r) => setTimeout(r, options.graceMs + 1000));
    return {
      n: options.n,
      allBackMs,
      admissionsPerSec: back.length / (spanMs / 1000),
      back: back.length,
      ended: wrappers.filter((w) => w.ended).length,
      notRunning: await countNotRunning(service, wrappers),
      restartMs: readyAt - killedAt,
    };
  } finally {
    for (const w of wrappers) w.conn.close();
    await service.kill("SIGKILL");
    await kv.cleanup();
  }
}

async function createRuns(service: ChildService, n: number, graceMs: number) {
  const runs: { sessionId: string; executionId: string; ingestUrl: string; token: string }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const sessionId = `storm-${next++}`;
      await service.call("/v1/sessions", { method: "POST", json: { sessionId } });
      const res = await service.call<{ executionId: string; ingestToken: string }>(
        `/v1/sessions/${sessionId}/executions`,
        { method: "POST", json: { graceMs } },
      );
      if (res.status !== 201) throw new Error(`execution: ${JSON.stringify(res)}`);
      runs.push({
        sessionId,
        executionId: res.body.executionId,
        ingestUrl:
          `${service.wsUrl}/v1/sessions/${sessionId}/executions/${res.body.executionId}/ingest`,
        token: res.body.ingestToken,
      });
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
  return runs;
}

function openWrapper(
  run: { sessionId: string; executionId: string; ingestUrl: string; token: string },
  options: RestartStormOptions,
): Wrapper {
  const wrapper: Wrapper = {
    hellos: [],
    ended: false,
    sessionId: run.sessionId,
    executionId: run.executionId,
    conn: undefined as unknown as IngestConnection,
  };
  wrapper.conn = new IngestConnection({
    url: run.ingestUrl,
    token: run.token,
    reconnectBaseMs: options.reconnectBaseMs,
    reconnectMaxMs: options.reconnectMaxMs,
    onEvent: (event) => {
      if (event.type === "hello") wrapper.hellos.push(Date.now());
      if (event.type === "ended") wrapper.ended = true;
    },
  });
  wrapper.conn.connect();
  return wrapper;
}

async function countNotRunning(service: ChildService, wrappers: Wrapper[]): Promise<number> {
  let notRunning = 0;
  for (const w of wrappers) {
    const res = await service.call<{ status: string }>(
      `/v1/sessions/${w.sessionId}/executions/${w.executionId}`,
    );
    if (res.body.status !== "running") notRunning++;
  }
  return notRunning;
}

async function until(check: () => boolean, timeoutMs = 60_000, what = "condition") {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
