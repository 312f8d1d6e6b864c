/**
 * Chaos end to end (issue 6): the real wrapper CLI (`wrapper/main.ts`) runs a fake agent
 * that prints numbered lines, and streams them to a real service through the chaos proxy,
 * which cuts the wrapper's connections on a seeded schedule. Several runs go at once, in
 * their own sessions. Every printed line must be stored exactly once and in order, and
 * every run must end `completed`: a wrapper that was cut but came back within the grace
 * must never see its execution failed. A live viewer of each session, open from the start,
 * must get exactly the stored events, once each and in order.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isTerminal } from "../../src/protocol.ts";
import { startChaosProxy } from "./chaos_proxy.ts";
import { createRun, type Envelope, storedEvents } from "./ingest_client.ts";
import { spawnWrapper } from "./runs.ts";
import { startServer } from "./server.ts";
import { WsViewer } from "./viewer.ts";

/** Wrapper options for runs through a cutting proxy: quick, patient reconnects. */
export const FAST_RECONNECT_ARGS = [
  "--reconnect-base-ms",
  "50",
  "--reconnect-max-ms",
  "300",
  "--reconnect-attempts",
  "1000",
  "--connect-timeout-ms",
  "3000",
];

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** Seed of the proxy's schedule (print it to replay a failure). */
  seed: number;
  /** Lines printed by each agent. */
  events: number;
  /** Wrappers running at once. Default 2. */
  wrappers?: number;
  /** Lifetime range of a proxied connection before it is cut (ms). Default [50, 250]. */
  cutAfterMs?: [number, number];
  /** The agent pauses this long after every 10 lines (ms), to spread a run over many cuts. */
  pauseMs?: number;
  /** Round trip added to every KV read and commit (ms; `tests/helpers/slow_kv.ts`). Default 0. */
  kvDelayMs?: number;
}

/** What a chaos run measured. */
export interface ChaosStats {
  /** Lines stored, over every run. */
  events: number;
  /** Connections cut by the proxy's schedule. */
  cuts: number;
  /** Stalls the proxy made. */
  stalls: number;
  /** Connections through the proxy. */
  connections: number;
  /** Lines never stored (must be 0). */
  lost: number;
  /** Lines stored more than once (must be 0). */
  duplicated: number;
  /** Executions that ended `failed`. */
  failedExecutions: number;
  /** Wall time of the run. */
  seconds: number;
}

const AGENT = new URL("./line_agent.ts", import.meta.url).pathname;

/** The `k` of a stored agent line: `agent {k}` or `output {text: "line k"}`. */
function lineNumber(e: Envelope): number | undefined {
  if (e.streamEventType === "agent") return (e.data as { k?: number })?.k;
  if (e.streamEventType !== "output") return undefined;
  const m = /^line (\d+)$/.exec((e.data as { text?: string })?.text ?? "");
  return m ? Number(m[1]) : undefined;
}

/**
 * Runs the chaos scenario; throws with the seed on a violation.
 *
 * @example
 * ```ts
 * const seed = seedFrom("TETHER_CHAOS_SEED");
 * const stats = await runChaos({ seed, events: 2500, wrappers: 2, pauseMs: 15 });
 * ```
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosStats> {
  const started = Date.now();
  const server = await startServer({
    config: { disconnectGraceMs: 10_000, sweepMs: 100 },
    kvDelayMs: options.kvDelayMs,
  });
  const proxy = startChaosProxy({
    targetPort: Number(new URL(server.url).port),
    seed: options.seed,
    cutAfterMs: options.cutAfterMs ?? [50, 250],
    delayChance: 0.02,
    delayMs: [1, 30],
    stallChance: 0.005,
    stallMs: [50, 500],
  });
  const stats: ChaosStats = {
    events: 0,
    cuts: 0,
    stalls: 0,
    connections: 0,
    lost: 0,
    duplicated: 0,
    failedExecutions: 0,
    seconds: 0,
  };
  const viewers: WsViewer[] = [];
  try {
    const wrappers = options.wrappers ?? 2;
    const runs = await Promise.all(
      Array.from({ length: wrappers }, (_, i) => createRun(server, `chaos-${i}`)),
    );
    for (const run of runs) viewers.push(await WsViewer.open(server.wsUrl, run.sessionId));
    const children = runs.map((run) =>
      spawnWrapper({ ...run, ingestUrl: proxy.via(run.ingestUrl) }, [
        Deno.execPath(),
        "run",
        AGENT,
        String(options.events),
        "10",
        String(options.pauseMs ?? 0),
      ], {
        wrapperArgs: FAST_RECONNECT_ARGS,
      })
    );
    const codes = await Promise.all(children.map((c) => c.status.then((s) => s.code)));
    proxy.calm();
    for (const [i, run] of runs.entries()) {
      const events = await storedEvents(server, run.sessionId);
      const lines = events.map(lineNumber).filter((k): k is number => k !== undefined);
      const distinct = new Set(lines);
      stats.events += lines.length;
      stats.lost += options.events - distinct.size;
      stats.duplicated += lines.length - distinct.size;
      const exec = await server.call(`/v1/sessions/${run.sessionId}/executions/${run.executionId}`);
      if (exec.body.status === "failed") stats.failedExecutions++;
      const ends = events.filter((e) =>
        e.streamEventType === "execution_status" &&
        isTerminal((e.data as { status: never }).status)
      );
      assert.equal(codes[i], 0, `wrapper ${i} exit code`);
      assert.equal(exec.body.status, "completed", `run ${i}: ${JSON.stringify(exec.body)}`);
      assert.equal(ends.length, 1, `run ${i}: one terminal execution_status`);
      assert.deepEqual(lines, lines.map((_, k) => k + 1), `run ${i}: lines once each, in order`);
      assert.equal(lines.length, options.events, `run ${i}: every line stored`);
      await viewers[i].until((seen) => seen.length >= events.length, `run ${i}: viewer`, 20_000);
      assert.deepEqual(viewers[i].events, events, `run ${i}: the live viewer got each event once`);
    }
    stats.cuts = proxy.stats.scheduledCuts;
    stats.stalls = proxy.stats.stalls;
    stats.connections = proxy.stats.connections;
    stats.seconds = Math.round((Date.now() - started) / 100) / 10;
    return stats;
  } catch (err) {
    throw new Error(
      `chaos run failed: seed ${options.seed} (replay: TETHER_CHAOS_SEED=${options.seed}); ` +
        `cuts so far ${proxy.stats.scheduledCuts}`,
      { cause: err },
    );
  } finally {
    await Promise.all(viewers.map((viewer) => viewer.close()));
    await proxy.close();
    await server.close();
  }
}
