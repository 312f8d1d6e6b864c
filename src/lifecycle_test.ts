import assert from "node:assert/strict";
import { Credentials } from "./auth.ts";
import { type Config, loadConfig, testConfig } from "./config.ts";
import {
  admitConnection,
  commitFrames,
  createExecution,
  createSession,
  deleteSession,
  type Effects,
  failExecution,
  fireDeadline,
  interruptExecution,
  type LifecycleContext,
  recordDisconnect,
  restartGraces,
} from "./lifecycle.ts";
import type { CreateExecutionBody, Envelope, ExecutionStatusData } from "./protocol.ts";
import {
  type ExecutionRecord,
  listTimers,
  readEvents,
  records,
  timerKey,
  transact,
  type Tx,
} from "./store/mod.ts";

/** What each context's transitions handed to the after-commit step, in order. */
const commits = new WeakMap<LifecycleContext, Effects[]>();

/** A lifecycle context over a fresh in-memory KV that records its after-commit steps. */
async function context(config: Partial<Config> = {}): Promise<LifecycleContext> {
  const kv = await Deno.openKv(":memory:");
  const log: Effects[] = [];
  const ctx: LifecycleContext = {
    kv,
    config: testConfig(config),
    credentials: new Credentials("lifecycle-test-secret-0123456789", ["test-key"]),
    instanceId: "ins_test",
    queues: false,
    now: Date.now,
    committed: (effects) => log.push(effects),
  };
  commits.set(ctx, log);
  return ctx;
}

/** The after-commit steps `ctx` ran so far. */
const committed = (ctx: LifecycleContext): Effects[] => commits.get(ctx)!;

const urls = {
  ingestUrl: (eid: string) => `ws://test/v1/sessions/s/executions/${eid}/ingest`,
  streamUrl: "ws://test/v1/sessions/s/stream",
};

async function create(ctx: LifecycleContext, sid: string, body: CreateExecutionBody = {}) {
  const outcome = await createExecution(ctx, sid, body, urls);
  assert.ok(outcome.ok, JSON.stringify(outcome));
  return outcome.value.body;
}

/** Admits a connection for an active execution (`pending → running`). */
async function admit(
  ctx: LifecycleContext,
  sid: string,
  exec: { executionId: string; ingestToken: string },
  connectionId = `con_${exec.executionId}`,
) {
  const admission = await admitConnection(
    ctx,
    { sessionId: sid, executionId: exec.executionId },
    exec.ingestToken,
    connectionId,
    undefined,
  );
  assert.ok(admission.ok, JSON.stringify(admission));
  return connectionId;
}

const read = <T>(ctx: LifecycleContext, fn: (tx: Tx) => Promise<T>) => transact(ctx.kv, fn);

const execution = (ctx: LifecycleContext, eid: string) =>
  read(ctx, (tx) => records.execution(eid).get(tx)) as Promise<ExecutionRecord>;

/** Everything of a session that the ownership rule protects. */
const slots = (ctx: LifecycleContext, sid: string) =>
  read(ctx, async (tx) => ({
    active: await records.active(sid).get(tx),
    queue: await records.queue(sid).get(tx),
    interrupt: await records.interrupt(sid).get(tx),
    grace: await records.grace(sid).get(tx),
  }));

const events = async (ctx: LifecycleContext, sid: string): Promise<Envelope[]> =>
  (await readEvents(ctx.kv, sid, { after: 0, limit: 10_000 })).map((e) => e.envelope);

const terminalStatusEvents = (all: Envelope[], eid: string) =>
  all.filter((e) =>
    e.executionId === eid && e.streamEventType === "execution_status" &&
    ["completed", "failed", "interrupted"].includes((e.data as ExecutionStatusData).status)
  );

function lifecycleTest(
  name: string,
  fn: (ctx: LifecycleContext) => Promise<void>,
  config: Partial<Config> = {},
) {
  Deno.test(name, async () => {
    const ctx = await context(config);
    try {
      await fn(ctx);
    } finally {
      ctx.kv.close();
    }
  });
}

/**
 * A session where A ran and was completed, B was promoted, is running, has an interrupt
 * flag and a disconnect grace, and C waits in the queue.
 */
async function aEndedBActive(ctx: LifecycleContext) {
  assert.ok((await createSession(ctx, { sessionId: "s" })).ok);
  const a = await create(ctx, "s");
  const b = await create(ctx, "s");
  const c = await create(ctx, "s");
  const connA = await admit(ctx, "s", a);
  const done = await commitFrames(ctx, {
    sessionId: "s",
    executionId: a.executionId,
    connectionId: connA,
    frames: [{
      seq: 1,
      event: {
        executionId: a.executionId,
        streamEventType: "complete",
        timestamp: new Date().toISOString(),
        data: { exitCode: 0 },
      },
      terminal: { status: "completed" },
    }],
  });
  assert.ok(done.ok && done.value.status === "completed");
  const connB = await admit(ctx, "s", b);
  assert.ok((await interruptExecution(ctx, "s", b.executionId, "stop B")).ok);
  assert.ok(await recordDisconnect(ctx, b.executionId, connB, { code: 1006, reason: "" }));
  const before = await slots(ctx, "s");
  assert.equal(before.active?.executionId, b.executionId);
  assert.equal(before.interrupt?.executionId, b.executionId);
  assert.equal(before.grace?.executionId, b.executionId);
  assert.deepEqual(before.queue?.executionIds, [c.executionId]);
  return { a, b, c, before };
}

lifecycleTest(
  "ending old execution A never touches B's active slot, flag or grace",
  async (ctx) => {
    const { a, b, before } = await aEndedBActive(ctx);
    const eventsBefore = await events(ctx, "s");
    // Every late path that could end A again: fail, interrupt, a grace/heartbeat deadline.
    assert.deepEqual(await failExecution(ctx, "s", a.executionId, { error: "late" }), {
      ok: true,
      value: { failed: false },
    });
    assert.deepEqual(await interruptExecution(ctx, "s", a.executionId, "late"), {
      ok: true,
      value: { status: "completed" },
    });
    assert.deepEqual(await slots(ctx, "s"), before);
    assert.deepEqual(await events(ctx, "s"), eventsBefore);
    assert.equal((await execution(ctx, a.executionId)).status, "completed");
    assert.equal((await execution(ctx, b.executionId)).status, "running");
  },
);

lifecycleTest(
  "ending a queued execution while B is active leaves B's slot, flag and grace",
  async (ctx) => {
    const { b, c, before } = await aEndedBActive(ctx);
    const failed = await failExecution(ctx, "s", c.executionId, { error: "no longer wanted" });
    assert.deepEqual(failed, { ok: true, value: { failed: true } });
    const after = await slots(ctx, "s");
    assert.deepEqual(after.active, before.active);
    assert.deepEqual(after.interrupt, before.interrupt);
    assert.deepEqual(after.grace, before.grace);
    assert.deepEqual(after.queue?.executionIds ?? [], []);
    assert.equal((await execution(ctx, b.executionId)).status, "running");
    const ended = await execution(ctx, c.executionId);
    assert.equal(ended.status, "failed");
    assert.equal(ended.error, "no longer wanted");
  },
);

lifecycleTest("interrupting a queued execution leaves the active one alone", async (ctx) => {
  const { c, before } = await aEndedBActive(ctx);
  const result = await interruptExecution(ctx, "s", c.executionId, undefined);
  assert.deepEqual(result, { ok: true, value: { status: "interrupted" } });
  const after = await slots(ctx, "s");
  assert.deepEqual({ ...after, queue: undefined }, { ...before, queue: undefined });
  const all = await events(ctx, "s");
  const [cause, status] = all.slice(-2);
  assert.equal(cause.streamEventType, "interrupted");
  assert.deepEqual(cause.data, { reason: "User interrupted" });
  assert.deepEqual(status.data, {
    status: "interrupted",
    previousStatus: "pending",
    active: false,
    error: "User interrupted",
  });
});

lifecycleTest(
  "a queued id without a record is skipped: the next queued one is promoted",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const a = await create(ctx, "s");
    const b = await create(ctx, "s");
    const c = await create(ctx, "s");
    await ctx.kv.delete(records.execution(b.executionId).key);
    assert.ok((await failExecution(ctx, "s", a.executionId, { error: "done" })).ok);
    const after = await slots(ctx, "s");
    assert.deepEqual(after.active, { executionId: c.executionId });
    assert.deepEqual(after.queue?.executionIds ?? [], []);
    assert.ok((await execution(ctx, c.executionId)).activatedAt);
  },
);

lifecycleTest("failing twice gives one terminal event and false the second time", async (ctx) => {
  await createSession(ctx, { sessionId: "s" });
  const a = await create(ctx, "s");
  const first = await failExecution(ctx, "s", a.executionId, { error: "boom" });
  const eventsAfterFirst = await events(ctx, "s");
  const commitsAfterFirst = committed(ctx).length;
  const second = await failExecution(ctx, "s", a.executionId, { error: "again" });
  assert.deepEqual(first, { ok: true, value: { failed: true } });
  assert.deepEqual(second, { ok: true, value: { failed: false } });
  assert.equal(committed(ctx).length, commitsAfterFirst, "the second fail had nothing to push");
  assert.deepEqual(await events(ctx, "s"), eventsAfterFirst);
  assert.equal(terminalStatusEvents(eventsAfterFirst, a.executionId).length, 1);
  assert.equal(eventsAfterFirst.filter((e) => e.streamEventType === "error").length, 1);
  assert.equal((await execution(ctx, a.executionId)).error, "boom");
});

lifecycleTest("failExecution of an unknown execution or session is refused", async (ctx) => {
  await createSession(ctx, { sessionId: "s" });
  const a = await create(ctx, "s");
  const notFound = { ok: false, refusal: { code: "EXECUTION_NOT_FOUND" } };
  const unknown = "exc_00000000000000000000000000";
  assert.deepEqual(await failExecution(ctx, "s", unknown, { error: "x" }), notFound);
  assert.deepEqual(await failExecution(ctx, "other", a.executionId, { error: "x" }), notFound);
  assert.equal((await execution(ctx, a.executionId)).status, "pending");
});

/** Runs `count` ending calls of mixed kinds at once against one execution. */
async function raceToEnd(
  ctx: LifecycleContext,
  exec: { executionId: string },
  connectionId: string | undefined,
  count: number,
) {
  const eid = exec.executionId;
  const frame = (type: string, data: unknown, status: "completed" | "interrupted") => ({
    event: { executionId: eid, streamEventType: type, timestamp: new Date().toISOString(), data },
    terminal: { status },
  });
  const calls = Array.from({ length: count }, (_, i) => {
    switch (i % 5) {
      case 0:
        return failExecution(ctx, "s", eid, { error: `fail ${i}` });
      case 1:
        return interruptExecution(ctx, "s", eid, `interrupt ${i}`);
      case 2:
        return connectionId
          ? commitFrames(ctx, {
            sessionId: "s",
            executionId: eid,
            connectionId,
            frames: [frame("complete", { exitCode: 0 }, "completed")],
          })
          : failExecution(ctx, "s", eid, { error: `fail ${i}` });
      case 3:
        return connectionId
          ? commitFrames(ctx, {
            sessionId: "s",
            executionId: eid,
            connectionId,
            frames: [frame("interrupted", { reason: "agent stopped" }, "interrupted")],
          })
          : interruptExecution(ctx, "s", eid, `interrupt ${i}`);
      default:
        // The forced-interrupt deadline, due at once (interruptTimeoutMs is 1 here).
        return listTimers(ctx.kv).then((timers) =>
          Promise.all(
            timers.filter((t) => t.kind === "interrupt" && t.id === eid)
              .map((t) => fireDeadline(ctx, timerKey(t))),
          )
        );
    }
  });
  await Promise.all(calls);
}

async function assertEndedOnce(ctx: LifecycleContext, eid: string) {
  const exec = await execution(ctx, eid);
  assert.ok(["completed", "failed", "interrupted"].includes(exec.status), exec.status);
  const terminal = terminalStatusEvents(await events(ctx, "s"), eid);
  assert.equal(terminal.length, 1, JSON.stringify(terminal));
  assert.equal((terminal[0].data as ExecutionStatusData).status, exec.status);
  assert.equal(terminal[0].timestamp, exec.completedAt);
  const left = await slots(ctx, "s");
  assert.equal(left.active, null);
  assert.equal(left.interrupt, null);
  assert.equal(left.grace, null);
  return exec;
}

lifecycleTest(
  "50 concurrent complete/fail/interrupt calls on a running execution end it once",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const a = await create(ctx, "s");
    const conn = await admit(ctx, "s", a);
    await raceToEnd(ctx, a, conn, 50);
    await assertEndedOnce(ctx, a.executionId);
  },
  { interruptTimeoutMs: 1 },
);

lifecycleTest(
  "50 concurrent fail/interrupt calls on a pending execution end it once",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const a = await create(ctx, "s");
    await raceToEnd(ctx, a, undefined, 50);
    await assertEndedOnce(ctx, a.executionId);
  },
);

lifecycleTest(
  "a running execution with the interrupt flag ends by the forced deadline once",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const a = await create(ctx, "s");
    await admit(ctx, "s", a);
    assert.deepEqual(await interruptExecution(ctx, "s", a.executionId, "stop"), {
      ok: true,
      value: { status: "running" },
    });
    // A second interrupt keeps the first reason and deadline.
    await interruptExecution(ctx, "s", a.executionId, "other");
    const timers = (await listTimers(ctx.kv)).filter((t) => t.kind === "interrupt");
    assert.equal(timers.length, 1);
    const flag = await read(ctx, (tx) => records.interrupt("s").get(tx));
    assert.equal(flag?.reason, "stop");
    await new Promise((r) => setTimeout(r, 5));
    const firings = await Promise.all(
      Array.from({ length: 10 }, () => fireDeadline(ctx, timerKey(timers[0]))),
    );
    assert.equal(firings.filter((f) => f.ok && f.value.outcome === "forced-interrupt").length, 1);
    const exec = await assertEndedOnce(ctx, a.executionId);
    assert.equal(exec.status, "interrupted");
    assert.equal(exec.error, "Interrupted - wrapper did not confirm");
  },
  { interruptTimeoutMs: 1 },
);

lifecycleTest(
  "every stored event reaches the after-commit step exactly once, in order",
  async (ctx) => {
    // A, B, C, then: A completes by frame (B promoted), B is interrupted and disconnects, C is
    // failed by the route, the session is deleted; plus refusals, which commit nothing.
    const { c } = await aEndedBActive(ctx);
    assert.equal((await failExecution(ctx, "s", c.executionId, { error: "no" })).ok, true);
    assert.equal((await failExecution(ctx, "x", c.executionId, { error: "no" })).ok, false);
    assert.equal((await createSession(ctx, { sessionId: "s" })).ok, false);
    assert.equal((await deleteSession(ctx, "s")).ok, true);
    const pushed = committed(ctx).flatMap((e) => e.stored.map((s) => s.envelope));
    assert.deepEqual(pushed, await events(ctx, "s"));
    // Only commits that stored events or addressed an instance (the interrupt's kill) run it.
    assert.ok(committed(ctx).every((e) => e.stored.length > 0 || e.notified.size > 0));
    assert.ok(committed(ctx).some((e) => e.stored.length === 0 && e.notified.has("ins_test")));
  },
);

lifecycleTest("promotion happens in the commit that ends the previous execution", async (ctx) => {
  await createSession(ctx, { sessionId: "s" });
  const a = await create(ctx, "s");
  const b = await create(ctx, "s");
  const c = await create(ctx, "s");
  assert.deepEqual([a.active, b.active, c.active], [true, false, false]);
  assert.ok((await failExecution(ctx, "s", a.executionId, { error: "x" })).ok);
  const stored = committed(ctx).at(-1)!.stored.map((e) => e.envelope);
  assert.deepEqual(stored.map((e) => [e.executionId, e.streamEventType]), [
    [a.executionId, "error"],
    [a.executionId, "execution_status"],
    [b.executionId, "execution_status"],
  ]);
  assert.deepEqual(stored.map((e) => e.eventId), [4, 5, 6]);
  assert.equal(new Set(stored.map((e) => e.timestamp)).size, 1);
  assert.deepEqual(stored[2].data, { status: "pending", previousStatus: "pending", active: true });
  const [endedA, promotedB] = [
    await execution(ctx, a.executionId),
    await execution(ctx, b.executionId),
  ];
  assert.equal(endedA.completedAt, stored[0].timestamp);
  assert.equal(promotedB.activatedAt, stored[0].timestamp);
  const after = await slots(ctx, "s");
  assert.equal(after.active?.executionId, b.executionId);
  assert.deepEqual(after.queue?.executionIds, [c.executionId]);
  // The promoted execution got its never-connected deadline in the same commit.
  assert.ok((await listTimers(ctx.kv)).some((t) => t.kind === "pending" && t.id === b.executionId));
});

lifecycleTest(
  "deleting a session fails every live execution once and promotes nothing",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const a = await create(ctx, "s");
    const b = await create(ctx, "s");
    await admit(ctx, "s", a);
    assert.deepEqual(await deleteSession(ctx, "s"), { ok: true, value: undefined });
    assert.deepEqual(await deleteSession(ctx, "s"), {
      ok: false,
      refusal: { code: "SESSION_NOT_FOUND" },
    });
    for (const eid of [a.executionId, b.executionId]) {
      const exec = await execution(ctx, eid);
      assert.equal(exec.status, "failed");
      assert.equal(exec.error, "Session deleted");
      assert.equal(terminalStatusEvents(await events(ctx, "s"), eid).length, 1);
    }
    const left = await slots(ctx, "s");
    assert.deepEqual(left, { active: null, queue: null, interrupt: null, grace: null });
    const session = await read(ctx, (tx) => records.session("s").get(tx));
    assert.ok(session?.deletedAt);
    assert.equal((await createSession(ctx, { sessionId: "s" })).ok, false);
  },
);

lifecycleTest(
  "a stored error is cut to 1,024 code points; the failure event keeps it whole",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const a = await create(ctx, "s");
    const error = "😀".repeat(3000);
    await failExecution(ctx, "s", a.executionId, { error });
    const exec = await execution(ctx, a.executionId);
    assert.equal(Array.from(exec.error!).length, 1024);
    assert.ok(error.startsWith(exec.error!));
    const [cause, status] = (await events(ctx, "s")).slice(-2);
    assert.deepEqual(cause.data, { error, fatal: true });
    assert.equal((status.data as ExecutionStatusData).error, exec.error);
  },
);

lifecycleTest(
  "deleting a session with the largest allowed queue ends it all in one commit",
  async (ctx) => {
    await createSession(ctx, { sessionId: "s" });
    const runs = [];
    for (let i = 0; i <= ctx.config.maxQueue; i++) {
      runs.push(await create(ctx, "s", { callbackUrl: "http://127.0.0.1:9/hook" }));
    }
    const conn = await admit(ctx, "s", runs[0]);
    await recordDisconnect(ctx, runs[0].executionId, conn, { code: 1006, reason: "" });
    await interruptExecution(ctx, "s", runs[0].executionId, undefined);
    assert.equal((await deleteSession(ctx, "s")).ok, true);
    const all = await events(ctx, "s");
    for (const run of runs) {
      assert.equal((await execution(ctx, run.executionId)).status, "failed");
      assert.equal(terminalStatusEvents(all, run.executionId).length, 1);
    }
  },
  { maxQueue: loadConfig({ TETHER_MAX_QUEUE: "64" }).maxQueue },
);

lifecycleTest(
  "each restart arms one grace deadline per graced execution, never one per deadline",
  async (ctx) => {
    assert.ok((await createSession(ctx, { sessionId: "s" })).ok);
    const run = await create(ctx, "s");
    const conn = await admit(ctx, "s", run);
    assert.ok(await recordDisconnect(ctx, run.executionId, conn, { code: 1006, reason: "" }));
    const graceDeadlines = async () =>
      (await listTimers(ctx.kv)).filter((t) => t.kind === "grace" && t.id === run.executionId);
    let clock = Date.now();
    ctx.now = () => clock;
    for (let restart = 1; restart <= 6; restart++) {
      clock += 10; // each restart a little later: a new deadline key
      assert.equal(await restartGraces(ctx), 1, `restart ${restart}: the one grace restarts`);
      // One more per restart (the older ones end as no-ops); doubling would make 2 ** restart.
      assert.equal((await graceDeadlines()).length, 1 + restart);
    }
    const { grace } = await slots(ctx, "s");
    assert.equal(
      grace && Date.parse(grace.disconnectedAt),
      clock,
      "it counts from the last restart",
    );
  },
);
