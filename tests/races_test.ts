/**
 * The seed's races over real sockets, on one instance and across two instances that each
 * have their own KV handle on one file (standing in for two Deno Deploy isolates): however
 * the enders interleave, an execution ends exactly once, with exactly one terminal
 * `execution_status` event, and ending an old execution never touches a newer one's active
 * slot, interrupt flag or grace record (PROTOCOL.md 3).
 */
import assert from "node:assert/strict";
import { graceRecord, interruptFlag } from "./helpers/deadline_env.ts";
import {
  createRun,
  type Envelope,
  eventually,
  getExecution,
  IngestClient,
  type Run,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { type StartOptions, startServer, tempKvPath, type TestServer } from "./helpers/server.ts";

const TERMINAL = ["completed", "failed", "interrupted"];

/** Runs `fn` against `count` instances sharing one KV file (or one instance on `:memory:`). */
function raceTest(
  name: string,
  count: 1 | 2,
  fn: (servers: TestServer[]) => Promise<void>,
  options: StartOptions = {},
) {
  Deno.test({
    name: `${name} (${count === 1 ? "one instance" : "two instances, one KV file"})`,
    async fn() {
      const file = count === 2 ? await tempKvPath() : undefined;
      const servers: TestServer[] = [];
      try {
        for (let i = 0; i < count; i++) {
          servers.push(await startServer({ ...options, kvPath: file?.path }));
        }
        await fn(servers);
      } finally {
        await Promise.all(servers.map((s) => s.close()));
        await file?.cleanup();
      }
    },
  });
}

const path = (run: Run, action: string) =>
  `/v1/sessions/${run.sessionId}/executions/${run.executionId}/${action}`;

/** Terminal `execution_status` events of one execution. */
const terminalEvents = (events: Envelope[], eid: string) =>
  events.filter((e) =>
    e.executionId === eid && e.streamEventType === "execution_status" &&
    TERMINAL.includes((e.data as { status: string }).status)
  );

/**
 * Fires `count` fail and interrupt calls at once, spread over the instances, and returns
 * how many fail calls reported `failed: true`.
 */
async function storm(servers: TestServer[], run: Run, count: number): Promise<number> {
  const calls = Array.from({ length: count }, async (_, i) => {
    const server = servers[i % servers.length];
    const fail = i % 2 === 0;
    const res = await server.call(path(run, fail ? "fail" : "interrupt"), {
      method: "POST",
      json: fail ? { error: `fail ${i}` } : { reason: `interrupt ${i}` },
    });
    assert.equal(res.status, fail ? 200 : 202, JSON.stringify(res));
    return fail && (res.body as { failed: boolean }).failed;
  });
  return (await Promise.all(calls)).filter(Boolean).length;
}

/** Asserts the execution ended once and the next one was promoted once. */
async function assertEndedOnce(server: TestServer, run: Run, next: Run, failedTrue: number) {
  const exec = await getExecution(server, run);
  assert.ok(TERMINAL.includes(exec.status as string), String(exec.status));
  const events = await storedEvents(server, run.sessionId);
  const terminal = terminalEvents(events, run.executionId);
  assert.equal(terminal.length, 1, JSON.stringify(terminal));
  assert.equal((terminal[0].data as { status: string }).status, exec.status);
  assert.equal(terminal[0].timestamp, exec.completedAt);
  // Exactly one fail call won when (and only when) the fail route ended it.
  assert.equal(failedTrue, exec.status === "failed" ? 1 : 0);
  const promotions = events.filter((e) =>
    e.executionId === next.executionId && e.streamEventType === "execution_status" &&
    (e.data as { previousStatus: string | null }).previousStatus === "pending"
  );
  assert.equal(promotions.length, 1, JSON.stringify(promotions));
  assert.equal(promotions[0].eventId, terminal[0].eventId + 1);
  const session = await server.call("/v1/sessions/" + run.sessionId);
  assert.equal(session.body.activeExecutionId, next.executionId);
  assert.deepEqual(session.body.queuedExecutionIds, []);
  // eventIds are 1..n without gaps or repeats.
  assert.deepEqual(events.map((e) => e.eventId), events.map((_, i) => i + 1));
}

for (const count of [1, 2] as const) {
  raceTest(
    "50 concurrent complete/fail/interrupt calls on a running execution end it once",
    count,
    async (servers) => {
      const [first, last] = [servers[0], servers.at(-1)!];
      const run = await createRun(first, "race");
      const next = await createRun(last, "race");
      // The wrapper is held by the last instance; the routes are spread over all of them.
      const wrapper = await IngestClient.connect(
        run.ingestUrl.replace(first.wsUrl, last.wsUrl),
        { token: run.ingestToken },
      );
      const complete = (async () => {
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        wrapper.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
      })();
      const failedTrue = await storm(servers, run, 49);
      await complete;
      assert.equal((await wrapper.closed).code, 4000);
      // The forced-interrupt deadline (1 ms) races too; wait until everything settled.
      await new Promise((r) => setTimeout(r, 150));
      for (const server of servers) await assertEndedOnce(server, run, next, failedTrue);
    },
    { config: { interruptTimeoutMs: 1 } },
  );

  raceTest(
    "50 concurrent fail/interrupt calls on a pending execution end it once",
    count,
    async (servers) => {
      const run = await createRun(servers[0], "pending");
      const next = await createRun(servers[0], "pending");
      const failedTrue = await storm(servers, run, 50);
      for (const server of servers) await assertEndedOnce(server, run, next, failedTrue);
    },
  );

  raceTest(
    "ending old execution A leaves B's active slot, interrupt flag and grace record alone",
    count,
    async (servers) => {
      const [first, last] = [servers[0], servers.at(-1)!];
      const a = await createRun(first, "own");
      const b = await createRun(first, "own");
      const c = await createRun(first, "own");
      // A runs on the first instance and completes; B is promoted.
      const wrapperA = await IngestClient.connect(a.ingestUrl, { token: a.ingestToken });
      wrapperA.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
      assert.equal((await wrapperA.closed).code, 4000);
      // B runs on the last instance, gets the interrupt flag, and then loses its wrapper.
      const wrapperB = await IngestClient.connect(
        b.ingestUrl.replace(first.wsUrl, last.wsUrl),
        { token: b.ingestToken },
      );
      const interrupted = await first.call(path(b, "interrupt"), { method: "POST", json: {} });
      assert.equal(interrupted.body.status, "running");
      await wrapperB.next((m) => m.type === "kill");
      await wrapperB.close(3000, "wrapper gone");
      await eventually(async () => (await graceRecord(first, "own")) !== null, "B's grace");
      const before = {
        grace: await graceRecord(first, "own"),
        flag: await interruptFlag(first, "own"),
        session: (await first.call("/v1/sessions/own")).body,
      };
      assert.equal(before.grace?.executionId, b.executionId);
      assert.equal(before.flag?.executionId, b.executionId);
      assert.equal(before.session.activeExecutionId, b.executionId);
      const eventsBefore = await storedEvents(first, "own");
      // Late enders of A, from every instance at once.
      const late = await Promise.all(servers.flatMap((server) => [
        server.call(path(a, "fail"), { method: "POST", json: { error: "late" } }),
        server.call(path(a, "interrupt"), { method: "POST", json: { reason: "late" } }),
      ]));
      for (const res of late) {
        assert.ok(
          JSON.stringify(res.body) === '{"failed":false}' ||
            (res.body as { status?: string }).status === "completed",
          JSON.stringify(res),
        );
      }
      for (const server of servers) {
        assert.deepEqual(await graceRecord(server, "own"), before.grace);
        assert.deepEqual(await interruptFlag(server, "own"), before.flag);
        assert.deepEqual((await server.call("/v1/sessions/own")).body, before.session);
        assert.deepEqual(await storedEvents(server, "own"), eventsBefore);
        assert.equal((await getExecution(server, b)).health, "disconnected");
      }
      // Ending queued C does not touch B's records either.
      const failedC = await last.call(path(c, "fail"), { method: "POST", json: { error: "x" } });
      assert.deepEqual(failedC.body, { failed: true });
      assert.deepEqual(await graceRecord(first, "own"), before.grace);
      assert.deepEqual(await interruptFlag(first, "own"), before.flag);
      assert.equal((await first.call("/v1/sessions/own")).body.activeExecutionId, b.executionId);
    },
    // Long enough that B's grace and interrupt deadlines cannot fire during the test.
    { config: { disconnectGraceMs: 60_000, interruptTimeoutMs: 60_000 } },
  );

  raceTest(
    "concurrent idempotent creations on every instance create one execution",
    count,
    async (servers) => {
      const created = await servers[0].call("/v1/sessions", {
        method: "POST",
        json: { sessionId: "idem" },
      });
      assert.equal(created.status, 201);
      const answers = await Promise.all(
        Array.from(
          { length: 10 },
          (_, i) =>
            servers[i % servers.length].call("/v1/sessions/idem/executions", {
              method: "POST",
              json: { input: "once" },
              headers: { "idempotency-key": "only-one" },
            }),
        ),
      );
      for (const answer of answers) {
        assert.equal(answer.status, 201);
        // URLs name the instance that answered; everything else is the first answer.
        const { ingestUrl: _i, streamUrl: _s, ...rest } = answer.body;
        const { ingestUrl: _fi, streamUrl: _fs, ...first } = answers[0].body;
        assert.deepEqual(rest, first);
      }
      const list = await servers[0].call<{ executions: unknown[] }>(
        "/v1/sessions/idem/executions",
      );
      assert.equal(list.body.executions.length, 1);
    },
  );
}
