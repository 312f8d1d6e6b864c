/**
 * Issue 12's memory attack against a real service process (short CI size; `deno task soak`
 * runs the large one): stalled WebSocket, SSE and Durable Streams readers and big JSON pages
 * of a session holding large events, then the same with two ingest floods on top. The
 * service's peak RSS stays under a bound, `/healthz` answers within 1 s throughout, and
 * every event reads back whole.
 */
import assert from "node:assert/strict";
import { type AttackMixOptions, describeAttack, runAttackMix } from "./helpers/attack_mix.ts";
import { countFrom } from "./helpers/random.ts";

/** The bound the issue aims at for the readers (the service idles at about 150 MB). */
const PEAK_RSS_BOUND = 512 * 1024 * 1024;
/**
 * With both ingest floods on top: frames already on the wire are still decoded while a flooded
 * connection is being closed, and peaks of 460–540 MB were measured (2,302 MB before the limits).
 */
const PEAK_RSS_BOUND_WITH_FLOODS = 640 * 1024 * 1024;
const HEALTHZ_BOUND_MS = 1000;

async function attack(
  name: string,
  options: AttackMixOptions,
  peakRssBound = PEAK_RSS_BOUND,
): Promise<void> {
  const result = await runAttackMix({
    events: countFrom("TETHER_ATTACK_EVENTS", 100),
    holdMs: countFrom("TETHER_ATTACK_HOLD_MS", 3000),
    ...options,
  });
  console.log(`${name}: ${describeAttack(result)}`);
  assert.equal(result.damagedEvents, 0);
  assert.ok(result.peakRssBytes < peakRssBound, describeAttack(result));
  // The bound is the service's: on a loaded machine an idle server probed alongside is slow
  // too, and that much is the machine's, not the service's.
  assert.ok(result.worstHealthzMs < HEALTHZ_BOUND_MS + result.baselineMs, describeAttack(result));
}

Deno.test({
  name: "attack mix: large events, stalled readers and big pages stay within memory",
  fn: () => attack("readers", { floodFrames: 0 }),
});

Deno.test({
  name: "attack mix: the same readers plus seq-less and numbered ingest floods",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    attack(
      "readers + floods",
      { floodFrames: countFrom("TETHER_ATTACK_FLOOD_FRAMES", 200) },
      PEAK_RSS_BOUND_WITH_FLOODS,
    ),
});
