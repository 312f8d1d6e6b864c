import assert from "node:assert/strict";
import { type ConnectionHandle, Hub } from "./hub.ts";
import { Logger } from "./log.ts";
import { INBOX_BATCH, postToInbox, transact } from "./store/mod.ts";

/** A held socket that only counts the kills it is asked for. */
function countingHandle(): ConnectionHandle & { kills: number } {
  return {
    kills: 0,
    closed: Promise.resolve(),
    close() {},
    kill() {
      this.kills++;
    },
    deliverInputs() {},
  };
}

Deno.test("one delivery takes every waiting inbox message, beyond one batch", async () => {
  const kv = await Deno.openKv(":memory:");
  const hub = new Hub(kv, "ins_a", { log: new Logger("silent") });
  try {
    const handle = countingHandle();
    hub.holdConnection("con_1", handle);
    const waiting = 2 * INBOX_BATCH + 100;
    for (let posted = 0; posted < waiting; posted += 250) {
      await transact(kv, (tx) => {
        for (let i = 0; i < 250 && posted + i < waiting; i++) {
          postToInbox(tx, "ins_a", { type: "kill", connectionId: "con_1", reason: "stop" });
        }
        return Promise.resolve();
      });
    }
    await hub.deliverInbox();
    assert.equal(handle.kills, waiting);
    assert.equal(
      (await Array.fromAsync(kv.list({ prefix: [] }))).length,
      1,
      "only the bell is left",
    );
  } finally {
    await hub.stop();
    kv.close();
  }
});
