/**
 * The heartbeat deadline of a running execution is cheap (issue 13): a firing that finds the
 * execution heard from re-arms it after one KV read in one commit, and liveness written while
 * it fires never makes it conflict; a silent execution still fails with the heartbeat-timeout
 * error (PROTOCOL.md 8).
 */
import assert from "node:assert/strict";
import { testConfig } from "../src/config.ts";
import { commitFrames, fireDeadlines } from "../src/lifecycle.ts";
import { ErrorText } from "../src/protocol.ts";
import { createService } from "../src/service.ts";
import { listTimers, records, timerKey, transact } from "../src/store/mod.ts";
import { keys } from "../src/store/keys.ts";
import { admitRuns } from "./helpers/storm.ts";

/** A KV handle that counts reads and commits, and can run a hook right before a commit. */
function watchedKv(kv: Deno.Kv) {
  const seen = {
    reads: 0,
    commits: 0,
    beforeCommit: undefined as (() => Promise<void>) | undefined,
  };
  const handle = new Proxy(kv, {
    get(target, prop) {
      if (prop === "getMany") {
        return (list: Deno.KvKey[]) => {
          seen.reads++;
          return target.getMany(list);
        };
      }
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            seen.commits++;
            const hook = seen.beforeCommit;
            seen.beforeCommit = undefined;
            await hook?.();
            return commit();
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { handle, seen };
}

async function heartbeatOf(kv: Deno.Kv, executionId: string) {
  const [timer] = (await listTimers(kv)).filter((t) =>
    t.kind === "heartbeat" && t.id === executionId
  );
  assert.ok(timer, "a heartbeat deadline is armed");
  return timer;
}

Deno.test("a heartbeat firing of a live execution re-arms after one read, in one commit, despite racing liveness", async () => {
  const raw = await Deno.openKv(":memory:");
  const { handle, seen } = watchedKv(raw);
  let now = Date.now();
  const config = testConfig({ timerWakeups: [], heartbeatWriteMs: 0 });
  const service = await createService(config, handle, { now: () => now });
  try {
    const ctx = service.rt.ctx;
    const [run] = await admitRuns(service, { count: 1, heartbeatTimeoutMs: 1000 });
    const armed = await heartbeatOf(raw, run.executionId);
    now = armed.dueAt - 400;
    // Heard from 400 ms before the deadline: at the deadline it is 600 ms from timing out.
    const beat = await commitFrames(ctx, run.sessionId, run.executionId, run.connectionId, [{}]);
    assert.ok(beat.ok);
    now = armed.dueAt;
    seen.reads = seen.commits = 0;
    // Liveness lands between the firing's read and its commit.
    seen.beforeCommit = async () => {
      const exec = (await raw.get<Record<string, unknown>>(keys.exec(run.executionId))).value!;
      await raw.set(keys.exec(run.executionId), { ...exec, lastHeartbeatAt: now });
    };
    const [result] = await fireDeadlines(ctx, [timerKey(armed)]);
    assert.ok(result.ok && result.value);
    assert.equal(result.value.outcome, "rearmed");
    assert.deepEqual(seen, { reads: 1, commits: 1, beforeCommit: undefined });
    const rearmed = await heartbeatOf(raw, run.executionId);
    assert.equal(rearmed.dueAt, armed.dueAt - 400 + 1000);
  } finally {
    await service.stop();
    raw.close();
  }
});

Deno.test("a silent execution's heartbeat firing fails it with the heartbeat timeout", async () => {
  const kv = await Deno.openKv(":memory:");
  let now = Date.now();
  const config = testConfig({ timerWakeups: [] });
  const service = await createService(config, kv, { now: () => now });
  try {
    const [run] = await admitRuns(service, { count: 1, heartbeatTimeoutMs: 1000 });
    const armed = await heartbeatOf(kv, run.executionId);
    now = armed.dueAt;
    const [result] = await fireDeadlines(service.rt.ctx, [timerKey(armed)]);
    assert.ok(result.ok && result.value);
    assert.equal(result.value.outcome, "failed");
    const exec = await transact(kv, (tx) => records.execution(run.executionId).get(tx));
    assert.equal(exec?.status, "failed");
    assert.equal(exec?.error, ErrorText.heartbeatTimeout);
    assert.deepEqual((await listTimers(kv)).filter((t) => t.kind === "heartbeat"), []);
  } finally {
    await service.stop();
    kv.close();
  }
});

Deno.test("heartbeat checks wake at their slot, so those due close together fire together", async () => {
  const kv = await Deno.openKv(":memory:");
  const config = testConfig({ timerWakeups: ["sweep"], sweepMs: 100 });
  const slot = 250;
  const service = await createService(config, kv, { deadlines: { heartbeatSlotMs: slot } });
  try {
    const runs = await admitRuns(service, { count: 4, heartbeatTimeoutMs: 700 });
    const due = new Map<string, number>();
    for (const run of runs) {
      due.set(run.executionId, (await heartbeatOf(kv, run.executionId)).dueAt);
    }
    const read = (eid: string) => transact(kv, (tx) => records.execution(eid).get(tx));
    const ended = async (eid: string) => {
      for (let exec = await read(eid);; exec = await read(eid)) {
        if (exec?.status === "failed") return exec;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    for (const run of runs) {
      const exec = await ended(run.executionId);
      const dueAt = due.get(run.executionId)!;
      const firedAt = Date.parse(exec.completedAt!);
      const slotAt = Math.ceil(dueAt / slot) * slot;
      assert.equal(exec.error, ErrorText.heartbeatTimeout);
      assert.ok(
        firedAt >= slotAt,
        `${run.executionId} fired ${slotAt - firedAt} ms before its slot`,
      );
      assert.ok(
        firedAt - dueAt < slot + 300,
        `${run.executionId} fired ${firedAt - dueAt} ms late`,
      );
    }
  } finally {
    await service.stop();
    kv.close();
  }
});
