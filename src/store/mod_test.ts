import assert from "node:assert/strict";
import { purgeSessionData, records } from "./mod.ts";
import { keys } from "./keys.ts";

/** A deleted session `sid` holding `events` event keys; returns its tombstone's versionstamp. */
async function deletedSession(kv: Deno.Kv, sid: string, events: number): Promise<string> {
  for (let first = 1; first <= events; first += 500) {
    const op = kv.atomic();
    for (let id = first; id < first + 500 && id <= events; id++) op.set(keys.event(sid, id), "{}");
    await op.commit();
  }
  const tombstone = {
    sessionId: sid,
    createdAt: "",
    metadata: {},
    incarnation: "a",
    deletedAt: "x",
  };
  return (await kv.set(records.session(sid).key, tombstone)).versionstamp;
}

const eventKeys = async (kv: Deno.Kv, sid: string) =>
  (await Array.fromAsync(kv.list({ prefix: keys.sessionPrefix(sid) })))
    .filter((e) => e.key.includes("event")).length;

Deno.test("purgeSessionData removes a deleted session's data in batches, the tombstone kept", async () => {
  using kv = await Deno.openKv(":memory:");
  const versionstamp = await deletedSession(kv, "s", 1200);
  assert.equal(await purgeSessionData(kv, "s", versionstamp), true);
  assert.equal(await eventKeys(kv, "s"), 0);
  assert.ok((await kv.get(records.session("s").key)).value);
});

Deno.test("purgeSessionData stops, deleting nothing, once its tombstone is gone", async () => {
  // Another instance finished the purge and the id was created again: what is under the id
  // now is the new session's.
  using kv = await Deno.openKv(":memory:");
  const versionstamp = await deletedSession(kv, "s", 1200);
  const live = { sessionId: "s", createdAt: "", metadata: {}, incarnation: "b" };
  await kv.set(records.session("s").key, live);
  assert.equal(await purgeSessionData(kv, "s", versionstamp), false);
  assert.equal(await eventKeys(kv, "s"), 1200);
});
