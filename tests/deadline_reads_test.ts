/**
 * What deadline firings read (issue 13):
 * - the heartbeat deadline of a running execution is cheap: a firing that finds the execution
 *   heard from re-arms it after one KV read in one commit, and liveness written while it fires
 *   never makes it conflict; a silent execution still fails with the heartbeat-timeout error
 *   (PROTOCOL.md 8), and heartbeat checks due close together wake in one slot;
 * - a deadline fired with what was read ahead of its due time reads nothing more, and one whose
 *   records changed since fires from fresh reads, never from the stale ones.
 */
import assert from "node:assert/strict";
import { testConfig } from "../src/config.ts";
import {
  commitFrames,
  failExecution,
  fireDeadlines,
  readAhead,
  recordDisconnect,
} from "../src/lifecycle.ts";
import { ErrorText } from "../src/protocol.ts";
import { createService, type Service } from "../src/service.ts";
import {
  listDueTimers,
  listTimers,
  readEvents,
  records,
  timerKey,
  transact,
} from "../src/store/mod.ts";
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
    const beat = await commitFrames(ctx, { ...run, frames: [{}] });
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

/** One running execution disconnected: its grace deadline as a listing reads it. */
async function listedGrace(service: Service, kv: Deno.Kv) {
  const [run] = await admitRuns(service, { count: 1, graceMs: 1000 });
  const close = { code: 1012, reason: "service restarted" };
  await recordDisconnect(service.rt.ctx, run.executionId, run.connectionId, close);
  const [entry] = (await listDueTimers(kv, Date.now() + 5000, { limit: 10 }))
    .filter((e) => e.key[2] === "grace");
  assert.ok(entry, "the grace deadline is listed");
  return { run, entry };
}

Deno.test("a deadline fired with what was read ahead of it reads nothing more", async () => {
  const raw = await Deno.openKv(":memory:");
  const { handle, seen } = watchedKv(raw);
  let now = Date.now();
  const service = await createService(testConfig({ timerWakeups: [] }), handle, { now: () => now });
  try {
    const { run, entry } = await listedGrace(service, raw);
    const [ahead] = await readAhead(handle, [entry.key]);
    now = Number(entry.key[1]);
    seen.reads = seen.commits = 0;
    const [result] = await fireDeadlines(service.rt.ctx, [{ ...entry, ahead }]);
    assert.ok(result.ok && result.value);
    assert.equal(result.value.outcome, "failed");
    assert.deepEqual(seen, { reads: 0, commits: 1, beforeCommit: undefined });
    const exec = await transact(raw, (tx) => records.execution(run.executionId).get(tx));
    assert.equal(exec?.error, ErrorText.wrapperDisconnected);
  } finally {
    await service.stop();
    raw.close();
  }
});

Deno.test("a deadline whose records changed since they were read ahead fires from fresh reads", async () => {
  const kv = await Deno.openKv(":memory:");
  let now = Date.now();
  const service = await createService(testConfig({ timerWakeups: [] }), kv, { now: () => now });
  try {
    const { run, entry } = await listedGrace(service, kv);
    const [ahead] = await readAhead(kv, [entry.key]);
    // The execution ends by another path after the read ahead: the grace must do nothing.
    const failed = await failExecution(service.rt.ctx, run.sessionId, run.executionId, {
      error: "ended meanwhile",
    });
    assert.ok(failed.ok && failed.value.failed);
    now = Number(entry.key[1]);
    const [result] = await fireDeadlines(service.rt.ctx, [{ ...entry, ahead }]);
    assert.ok(result.ok && result.value);
    assert.equal(result.value.outcome, "noop");
    const exec = await transact(kv, (tx) => records.execution(run.executionId).get(tx));
    assert.equal(exec?.error, "ended meanwhile");
    const events = await readEvents(kv, run.sessionId, { after: 0, limit: 100 });
    const statuses = events.filter((e) => e.envelope.streamEventType === "execution_status");
    assert.equal(
      statuses.filter((e) => (e.envelope.data as { status?: string }).status === "failed").length,
      1,
    );
    assert.deepEqual((await listTimers(kv)).filter((t) => t.kind === "grace"), []);
  } finally {
    await service.stop();
    kv.close();
  }
});
