/**
 * The crash-restart loop (issue 6): the real service as a child process on a KV file,
 * killed with SIGKILL at seeded random moments while wrappers stream, and started again on
 * the same file and port. Two kinds of runs go through it:
 *
 * - live runs, fed by the real wrapper library (reconnecting, resending unacknowledged
 *   frames): every event must be stored exactly once, in order, and the run must end
 *   `completed` with exactly one terminal `execution_status`;
 * - abandoned runs, whose raw client never comes back after a kill: they must end `failed`
 *   (`Wrapper disconnected`, from the restart's 1012 grace) exactly once, with every event
 *   acknowledged before the kill kept.
 *
 * @module
 */
import assert from "node:assert/strict";
import { delay } from "../../src/async.ts";
import { isTerminal } from "../../src/protocol.ts";
import { IngestConnection } from "../../wrapper/mod.ts";
import { type ChildService, freePort, startChildService } from "./child_service.ts";
import { type Envelope, IngestClient } from "./ingest_client.ts";
import { Random } from "./random.ts";

/** Options of {@link runCrashLoop}. */
export interface CrashLoopOptions {
  /** Seed of the kill schedule (print it to replay a failure). */
  seed: number;
  /** Live runs, one after another. */
  runs: number;
  /** Events per live run. */
  eventsPerRun: number;
  /** SIGKILLs per live run. Default 1. */
  killsPerRun?: number;
}

/** Figures of a finished loop. */
export interface CrashLoopStats {
  /** SIGKILLs of the service. */
  crashes: number;
  /** Live runs finished. */
  runs: number;
  /** Runs whose client never came back after a kill (each must end `failed`). */
  abandoned: number;
  /** Frames stored for the live runs, duplicates included. */
  events: number;
  /** Frames of the live runs never stored (must be 0). */
  lost: number;
  /** Frames stored more than once (must be 0). */
  duplicated: number;
}

const GRACE_MS = 3000;

type Call = ChildService["call"];

/**
 * Runs the loop; throws with the seed on a violation.
 *
 * @example
 * ```ts
 * const seed = seedFrom("TETHER_CRASH_SEED");
 * const stats = await runCrashLoop({ seed, runs: 3, eventsPerRun: 400, killsPerRun: 2 });
 * ```
 */
export async function runCrashLoop(options: CrashLoopOptions): Promise<CrashLoopStats> {
  const r = new Random(options.seed);
  const dir = await Deno.makeTempDir({ prefix: "tether-crash-" });
  const port = freePort();
  const start = () =>
    startChildService({
      kvPath: `${dir}/tether.kv`,
      port,
      env: {
        TETHER_DISCONNECT_GRACE_MS: String(GRACE_MS),
        TETHER_SWEEP_MS: "100",
      },
    });
  let service = await start();
  const stats: CrashLoopStats = {
    crashes: 0,
    runs: 0,
    abandoned: 0,
    events: 0,
    lost: 0,
    duplicated: 0,
  };
  const call: Call = async (path, init) => {
    // Between a kill and the restart the port is closed: retry until the service answers.
    for (let i = 0;; i++) {
      try {
        return await service.call(path, init);
      } catch (err) {
        if (i > 200) throw err;
        await delay(50);
      }
    }
  };
  const crash = async () => {
    await service.kill("SIGKILL");
    stats.crashes++;
    service = await start();
  };
  const abandoned: { sessionId: string; executionId: string; acked: number }[] = [];
  try {
    for (let run = 0; run < options.runs; run++) {
      const sessionId = `crash-${run}`;
      // An abandoned run next to the live one: acknowledged frames, then its client is gone.
      abandoned.push(await abandon(service, `${sessionId}-gone`));
      const exec = await createExecution(call, sessionId);
      const trail: string[] = [];
      const wrapper = new IngestConnection({
        url: exec.ingestUrl,
        token: exec.ingestToken,
        // The last things the wrapper saw, for the failure message.
        onEvent: (event) => {
          if (event.type === "disconnected" || event.type === "hello" || event.type === "ended") {
            trail.push(JSON.stringify(event).slice(0, 200));
            if (trail.length > 8) trail.shift();
          }
        },
        reconnectBaseMs: 50,
        reconnectMaxMs: 300,
        reconnectAttempts: 1000,
        connectTimeoutMs: 3000,
        heartbeatMs: 1000,
      });
      wrapper.connect();
      const kills = Array.from(
        { length: options.killsPerRun ?? 1 },
        () => r.int(0, options.eventsPerRun - 1),
      ).sort((a, b) => a - b);
      for (let k = 1; k <= options.eventsPerRun; k++) {
        assert.ok(wrapper.send({ streamEventType: "output", data: { k } }), `event ${k} queued`);
        while (kills[0] === k) {
          kills.shift();
          await crash();
        }
        if (k % 20 === 0) await delay(r.int(0, 10));
      }
      const end = await wrapper.finish({ streamEventType: "complete", data: { exitCode: 0 } });
      assert.ok(
        (end.kind === "done" || end.kind === "acknowledged") && end.status === "completed",
        `run ${run} ended ${JSON.stringify(end)}; wrapper saw ${trail.join(" ")}; service logged ${
          JSON.stringify(service.logs.filter((l) => l.level !== "info").slice(-5))
        }`,
      );
      const events = await readAll(call, sessionId);
      const got = events.filter((e) => e.streamEventType === "output").map((e) =>
        (e.data as { k: number }).k
      );
      const seen = new Set(got);
      stats.lost += options.eventsPerRun - seen.size;
      stats.duplicated += got.length - seen.size;
      stats.events += got.length;
      assert.deepEqual(got, got.map((_, i) => i + 1), `run ${run}: events in order, once each`);
      assert.equal(got.length, options.eventsPerRun, `run ${run}: every event stored`);
      assertEndedOnce(events, exec.executionId, "completed");
      stats.runs++;
    }
    // Abandoned runs end by their grace, once, keeping what was acknowledged.
    for (const gone of abandoned) {
      const view = await waitForEnd(call, gone, GRACE_MS + 15_000);
      assert.equal(view.status, "failed");
      assert.equal(view.error, "Wrapper disconnected");
      const events = await readAll(call, gone.sessionId);
      const outputs = events.filter((e) => e.streamEventType === "output");
      assert.ok(outputs.length >= gone.acked, "acknowledged events of an abandoned run survive");
      assertEndedOnce(events, gone.executionId, "failed");
      stats.abandoned++;
    }
    return stats;
  } catch (err) {
    throw new Error(
      `crash loop failed: seed ${options.seed} (replay: TETHER_CRASH_SEED=${options.seed})`,
      { cause: err },
    );
  } finally {
    await service.kill("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

interface Execution {
  sessionId: string;
  executionId: string;
  ingestUrl: string;
  ingestToken: string;
}

async function createExecution(call: Call, sessionId: string): Promise<Execution> {
  const session = await call("/v1/sessions", { method: "POST", json: { sessionId } });
  assert.ok(session.status === 201 || session.status === 409, `session ${session.status}`);
  const res = await call<Execution>(`/v1/sessions/${sessionId}/executions`, {
    method: "POST",
    json: {},
    headers: { "idempotency-key": `${sessionId}-1` },
  });
  assert.equal(res.status, 201);
  return { ...res.body, sessionId };
}

/** Starts a run whose raw client sends a few acknowledged frames and is then forgotten. */
async function abandon(service: ChildService, sessionId: string) {
  const exec = await createExecution(service.call, sessionId);
  const client = await IngestClient.connect(exec.ingestUrl, { token: exec.ingestToken });
  for (let seq = 1; seq <= 3; seq++) {
    client.send({ streamEventType: "output", seq, data: { k: seq } });
  }
  await client.ackOf(3);
  // The socket stays open until the next kill takes it down without a close frame.
  client.socket.onclose = () => {};
  return { sessionId, executionId: exec.executionId, acked: 3 };
}

async function readAll(call: Call, sessionId: string): Promise<Envelope[]> {
  const out: Envelope[] = [];
  let after = 0;
  for (;;) {
    const page = await call<{ events: Envelope[]; lastEventId: number; nextAfter: number }>(
      `/v1/sessions/${sessionId}/events?after=${after}&limit=1000`,
    );
    assert.equal(page.status, 200);
    out.push(...page.body.events);
    if (page.body.nextAfter >= page.body.lastEventId) return out;
    after = page.body.nextAfter;
  }
}

function assertEndedOnce(events: Envelope[], executionId: string, status: string): void {
  const ends = events.filter((e) =>
    e.executionId === executionId && e.streamEventType === "execution_status" &&
    isTerminal((e.data as { status: never }).status)
  );
  assert.equal(ends.length, 1, `${executionId}: exactly one terminal execution_status`);
  assert.equal((ends[0].data as { status: string }).status, status);
}

async function waitForEnd(
  call: Call,
  run: { sessionId: string; executionId: string },
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await call(`/v1/sessions/${run.sessionId}/executions/${run.executionId}`);
    if (isTerminal(res.body.status as never)) return res.body;
    assert.ok(Date.now() < until, `${run.executionId} still ${res.body.status}`);
    await delay(100);
  }
}
