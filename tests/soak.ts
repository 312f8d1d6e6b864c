/**
 * `deno task soak`: the long versions of the reliability checks (issue 6), one after the
 * other, then a summary table. Every part is seeded; the seeds are printed so a failure can
 * be replayed with the short test and the same seed.
 *
 * Sizes (environment, defaults in brackets): SOAK_CHAOS_EVENTS [50000], SOAK_CHAOS_WRAPPERS
 * [1], SOAK_CRASH_RUNS [15], SOAK_CRASH_EVENTS [2000], SOAK_CRASH_KILLS [3], SOAK_FUZZ_FRAMES
 * [100000], SOAK_FUZZ_REQUESTS [100000], SOAK_MODEL_RUNS [1500], SOAK_ATTACK_EVENTS [200],
 * SOAK_ATTACK_FLOOD_FRAMES [1000], SOAK_ATTACK_HOLD_MS [10000], SOAK_STORM_WRAPPERS [2000],
 * SOAK_SEED [random].
 *
 * @module
 */
import { attackFailure, describeAttack, runAttackMix } from "./helpers/attack_mix.ts";
import { runChaos } from "./helpers/chaos_run.ts";
import { runCrashLoop } from "./helpers/crash_loop.ts";
import { runFuzz } from "./helpers/fuzz.ts";
import { runModel } from "./helpers/model.ts";
import { restartStorm } from "./helpers/restart_storm.ts";
import { countFrom, seedFrom } from "./helpers/random.ts";

interface Row {
  check: string;
  seed: number;
  result: string;
  figures: string;
  seconds: number;
}

const seed = seedFrom("SOAK_SEED");
const rows: Row[] = [];
const totals = {
  cuts: 0,
  kills: 0,
  instanceCrashes: 0,
  fuzzInputs: 0,
  modelRuns: 0,
  lost: 0,
  duplicated: 0,
};
let failed = false;

async function part(check: string, partSeed: number, run: () => Promise<string>) {
  const started = Date.now();
  console.log(`soak: ${check} (seed ${partSeed}) …`);
  let result = "ok";
  let figures = "";
  try {
    figures = await run();
  } catch (err) {
    failed = true;
    result = "FAILED";
    figures = err instanceof Error ? err.message.split("\n")[0] : String(err);
    console.error(err);
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  rows.push({ check, seed: partSeed, result, figures, seconds });
  console.log(`soak: ${check}: ${result} ${figures} (${seconds} s)`);
}

await part("chaos end to end", seed, async () => {
  const s = await runChaos({
    seed,
    events: countFrom("SOAK_CHAOS_EVENTS", 50_000),
    wrappers: countFrom("SOAK_CHAOS_WRAPPERS", 1),
    pauseMs: 8,
  });
  totals.cuts += s.cuts;
  totals.lost += s.lost;
  totals.duplicated += s.duplicated;
  return `${s.events} events, ${s.cuts} cuts, ${s.stalls} stalls, ${s.lost} lost, ` +
    `${s.duplicated} duplicated, ${s.failedExecutions} failed`;
});

await part("crash-restart (SIGKILL)", seed + 1, async () => {
  const s = await runCrashLoop({
    seed: seed + 1,
    runs: countFrom("SOAK_CRASH_RUNS", 15),
    eventsPerRun: countFrom("SOAK_CRASH_EVENTS", 2000),
    killsPerRun: countFrom("SOAK_CRASH_KILLS", 3),
  });
  totals.kills += s.crashes;
  totals.lost += s.lost;
  totals.duplicated += s.duplicated;
  return `${s.crashes} crashes, ${s.runs} runs + ${s.abandoned} abandoned, ${s.events} events, ` +
    `${s.lost} lost, ${s.duplicated} duplicated`;
});

await part("fuzz (frames + REST)", seed + 2, async () => {
  const s = await runFuzz({
    seed: seed + 2,
    frames: countFrom("SOAK_FUZZ_FRAMES", 100_000),
    requests: countFrom("SOAK_FUZZ_REQUESTS", 100_000),
  });
  totals.fuzzInputs += s.frames + s.requests;
  return `${s.frames} frames, ${s.requests} requests, ${s.executions} runs, no 5xx`;
});

await part("model (fast-check)", seed + 3, async () => {
  const s = await runModel({ seed: seed + 3, runs: countFrom("SOAK_MODEL_RUNS", 1500) });
  totals.modelRuns += s.runs;
  totals.instanceCrashes += s.crashes;
  return `${s.runs} runs, ${s.commands} commands, ${s.executions} executions, ` +
    `${s.crashes} instance crashes, ${s.firings} deadline firings`;
});

for (const floods of [false, true]) {
  const name = floods
    ? "memory attack: readers + floods (issue 12)"
    : "memory attack: readers (issue 12)";
  await part(name, seed + 4, async () => {
    const r = await runAttackMix({
      events: countFrom("SOAK_ATTACK_EVENTS", 200),
      wsViewers: 10,
      sseViewers: 4,
      dsReaders: 4,
      jsonReaders: 4,
      floodFrames: floods ? countFrom("SOAK_ATTACK_FLOOD_FRAMES", 1000) : 0,
      holdMs: countFrom("SOAK_ATTACK_HOLD_MS", 10_000),
    });
    const failure = attackFailure(r);
    if (failure) throw new Error(`${failure}: ${describeAttack(r)}`);
    return describeAttack(r);
  });
}

await part("restart storm (issue 13)", seed + 5, async () => {
  const n = countFrom("SOAK_STORM_WRAPPERS", 2000);
  // PROTOCOL.md 9's wrapper backoff (1 s, up to 5 s) against a 10 s grace.
  const r = await restartStorm({ n, graceMs: 10_000, reconnectBaseMs: 1000, reconnectMaxMs: 5000 });
  const figures = `${n} wrappers: restart ${r.restartMs} ms, all back ${r.allBackMs} ms after ` +
    `listening, ${Math.round(r.admissionsPerSec)} admissions/s, back ${r.back}, gave up ` +
    `${r.ended}, executions not running ${r.notRunning}`;
  if (r.back !== n || r.ended > 0 || r.notRunning > 0 || r.allBackMs >= 10_000) {
    throw new Error(`not every wrapper came back within its grace: ${figures}`);
  }
  return figures;
});

const table = [
  "| check | seed | result | figures | s |",
  "|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.check} | ${r.seed} | ${r.result} | ${r.figures} | ${r.seconds} |`),
];
const summary = [
  "| cuts survived | crashes survived | fuzz inputs | model runs | events lost | events duplicated |",
  "|---|---|---|---|---|---|",
  `| ${totals.cuts} | ${totals.kills} SIGKILL + ${totals.instanceCrashes} in-process | ` +
  `${totals.fuzzInputs} | ${totals.modelRuns} | ${totals.lost} | ${totals.duplicated} |`,
];
console.log(`\n${table.join("\n")}\n\n${summary.join("\n")}\n`);
Deno.exit(failed ? 1 : 0);
