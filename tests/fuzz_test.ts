import assert from "node:assert/strict";
import { runFuzz } from "./helpers/fuzz.ts";
import { createRun } from "./helpers/ingest_client.ts";
import { countFrom, seedFrom } from "./helpers/random.ts";
import { startServer } from "./helpers/server.ts";

Deno.test({
  name: "fuzz: random and mutated frames and REST requests never crash, 5xx or store garbage",
  async fn() {
    const seed = seedFrom("TETHER_FUZZ_SEED");
    // Printed first, so a run that hangs or is killed can still be replayed.
    console.log(`fuzz: seed ${seed} (replay: TETHER_FUZZ_SEED=${seed})`);
    const stats = await runFuzz({
      seed,
      frames: countFrom("TETHER_FUZZ_FRAMES", 5000),
      requests: countFrom("TETHER_FUZZ_REQUESTS", 5000),
    });
    console.log(`fuzz: seed ${seed} done, ${JSON.stringify(stats)}`);
  },
});

Deno.test("regression: 'Upgrade: websocket' without a handshake is a 400, not a 500", async () => {
  const server = await startServer();
  try {
    const run = await createRun(server, "half-upgrade");
    for (const path of [`/executions/${run.executionId}/ingest`, "/stream"]) {
      const res = await server.api(`/v1/sessions/half-upgrade${path}`, {
        headers: { upgrade: "websocket" },
      });
      assert.equal(res.status, 400, path);
      assert.equal((await res.json()).error, "INVALID_REQUEST");
    }
  } finally {
    await server.close();
  }
});
