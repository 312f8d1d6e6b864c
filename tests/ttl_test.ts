/**
 * Session TTL and purge (PROTOCOL.md 4 and 8): a session with no new event and no active
 * execution for `TETHER_SESSION_TTL_MS` is deleted, an active one is kept, and the deleted
 * session's data is removed in the background while its eventIds stay reserved.
 */
import assert from "node:assert/strict";
import { delay } from "../src/async.ts";
import { keys } from "../src/store/keys.ts";
import { timersOf, wakeupVariants } from "./helpers/deadline_env.ts";
import {
  createRun,
  eventually,
  getExecution,
  IngestClient,
  serverTest,
} from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";

const TTL_MS = 300;

const sessionStatus = async (server: TestServer, sid: string) => {
  const res = await server.api(`/v1/sessions/${sid}`);
  await res.body?.cancel();
  return res.status;
};

/** Keys still stored for a session and its executions (the head is kept on purpose). */
async function storedKeys(server: TestServer, sid: string, eids: string[]) {
  const found: Deno.KvKey[] = [];
  for await (const e of server.kv.list({ prefix: keys.sessionPrefix(sid) })) found.push(e.key);
  const session = await server.kv.get(keys.session(sid));
  if (session.value) found.push(session.key);
  for (const eid of eids) {
    for await (const e of server.kv.list({ prefix: keys.exec(eid) })) found.push(e.key);
    const exec = await server.kv.get(keys.exec(eid));
    if (exec.value) found.push(exec.key);
  }
  return found;
}

for (const { label, config } of wakeupVariants()) {
  serverTest(`[${label}] an idle session expires and its data is purged`, async (server) => {
    const run = await createRun(server, "s1");
    await server.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
      method: "POST",
      json: { error: "done" },
    });
    const lastEventId = (await server.call("/v1/sessions/s1")).body.lastEventId as number;
    assert.equal(await sessionStatus(server, "s1"), 200);
    await eventually(async () => (await sessionStatus(server, "s1")) === 404, "expiry", 5000);
    await eventually(
      async () => (await storedKeys(server, "s1", [run.executionId])).length === 0,
      "purge",
      5000,
    );
    assert.deepEqual(await timersOf(server, "s1"), []);
    // The id can be used again and its eventIds continue.
    const again = await server.call("/v1/sessions", { method: "POST", json: { sessionId: "s1" } });
    assert.equal(again.status, 201);
    assert.equal((await server.call("/v1/sessions/s1")).body.lastEventId, lastEventId);
  }, { config: { ...config, sessionTtlMs: TTL_MS } });
}

serverTest("a session with an active execution is kept; it expires once idle", async (server) => {
  const run = await createRun(server, "s1");
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  await delay(TTL_MS * 3);
  assert.equal(await sessionStatus(server, "s1"), 200);
  assert.equal((await getExecution(server, run)).status, "running");
  wrapper.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
  await wrapper.closed;
  const endedAt = Date.now();
  await eventually(async () => (await sessionStatus(server, "s1")) === 404, "expiry", 5000);
  assert.ok(Date.now() - endedAt >= TTL_MS - 20, "idle time counts from the last event");
}, { config: { sessionTtlMs: TTL_MS } });

serverTest("new events push the expiry back", async (server) => {
  const run = await createRun(server, "s1");
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  wrapper.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
  await wrapper.closed;
  for (let i = 0; i < 4; i++) {
    await delay(TTL_MS / 2);
    // Each new execution adds events (created, interrupted): the session is not idle.
    const next = await server.call("/v1/sessions/s1/executions", { method: "POST", json: {} });
    assert.equal(next.status, 201, "the session is still there");
    await server.call(`/v1/sessions/s1/executions/${next.body.executionId}/interrupt`, {
      method: "POST",
      json: {},
    });
  }
  assert.equal(await sessionStatus(server, "s1"), 200);
  await eventually(async () => (await sessionStatus(server, "s1")) === 404, "expiry", 5000);
}, { config: { sessionTtlMs: TTL_MS } });
