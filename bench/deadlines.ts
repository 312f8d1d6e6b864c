/**
 * Deadline lateness benchmark (PROTOCOL.md 8: deadlines fire within one second of their due
 * time). Arms 1,000 real deadlines on an on-disk KV file, the pending-start timeouts of 1,000
 * executions created over a couple of seconds, and measures how late each fired: the
 * execution's `completedAt` (the firing commit's clock) minus its due time. Runs once with
 * the default wake-ups (queue + sweep, as chosen at start-up on a local KV) and once with
 * the sweep alone (a platform without KV queues). Target: p99 ≤ 1000 ms.
 *
 * `--storm` measures a deadline storm instead (issue 13): N running executions lose their
 * wrapper in the same instant (a restart), so N disconnect graces fall due in the same
 * millisecond. Targets: 1,000 fire p99 ≤ 1 s and max ≤ 1.5 s late; 10,000 within a few seconds
 * (max ≤ 3 s).
 *
 * `--heartbeats` measures what the heartbeat deadlines of N running executions cost while every
 * wrapper keeps sending liveness (issue 13): heartbeat firings and the KV reads and commits
 * made by anything but the liveness traffic itself, per second, also scaled to the default
 * 120 s heartbeat timeout (the rate goes as N / timeout). Every execution must stay running.
 *
 * `deno run -A bench/deadlines.ts [--count=1000] [--due-ms=2000] [--sweep-ms=500] [--concurrency=8]`
 * `deno run -A bench/deadlines.ts --storm [--storm-counts=1000,10000] [--wakeups=sweep]`
 * `deno run -A bench/deadlines.ts --heartbeats [--running=2000] [--heartbeat-ms=20000]`
 * `--kv-delay-ms=20` runs any of them on a remote-like KV (every read and commit 20 ms slower).
 *
 * @module
 */
import { delay } from "../src/async.ts";
import { MetricName } from "../src/metrics.ts";
import { parseArgs } from "node:util";
import { testConfig, type TimerWakeup } from "../src/config.ts";
import { AsyncLocalStorage } from "node:async_hooks";
import { commitFrames, createExecution, createSession } from "../src/lifecycle.ts";
import { admitRuns, armGraceStorm, StormClock, stormExecutions } from "../tests/helpers/storm.ts";
import { slowKv } from "../tests/helpers/slow_kv.ts";
import { createService } from "../src/service.ts";
import { records, transact } from "../src/store/mod.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "1000" },
    "due-ms": { type: "string", default: "2000" },
    "sweep-ms": { type: "string", default: "500" },
    concurrency: { type: "string", default: "8" },
    storm: { type: "boolean", default: false },
    "storm-counts": { type: "string", default: "1000,10000" },
    wakeups: { type: "string" },
    batch: { type: "string", default: "48" },
    "kv-delay-ms": { type: "string", default: "0" },
    heartbeats: { type: "boolean", default: false },
    "heartbeat-ms": { type: "string", default: "20000" },
    running: { type: "string", default: "2000" },
  },
});
const COUNT = Number(values.count);
const DUE_MS = Number(values["due-ms"]);
const SWEEP_MS = Number(values["sweep-ms"]);
const CONCURRENCY = Number(values.concurrency);
/** Executions created at once (creation spreads the due times over its own duration). */
const CREATE_CONCURRENCY = 4;
/** Round trip added to every KV read and commit (ms), as on a remote KV; 0 = local. */
const KV_DELAY_MS = Number(values["kv-delay-ms"]);

const kvLabel = () => `on-disk KV${KV_DELAY_MS ? ` (+${KV_DELAY_MS} ms per read/commit)` : ""}`;

/** The on-disk KV of a run, slowed down by `--kv-delay-ms` (closing it closes the file). */
async function openBenchKv(path: string): Promise<Deno.Kv> {
  const kv = await Deno.openKv(path);
  return KV_DELAY_MS > 0 ? slowKv(kv, { delayMs: KV_DELAY_MS }) : kv;
}

interface Result {
  label: string;
  wakeups: readonly TimerWakeup[];
  spreadMs: number;
  lateness: number[];
}

async function run(label: string, wakeups: TimerWakeup[] | undefined): Promise<Result> {
  const dir = await Deno.makeTempDir({ prefix: "tether-bench-deadlines-" });
  const kvPath = `${dir}/tether.kv`;
  const kv = await openBenchKv(kvPath);
  const config = testConfig({
    kvPath,
    timerWakeups: wakeups,
    sweepMs: SWEEP_MS,
    pendingTimeoutMs: DUE_MS,
  });
  const service = await createService(config, kv, { deadlines: { concurrency: CONCURRENCY } });
  const ctx = service.rt.ctx;
  try {
    const urls = { ingestUrl: () => "", streamUrl: "" };
    const executionIds: string[] = [];
    let next = 0;
    const creator = async () => {
      for (let i = next++; i < COUNT; i = next++) {
        const sessionId = `bench-${i}`;
        await createSession(ctx, { sessionId });
        const created = await createExecution(ctx, sessionId, {}, urls);
        if (!created.ok) throw new Error(`creation failed: ${created.refusal.code}`);
        executionIds.push(created.value.body.executionId);
      }
    };
    const createdFrom = Date.now();
    await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, creator));
    const spreadMs = Date.now() - createdFrom;

    const fired = () =>
      service.rt.metrics.get(MetricName.deadlinesFired, {
        kind: "pending",
        outcome: "failed",
      });
    const giveUp = Date.now() + DUE_MS + spreadMs + 30_000;
    while (fired() < COUNT && Date.now() < giveUp) await new Promise((r) => setTimeout(r, 50));
    if (fired() < COUNT) throw new Error(`only ${fired()} of ${COUNT} deadlines fired`);

    const lateness: number[] = [];
    for (let i = 0; i < executionIds.length; i += 10) {
      const execs = await transact(
        kv,
        (tx) =>
          Promise.all(executionIds.slice(i, i + 10).map((eid) => records.execution(eid).get(tx))),
      );
      for (const exec of execs) {
        const due = Date.parse(exec!.activatedAt!) + DUE_MS;
        lateness.push(Date.parse(exec!.completedAt!) - due);
      }
    }
    return { label, wakeups: service.runner.wakeups, spreadMs, lateness };
  } finally {
    await service.stop();
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Targets of the storm mode (issue 13), lateness in ms: 1,000 graces p99 ≤ 1 s and max ≤ 1.5 s;
 * more "within a few seconds", taken as max ≤ 3 s.
 */
const stormTarget = (count: number) =>
  count <= 1000 ? { p99: 1000, max: 1500 } : { p99: 3000, max: 3000 };

/** N graces due in the same millisecond (tests/helpers/storm.ts); lateness of each firing. */
async function storm(count: number): Promise<{ lateness: number[]; armMs: number }> {
  const dir = await Deno.makeTempDir({ prefix: "tether-bench-storm-" });
  const kvPath = `${dir}/tether.kv`;
  const kv = await openBenchKv(kvPath);
  const clock = new StormClock();
  const timerWakeups = values.wakeups?.split(",") as TimerWakeup[] | undefined;
  const config = testConfig({ kvPath, sweepMs: SWEEP_MS, timerWakeups });
  const service = await createService(config, kv, {
    now: clock.now,
    deadlines: { concurrency: CONCURRENCY, batchSize: Number(values.batch) },
  });
  try {
    // Every grace must still lie ahead once all are armed (a loaded machine arms ~1,000/s
    // on a local KV; each disconnect costs a few round trips on a slow one).
    const graceMs = 5000 + count * (3 + 1.5 * KV_DELAY_MS);
    const { runs, dueAt, armMs } = await armGraceStorm(service, clock, { count, graceMs });
    const fired = () => service.rt.metrics.get(MetricName.graceExpired);
    const giveUp = dueAt + 120_000;
    while (fired() < count && Date.now() < giveUp) await new Promise((r) => setTimeout(r, 50));
    if (fired() < count) throw new Error(`only ${fired()} of ${count} graces fired`);
    const execs = await stormExecutions(kv, runs);
    return { lateness: execs.map((e) => Date.parse(e.completedAt ?? "") - dueAt), armMs };
  } finally {
    await service.stop();
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function stormMode(): Promise<void> {
  const counts = values["storm-counts"].split(",").map(Number);
  console.log(
    `deadline storm: N disconnect graces due in the same millisecond, ${kvLabel()}, ` +
      `wake-ups ${values.wakeups ?? "default"}, sweep every ${SWEEP_MS} ms, ` +
      `${CONCURRENCY} batches at once`,
  );
  console.log("(the machine is shared and loaded: figures vary between runs)");
  let met = true;
  for (const count of counts) {
    const { lateness, armMs } = await storm(count);
    const s = summary(lateness);
    const target = stormTarget(count);
    const ok = s.p99 <= target.p99 && s.max <= target.max && s.min >= 0;
    met &&= ok;
    console.log(
      `N=${String(count).padEnd(6)} armed in ${armMs} ms  lateness ms: min ${s.min} ` +
        `p50 ${s.p50} p99 ${s.p99} max ${s.max}  target p99 <= ${target.p99}, ` +
        `max <= ${target.max} ms, none early: ${ok ? "met" : "MISSED"}`,
    );
  }
  console.log(`storm targets: ${met ? "met" : "MISSED"}`);
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)];

const summary = (lateness: number[]) => {
  const sorted = [...lateness].sort((a, b) => a - b);
  return {
    min: sorted[0],
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.at(-1)!,
  };
};

async function normalMode(): Promise<void> {
  console.log(
    `deadline lateness: ${COUNT} pending-start deadlines, due ${DUE_MS} ms after activation, ` +
      `${kvLabel()}, sweep every ${SWEEP_MS} ms, ` +
      `${CONCURRENCY} batches at once`,
  );
  let worstP99 = 0;
  for (const [label, wakeups] of [["default", undefined], ["sweep-only", ["sweep"]]] as const) {
    const result = await run(label, wakeups ? [...wakeups] : undefined);
    const sorted = [...result.lateness].sort((a, b) => a - b);
    const p99 = percentile(sorted, 0.99);
    worstP99 = Math.max(worstP99, p99);
    console.log(
      `${result.label.padEnd(10)} wake-ups=${result.wakeups.join("+").padEnd(10)} ` +
        `armed over ${result.spreadMs} ms  lateness ms: min ${sorted[0]} ` +
        `p50 ${percentile(sorted, 0.5)} p99 ${p99} max ${sorted.at(-1)}`,
    );
  }
  console.log(`target p99 <= 1000 ms: ${worstP99 <= 1000 ? "met" : "MISSED"}`);
}

/** The heartbeat timeout the `--heartbeats` figures are scaled to (the service's default). */
const DEFAULT_HEARTBEAT_TIMEOUT_MS = 120_000;

/** KV calls counted by {@link countingKv}. */
interface KvCalls {
  reads: number;
  commits: number;
}

/** Marks the liveness traffic of the `--heartbeats` mode: its KV calls are not counted. */
const liveness = new AsyncLocalStorage<true>();

/** Counts the reads and commits made on `kv` outside {@link liveness} while `on()`. */
function countingKv(kv: Deno.Kv, calls: KvCalls, on: () => boolean): Deno.Kv {
  const counted = () => on() && !liveness.getStore();
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "get" || prop === "getMany" || prop === "list") {
        return (...args: unknown[]) => {
          if (counted()) calls.reads++;
          return (target[prop] as (...a: unknown[]) => unknown)(...args);
        };
      }
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () => {
            if (counted()) calls.commits++;
            return commit();
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

interface HeartbeatCost {
  firingsPerS: number;
  readsPerS: number;
  commitsPerS: number;
  /** Executions that failed although their wrapper kept sending (must be 0). */
  failed: number;
}

/**
 * N running executions whose wrappers send a heartbeat every sixth of the timeout (20 s of
 * 120 s, as the wrapper does); after one timeout of warm-up, counts for one timeout (about
 * one firing per execution) the heartbeat firings and the KV calls made by anything but the
 * liveness commits.
 */
async function heartbeatCost(count: number, timeoutMs: number): Promise<HeartbeatCost> {
  const dir = await Deno.makeTempDir({ prefix: "tether-bench-heartbeats-" });
  const kvPath = `${dir}/tether.kv`;
  const raw = await Deno.openKv(kvPath);
  const calls: KvCalls = { reads: 0, commits: 0 };
  let counting = false;
  const counted = countingKv(raw, calls, () => counting);
  const kv = KV_DELAY_MS > 0 ? slowKv(counted, { delayMs: KV_DELAY_MS }) : counted;
  const timerWakeups = values.wakeups?.split(",") as TimerWakeup[] | undefined;
  const config = testConfig({ kvPath, sweepMs: SWEEP_MS, timerWakeups });
  const service = await createService(config, kv, { deadlines: { concurrency: CONCURRENCY } });
  const stop = new AbortController();
  try {
    const runs = await admitRuns(service, { count, heartbeatTimeoutMs: timeoutMs });
    const beatMs = timeoutMs / 6;
    // Each run beats on its own phase of the period, as independent wrappers would.
    const beats = runs.map(async (run, i) => {
      await delay((beatMs * i) / runs.length, { signal: stop.signal });
      while (!stop.signal.aborted) {
        await liveness.run(
          true,
          () => commitFrames(service.rt.ctx, { ...run, frames: [{}] }),
        );
        await delay(beatMs, { signal: stop.signal });
      }
    }).map((beat) => beat.catch(() => {}));
    const fired = () =>
      service.rt.metrics.get(MetricName.deadlinesFired, { kind: "heartbeat", outcome: "rearmed" });
    await delay(timeoutMs);
    const windowMs = timeoutMs;
    const firedBefore = fired();
    counting = true;
    await delay(windowMs);
    counting = false;
    const firings = fired() - firedBefore;
    stop.abort();
    await Promise.all(beats);
    const execs = await stormExecutions(kv, runs);
    const perS = (n: number) => (n * 1000) / windowMs;
    return {
      firingsPerS: perS(firings),
      readsPerS: perS(calls.reads),
      commitsPerS: perS(calls.commits),
      failed: execs.filter((e) => e.status !== "running").length,
    };
  } finally {
    stop.abort();
    await service.stop();
    raw.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function heartbeatMode(): Promise<void> {
  const timeoutMs = Number(values["heartbeat-ms"]);
  const count = Number(values.running);
  console.log(
    `heartbeat deadlines: ${count} running executions, heartbeat timeout ${timeoutMs} ms, ` +
      `a heartbeat every ${timeoutMs / 6} ms each, ${kvLabel()}, wake-ups ` +
      `${values.wakeups ?? "default"}; KV calls of the liveness commits not counted`,
  );
  console.log("(the machine is shared and loaded: figures vary between runs)");
  const cost = await heartbeatCost(count, timeoutMs);
  const scale = timeoutMs / DEFAULT_HEARTBEAT_TIMEOUT_MS;
  const row = (label: string, k: number) =>
    console.log(
      `${label.padEnd(34)} firings ${(cost.firingsPerS * k).toFixed(1)}/s  ` +
        `KV reads ${(cost.readsPerS * k).toFixed(1)}/s  commits ${
          (cost.commitsPerS * k).toFixed(1)
        }/s  ` +
        `(${(cost.readsPerS / Math.max(cost.firingsPerS, 1e-9)).toFixed(2)} reads, ` +
        `${(cost.commitsPerS / Math.max(cost.firingsPerS, 1e-9)).toFixed(2)} commits per firing)`,
    );
  row(`measured (timeout ${timeoutMs} ms)`, 1);
  row(`scaled to the ${DEFAULT_HEARTBEAT_TIMEOUT_MS / 1000} s default`, scale);
  console.log(
    `executions failed although heard from: ${cost.failed} (target 0: ${
      cost.failed === 0 ? "met" : "MISSED"
    })`,
  );
}

if (values.heartbeats) await heartbeatMode();
else if (values.storm) await stormMode();
else await normalMode();
