/**
 * Deadline lateness benchmark (PROTOCOL.md 8: deadlines fire within one second of their due
 * time). Arms 1,000 real deadlines on an on-disk KV file, the pending-start timeouts of 1,000
 * executions created over a couple of seconds, and measures how late each fired: the
 * execution's `completedAt` (the firing commit's clock) minus its due time. Runs once with
 * the default wake-ups (queue + sweep, as chosen at start-up on a local KV) and once with
 * the sweep alone (a platform without KV queues). Target: p99 ≤ 1000 ms.
 *
 * `deno run -A bench/deadlines.ts [--count=1000] [--due-ms=2000] [--sweep-ms=500] [--concurrency=8]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { testConfig, type TimerWakeup } from "../src/config.ts";
import { createExecution, createSession } from "../src/lifecycle.ts";
import { createService } from "../src/service.ts";
import { records, transact } from "../src/store/mod.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "1000" },
    "due-ms": { type: "string", default: "2000" },
    "sweep-ms": { type: "string", default: "500" },
    concurrency: { type: "string", default: "8" },
  },
});
const COUNT = Number(values.count);
const DUE_MS = Number(values["due-ms"]);
const SWEEP_MS = Number(values["sweep-ms"]);
const CONCURRENCY = Number(values.concurrency);
/** Executions created at once (creation spreads the due times over its own duration). */
const CREATE_CONCURRENCY = 4;

interface Result {
  label: string;
  wakeups: readonly TimerWakeup[];
  spreadMs: number;
  lateness: number[];
}

async function run(label: string, wakeups: TimerWakeup[] | undefined): Promise<Result> {
  const dir = await Deno.makeTempDir({ prefix: "tether-bench-deadlines-" });
  const kvPath = `${dir}/tether.kv`;
  const kv = await Deno.openKv(kvPath);
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
      service.rt.metrics.get("tether_deadlines_fired_total", {
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

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)];

console.log(
  `deadline lateness: ${COUNT} pending-start deadlines, due ${DUE_MS} ms after activation, ` +
    `on-disk KV, sweep every ${SWEEP_MS} ms, ${CONCURRENCY} fired at once`,
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
