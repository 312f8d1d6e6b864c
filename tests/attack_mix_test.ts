/**
 * Issue 12's memory attack against a real service process (short CI size; `deno task soak`
 * runs the large one): stalled WebSocket, SSE and Durable Streams readers and big JSON pages
 * of a session holding large events, then the same with two ingest floods on top. The
 * service's peak RSS stays under a bound, `/healthz` answers within 1 s throughout, and
 * every event reads back whole.
 */
import assert from "node:assert/strict";
import {
  attackFailure,
  type AttackMixOptions,
  describeAttack,
  runAttackMix,
} from "./helpers/attack_mix.ts";
import { countFrom } from "./helpers/random.ts";

async function attack(name: string, options: AttackMixOptions): Promise<void> {
  const result = await runAttackMix({
    events: countFrom("TETHER_ATTACK_EVENTS", 100),
    holdMs: countFrom("TETHER_ATTACK_HOLD_MS", 3000),
    ...options,
  });
  console.log(`${name}: ${describeAttack(result)}`);
  assert.equal(attackFailure(result), undefined, describeAttack(result));
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
    attack("readers + floods", { floodFrames: countFrom("TETHER_ATTACK_FLOOD_FRAMES", 200) }),
});
