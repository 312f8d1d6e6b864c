/**
 * Restarts (PROTOCOL.md 5.4 and 8) with the real service as a child process on a KV file:
 * SIGKILL, then a restart on the same file and port. Deadlines that fell due while it was
 * down fire within a second of the restart; connections the dead process held get a grace
 * with close code 1012; a wrapper that reconnects continues where it was. SIGTERM closes
 * ingest sockets with 1012 and records their grace before exiting.
 */
import assert from "node:assert/strict";
import { delay } from "../src/async.ts";
import { ErrorText } from "../src/protocol.ts";
import { records, transact } from "../src/store/mod.ts";
import { type ChildService, freePort, startChildService } from "./helpers/child_service.ts";
import { eventually, IngestClient, type Run } from "./helpers/ingest_client.ts";
import { restartStorm } from "./helpers/restart_storm.ts";
import { tempKvPath } from "./helpers/server.ts";

const GRACE_MS = 1500;
const PENDING_MS = 1000;
const env = {
  TETHER_DISCONNECT_GRACE_MS: String(GRACE_MS),
  TETHER_PENDING_TIMEOUT_MS: String(PENDING_MS),
};

async function createRun(child: ChildService, sessionId: string): Promise<Run> {
  await child.call("/v1/sessions", { method: "POST", json: { sessionId } });
  const res = await child.call<Run>(`/v1/sessions/${sessionId}/executions`, {
    method: "POST",
    json: {},
  });
  assert.equal(res.status, 201);
  return res.body;
}

async function execution(child: ChildService, run: Run) {
  const res = await child.call(`/v1/sessions/${run.sessionId}/executions/${run.executionId}`);
  assert.equal(res.status, 200);
  return res.body;
}

async function events(child: ChildService, sessionId: string) {
  const res = await child.call<{ events: { streamEventType: string; data: unknown }[] }>(
    `/v1/sessions/${sessionId}/events?limit=1000`,
  );
  return res.body.events;
}

/** The ingest URL of a run on a (restarted) service. */
const ingestUrl = (child: ChildService, run: Run) =>
  `${child.wsUrl}/v1/sessions/${run.sessionId}/executions/${run.executionId}/ingest`;

Deno.test({
  name:
    "after SIGKILL and a restart: due deadlines fire at once, lost connections get a 1012 grace",
  async fn() {
    const kv = await tempKvPath();
    const port = freePort();
    try {
      const first = await startChildService({ kvPath: kv.path, port, env });
      const idle = await createRun(first, "never-connected");
      const resumer = await createRun(first, "resumes");
      const lost = await createRun(first, "lost");
      const w1 = await IngestClient.connect(ingestUrl(first, resumer), {
        token: resumer.ingestToken,
        dial: "wA/1",
      });
      for (const seq of [1, 2, 3]) w1.send({ streamEventType: "output", seq, data: { seq } });
      await w1.ackOf(3);
      const w2 = await IngestClient.connect(ingestUrl(first, lost), { token: lost.ingestToken });
      const idleDue = Date.parse((await execution(first, idle)).activatedAt as string) +
        PENDING_MS;
      await first.kill("SIGKILL");
      await Promise.all([w1.closed, w2.closed]);

      // Stay down until the pending deadline is well past due.
      await delay(Math.max(0, idleDue + 300 - Date.now()));
      const second = await startChildService({ kvPath: kv.path, port, env });
      try {
        await eventually(
          async () => (await execution(second, idle)).status === "failed",
          "the overdue pending deadline",
          3000,
        );
        const failed = await execution(second, idle);
        assert.equal(failed.error, ErrorText.neverConnected);
        const lateAfterRestart = Date.parse(failed.completedAt as string) - second.readyAt;
        assert.ok(lateAfterRestart <= 1000, `fired ${lateAfterRestart} ms after the restart`);

        // Both lost connections are inside a fresh grace.
        assert.equal((await execution(second, resumer)).health, "disconnected");
        assert.equal((await execution(second, lost)).health, "disconnected");

        // The wrapper that comes back continues where it was: nothing lost, nothing twice.
        const w3 = await IngestClient.connect(ingestUrl(second, resumer), {
          token: resumer.ingestToken,
          dial: "wA/2",
        });
        assert.equal(w3.messages[0].lastSeq, 3);
        w3.send({ streamEventType: "output", seq: 3, data: { seq: 3 } }); // a resend
        w3.send({ streamEventType: "output", seq: 4, data: { seq: 4 } });
        await w3.ackOf(4);
        const outputs = (await events(second, "resumes"))
          .filter((e) => e.streamEventType === "output").map((e) => e.data);
        assert.deepEqual(outputs, [{ seq: 1 }, { seq: 2 }, { seq: 3 }, { seq: 4 }]);

        // The one that never comes back fails with the restart's close code.
        await eventually(
          async () => (await execution(second, lost)).status === "failed",
          "grace expiry",
          GRACE_MS + 3000,
        );
        const disconnected = (await events(second, "lost"))
          .filter((e) => e.streamEventType === "wrapper_disconnected");
        assert.deepEqual(disconnected.map((e) => e.data), [{
          error: "Wrapper disconnected",
          fatal: true,
          reason: "Wrapper disconnected",
          wsCloseCode: 1012,
          wsCloseReason: "service restarted",
        }]);
        const resumed = await execution(second, resumer);
        assert.equal(resumed.status, "running");
        assert.equal(resumed.health, "healthy");
        await w3.close();
      } finally {
        await second.kill("SIGKILL");
      }
    } finally {
      await kv.cleanup();
    }
  },
});

Deno.test({
  name: "SIGTERM records a 1012 grace for each socket; after a restart it starts again from then",
  async fn() {
    const kv = await tempKvPath();
    try {
      const child = await startChildService({ kvPath: kv.path, port: freePort(), env });
      const run = await createRun(child, "s1");
      const wrapper = await IngestClient.connect(ingestUrl(child, run), {
        token: run.ingestToken,
      });
      const [status, close] = await Promise.all([child.kill("SIGTERM"), wrapper.closed]);
      assert.equal(close.code, 1012);
      assert.equal(status.code, 0);
      const store = await Deno.openKv(kv.path);
      try {
        const [grace, conn] = await transact(
          store,
          (tx) => Promise.all([records.grace("s1").get(tx), records.conn(run.executionId).get(tx)]),
        );
        assert.equal(grace?.executionId, run.executionId);
        assert.equal(grace?.wsCloseCode, 1012);
        assert.equal(conn, null, "the connection record is cleared, so no second grace");
      } finally {
        store.close();
      }
      // Down for longer than the grace: after the restart the grace starts again from the
      // restart (PROTOCOL.md 9.3), so a wrapper back within it continues.
      await delay(GRACE_MS + 500);
      const port = freePort();
      const second = await startChildService({ kvPath: kv.path, port, env });
      try {
        await delay(GRACE_MS / 2);
        assert.equal((await execution(second, run)).status, "running");
        const back = await IngestClient.connect(ingestUrl(second, run), {
          token: run.ingestToken,
        });
        back.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
        assert.equal((await back.closed).code, 4000);
        assert.equal((await execution(second, run)).status, "completed");
        const types = (await events(second, "s1")).map((e) => e.streamEventType);
        assert.ok(!types.includes("wrapper_disconnected"), types.join());
      } finally {
        await second.kill("SIGKILL");
      }
    } finally {
      await kv.cleanup();
    }
  },
});

Deno.test({
  name: "restart storm: every wrapper of a SIGKILLed service reconnects within its grace",
  async fn() {
    const n = 60;
    const result = await restartStorm({
      n,
      graceMs: 4000,
      reconnectBaseMs: 100,
      reconnectMaxMs: 500,
    });
    console.log(
      `restart storm: ${n} wrappers back ${result.allBackMs} ms after the restart (${
        Math.round(result.admissionsPerSec)
      } admissions/s; restart took ${result.restartMs} ms)`,
    );
    assert.equal(result.back, n, "every wrapper came back");
    assert.equal(result.ended, 0, "no wrapper gave up");
    assert.equal(result.notRunning, 0, "no execution failed");
    assert.ok(result.allBackMs < 4000, `all back within the grace: ${result.allBackMs} ms`);
  },
});
