import assert from "node:assert/strict";
import { Credentials } from "./auth.ts";
import { testConfig } from "./config.ts";
import { FrameBatcher } from "./ingest_batcher.ts";
import {
  admitConnection,
  createExecution,
  createSession,
  type FrameWork,
  type LifecycleContext,
  type PreparedFrame,
} from "./lifecycle.ts";
import type { Envelope } from "./protocol.ts";
import { KnownEntries, readEvents, records, transact } from "./store/mod.ts";

/** The sessions whose events one atomic commit writes, in the order commits were attempted. */
type CommitLog = { sessions: string[]; ok: boolean }[];

/**
 * A real in-memory KV whose commits are logged, and held at `gate` (when set) before they go
 * out: the moment between a transaction's reads and its commit, where a race can strike.
 */
function observedKv(kv: Deno.Kv, log: CommitLog) {
  const control: { gate?: (sessions: string[]) => Promise<void> } = {};
  const proxy = new Proxy(kv, {
    get(target, prop) {
      if (prop !== "atomic") {
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      }
      return () => {
        const op = target.atomic();
        const sessions = new Set<string>();
        return new Proxy(op, {
          get(opTarget, opProp) {
            const value = Reflect.get(opTarget, opProp, opTarget);
            if (opProp === "set") {
              return (key: Deno.KvKey, ...rest: unknown[]) => {
                if (key[0] === "session" && key[2] === "event") sessions.add(String(key[1]));
                (value as (...a: unknown[]) => unknown).call(opTarget, key, ...rest);
                return opProxy;
              };
            }
            if (opProp === "commit") {
              return async () => {
                const written = [...sessions].sort();
                if (written.length > 0) await control.gate?.(written);
                const result = await opTarget.commit();
                if (written.length > 0) log.push({ sessions: written, ok: result.ok });
                return result;
              };
            }
            if (typeof value !== "function") return value;
            return (...args: unknown[]) => {
              (value as (...a: unknown[]) => unknown).apply(opTarget, args);
              return opProxy;
            };
          },
        });
        // deno-lint-ignore no-var
        var opProxy: Deno.AtomicOperation;
      };
    },
  });
  return { kv: proxy, control };
}

async function setup() {
  const raw = await Deno.openKv(":memory:");
  const log: CommitLog = [];
  /** Every event handed to the after-commit step (pushed to viewers), in order. */
  const published: Envelope[] = [];
  const { kv, control } = observedKv(raw, log);
  const ctx: LifecycleContext = {
    kv,
    config: testConfig({}),
    credentials: new Credentials("batcher-test-secret-0123456789", ["test-key"]),
    instanceId: "ins_test",
    queues: false,
    now: Date.now,
    committed: (effects) => published.push(...effects.stored.map((e) => e.envelope)),
  };
  const urls = {
    ingestUrl: (eid: string) => `ws://test/ingest/${eid}`,
    streamUrl: "ws://test/stream",
  };
  /** A session with one running execution and its current connection. */
  const running = async (sid: string) => {
    assert.ok((await createSession(ctx, { sessionId: sid })).ok);
    const created = await createExecution(ctx, sid, {}, urls);
    assert.ok(created.ok);
    const { executionId, ingestToken } = created.value.body;
    const admit = async (connectionId: string) => {
      const admission = await admitConnection(
        ctx,
        { sessionId: sid, executionId },
        ingestToken,
        connectionId,
        undefined,
      );
      assert.ok(admission.ok);
    };
    await admit(`con_${sid}_1`);
    return { sid, executionId, connectionId: `con_${sid}_1`, admit };
  };
  return { raw, ctx, log, published, control, running };
}

const frames = (eid: string, from: number, count: number): PreparedFrame[] =>
  Array.from({ length: count }, (_, i) => ({
    seq: from + i,
    event: {
      executionId: eid,
      streamEventType: "output",
      timestamp: new Date().toISOString(),
      data: { n: from + i },
    },
  }));

const work = (
  run: { sid: string; executionId: string; connectionId: string },
  list: PreparedFrame[],
): FrameWork => ({
  sessionId: run.sid,
  executionId: run.executionId,
  connectionId: run.connectionId,
  frames: list,
});

/**
 * Holds the next commit that stores events between its reads and its commit: `held` resolves
 * once it waits there, `release` lets it go on.
 */
function holdNextCommit(control: { gate?: (sessions: string[]) => Promise<void> }) {
  const release = Promise.withResolvers<void>();
  const held = Promise.withResolvers<void>();
  control.gate = async () => {
    control.gate = undefined;
    held.resolve();
    await release.promise;
  };
  return { held: held.promise, release: () => release.resolve() };
}

const outputs = async (kv: Deno.Kv, sid: string) =>
  (await readEvents(kv, sid, { after: 0, limit: 100 }))
    .filter((e) => e.envelope.streamEventType === "output")
    .map((e) => (e.envelope.data as { n: number }).n);

Deno.test("frames of different executions that arrive together share one commit", async () => {
  const { raw, ctx, log, control, running } = await setup();
  try {
    const [a, b, c] = [await running("a"), await running("b"), await running("c")];
    const batcher = new FrameBatcher(ctx, { maxInFlight: 1, minIntervalMs: 0 });
    // Hold the first commit (c's) so that a's and b's frames queue up behind it.
    const { held, release } = holdNextCommit(control);
    const pc = batcher.submit(work(c, frames(c.executionId, 1, 1)));
    await held;
    const pa = batcher.submit(work(a, frames(a.executionId, 1, 2)));
    const pb = batcher.submit(work(b, frames(b.executionId, 1, 3)));
    release();
    const [ra, rb, rc] = await Promise.all([pa, pb, pc]);
    assert.ok(ra.ok && rb.ok && rc.ok);
    assert.equal(ra.value.lastSeq, 2);
    assert.equal(rb.value.lastSeq, 3);
    assert.deepEqual(log.slice(-2), [
      { sessions: ["c"], ok: true },
      { sessions: ["a", "b"], ok: true },
    ]);
    assert.deepEqual(await outputs(raw, "a"), [1, 2]);
    assert.deepEqual(await outputs(raw, "b"), [1, 2, 3]);
  } finally {
    raw.close();
  }
});

Deno.test("a replaced execution in a shared commit: the other's frames are stored once, its own are refused", async () => {
  const { raw, ctx, log, published, control, running } = await setup();
  try {
    const [a, b, c] = [await running("a"), await running("b"), await running("c")];
    const batcher = new FrameBatcher(ctx, { maxInFlight: 1, minIntervalMs: 0 });
    const release = Promise.withResolvers<void>();
    const held = Promise.withResolvers<void>();
    control.gate = async () => {
      held.resolve();
      await release.promise;
      // The shared commit of a and b: b's wrapper reconnects between its reads and its commit.
      control.gate = async (sessions) => {
        if (sessions.join() !== "a,b") return;
        control.gate = undefined;
        await b.admit("con_b_2");
      };
    };
    const pc = batcher.submit(work(c, frames(c.executionId, 1, 1)));
    await held.promise;
    const pa = batcher.submit(work(a, frames(a.executionId, 1, 2)));
    const pb = batcher.submit(work(b, frames(b.executionId, 1, 2)));
    release.resolve();
    const [ra, rb, rc] = await Promise.all([pa, pb, pc]);
    assert.ok(rc.ok);
    assert.ok(ra.ok, "a's frames are stored (and so acknowledged)");
    assert.equal(ra.value.lastSeq, 2);
    assert.deepEqual(
      rb,
      { ok: false, refusal: { code: "notCurrent" } },
      "b's frames are refused: nothing to acknowledge",
    );
    // The shared commit failed b's check; a then committed on its own, once.
    assert.deepEqual(log.slice(-2), [
      { sessions: ["a", "b"], ok: false },
      { sessions: ["a"], ok: true },
    ]);
    assert.deepEqual(await outputs(raw, "a"), [1, 2]);
    assert.deepEqual(await outputs(raw, "b"), []);
    const pushed = published.filter((e) => e.streamEventType === "output");
    assert.deepEqual(
      pushed.map((e) => [e.sessionId, (e.data as { n: number }).n]),
      [["c", 1], ["a", 1], ["a", 2]],
      "viewers get a's frames once and none of b's",
    );
    const execB = await transact(raw, (tx) => records.execution(b.executionId).get(tx));
    assert.equal(execB?.lastSeq, 0, "nothing of b's advanced lastSeq");
  } finally {
    raw.close();
  }
});

Deno.test("a liveness refresh rides a frame commit and takes its own only after its delay", async () => {
  const { raw, ctx, log, running } = await setup();
  try {
    const [a, b] = [await running("a"), await running("b")];
    const batcher = new FrameBatcher(ctx, { minIntervalMs: 0, touchDelayMs: 50 });
    const before = await transact(raw, (tx) => records.execution(b.executionId).get(tx));
    ctx.now = () => Date.now() + 60_000; // every debounce has passed
    const commitsBefore = log.length;
    batcher.touch({ ...work(b, []) });
    const stored = await batcher.submit(work(a, frames(a.executionId, 1, 1)));
    assert.ok(stored.ok);
    const after = await transact(raw, (tx) => records.execution(b.executionId).get(tx));
    assert.ok(after!.lastHeartbeatAt! > before!.lastHeartbeatAt!, "b's liveness rode a's commit");
    assert.equal(log.length, commitsBefore + 1, "one commit for both");
    batcher.touch({ ...work(a, []) });
    ctx.now = () => Date.now() + 120_000;
    await new Promise((r) => setTimeout(r, 120));
    const alone = await transact(raw, (tx) => records.execution(a.executionId).get(tx));
    assert.ok(alone!.lastHeartbeatAt! >= Date.now() + 60_000, "a's refresh committed on its own");
  } finally {
    raw.close();
  }
});

Deno.test("a session's liveness refresh waits for its commit in flight instead of failing its checks", async () => {
  const { raw, ctx, log, control, running } = await setup();
  try {
    const a = await running("a");
    const batcher = new FrameBatcher(ctx, { minIntervalMs: 0, touchDelayMs: 0 });
    const known = new KnownEntries();
    const exec = () => transact(raw, (tx) => records.execution(a.executionId).get(tx));
    // Hold a's frame commit between its reads and its commit.
    const { held, release } = holdNextCommit(control);
    const commitsBefore = log.length;
    const first = batcher.submit({ ...work(a, frames(a.executionId, 1, 2)), known });
    await held;
    ctx.now = () => Date.now() + 60_000; // now the liveness debounce has passed
    const before = await exec();
    batcher.touch({ ...work(a, []), known });
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(await exec(), before, "the refresh did not commit beside the held commit");
    release();
    assert.ok((await first).ok);
    assert.ok((await batcher.submit({ ...work(a, frames(a.executionId, 3, 1)), known })).ok);
    assert.deepEqual(await outputs(raw, "a"), [1, 2, 3]);
    assert.ok(log.slice(commitsBefore).every((c) => c.ok), "no commit failed its checks");
    await new Promise((r) => setTimeout(r, 30));
    assert.ok((await exec())!.lastHeartbeatAt! >= Date.now() + 50_000, "then it committed");
  } finally {
    raw.close();
  }
});

Deno.test("a frame commit without remembered records reads its three records in one KV call", async () => {
  const { raw, ctx, running } = await setup();
  try {
    const a = await running("a");
    let calls = 0;
    const inner = ctx.kv;
    ctx.kv = new Proxy(inner, {
      get(target, prop) {
        if (prop === "getMany" || prop === "get") calls++;
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const batcher = new FrameBatcher(ctx, { minIntervalMs: 0 });
    assert.ok((await batcher.submit(work(a, frames(a.executionId, 1, 2)))).ok);
    assert.equal(calls, 1);
    assert.deepEqual(await outputs(raw, "a"), [1, 2]);
  } finally {
    raw.close();
  }
});
