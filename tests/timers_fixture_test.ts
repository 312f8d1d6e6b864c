/**
 * Stored data is a contract: deadlines armed by an older service (the KV fixture
 * `tests/fixtures/timers_v1.kv`, one of every kind, made before deadlines became a tagged
 * union) still fire, each once, with the effect its kind had then.
 */
import assert from "node:assert/strict";
import { ErrorText } from "../src/protocol.ts";
import { listTimers, timerKey, type TimerRecord } from "../src/store/mod.ts";
import { FIXTURE_CALLBACK_PORT, FIXTURE_SECRET } from "./fixtures/timers_v1.ts";
import { eventually } from "./helpers/ingest_client.ts";
import { startServer, tempKvPath } from "./helpers/server.ts";
import { expectedSignature } from "./helpers/signature.ts";

const FIXTURE = new URL("./fixtures/timers_v1.kv", import.meta.url).pathname;

Deno.test({
  name: "deadlines armed by the previous stored shape (fixture) all fire",
  async fn() {
    const temp = await tempKvPath();
    await Deno.copyFile(FIXTURE, temp.path);
    const hooks: { body: string; signature: string | null }[] = [];
    const receiver = Deno.serve(
      { port: FIXTURE_CALLBACK_PORT, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        hooks.push({ body: await req.text(), signature: req.headers.get("x-tether-signature") });
        return new Response(null, { status: 204 });
      },
    );
    const armed = await (async () => {
      const kv = await Deno.openKv(temp.path);
      try {
        return await listTimers(kv);
      } finally {
        kv.close();
      }
    })();
    assert.deepEqual(
      [...new Set(armed.map((t: TimerRecord) => t.kind))].sort(),
      ["callback", "grace", "heartbeat", "interrupt", "pending", "purge", "ttl"],
    );
    const server = await startServer({
      kvPath: temp.path,
      config: {
        ticketSecret: FIXTURE_SECRET,
        callbackPrivate: true,
        // Long enough that sessions whose executions end now outlive the checks below,
        // short enough that the fixture's idle session has expired.
        sessionTtlMs: 10_000,
        pendingTimeoutMs: 1000,
        interruptTimeoutMs: 1000,
      },
    });
    try {
      // Every stored deadline now due is consumed (fired, or re-armed under a new key). The
      // hour-long heartbeats fall due only once the fixture is an hour old.
      const now = Date.now();
      const due = armed.filter((t) => t.dueAt <= now);
      assert.ok(due.length >= 16, `${due.length} stored deadlines due`);
      const storedKeys = new Set(due.map((t) => JSON.stringify(timerKey(t))));
      await eventually(
        async () => {
          const left = (await listTimers(server.kv)).map((t) => JSON.stringify(timerKey(t)));
          return left.every((k) => !storedKeys.has(k));
        },
        "every stored deadline consumed",
        10_000,
      );
      const execOf = async (sid: string) => {
        const list = await server.call<{ executions: Record<string, unknown>[] }>(
          `/v1/sessions/${sid}/executions`,
        );
        return list.body?.executions?.[0];
      };
      const pending = await execOf("s_pending");
      assert.equal(pending?.status, "failed");
      assert.equal(pending?.error, ErrorText.neverConnected);
      const silent = await execOf("s_heartbeat");
      assert.equal(silent?.status, "failed");
      assert.equal(silent?.error, ErrorText.heartbeatTimeout);
      const interrupted = await execOf("s_interrupt");
      assert.equal(interrupted?.status, "interrupted");
      assert.equal(interrupted?.error, ErrorText.forcedInterrupt);
      // Its heartbeat deadline fell due too once the fixture was an hour old: either ends it.
      const lost = await execOf("s_grace");
      assert.equal(lost?.status, "failed");
      assert.ok(
        ([ErrorText.wrapperDisconnected, ErrorText.heartbeatTimeout] as string[])
          .includes(String(lost?.error)),
      );
      await eventually(() => hooks.length === 1, "the stored callback delivered");
      const body = JSON.parse(hooks[0].body);
      assert.equal(body.sessionId, "s_callback");
      assert.equal(body.status, "completed");
      assert.equal(hooks[0].signature, await expectedSignature(FIXTURE_SECRET, hooks[0].body));
      assert.equal((await server.api("/v1/sessions/s_ttl")).status, 404);
      assert.equal((await server.api("/v1/sessions/s_purge")).status, 404);
      assert.equal(hooks.length, 1);
    } finally {
      await server.close();
      await receiver.shutdown();
      await temp.cleanup();
    }
  },
});
