/**
 * Two service instances in one process, each with its own KV handle on one file (how the
 * tests stand in for two Deno Deploy isolates): events stored by one reach viewers on the
 * other exactly once and in order; a reconnect landing on the other instance closes the old
 * socket with 4001 without a grace; connection commands cross instances.
 */
import assert from "node:assert/strict";
import {
  createRun,
  eventIds,
  eventually,
  getExecution,
  IngestClient,
  pump,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { type ChildService, freePort, startChildService } from "./helpers/child_service.ts";
import { startServer, tempKvPath, type TestServer } from "./helpers/server.ts";
import { SseViewer, WsViewer } from "./helpers/viewer.ts";
import { keys } from "../src/store/keys.ts";
import { delay } from "../src/async.ts";

function twoInstanceTest(name: string, fn: (a: TestServer, b: TestServer) => Promise<void>) {
  Deno.test({
    name,
    async fn() {
      const kv = await tempKvPath();
      const a = await startServer({ kvPath: kv.path });
      const b = await startServer({ kvPath: kv.path });
      try {
        await fn(a, b);
      } finally {
        await a.close();
        await b.close();
        await kv.cleanup();
      }
    },
  });
}

/** The same URL on the other instance. */
const onInstance = (url: string, server: TestServer) => url.replace(/^ws:\/\/[^/]+/, server.wsUrl);

twoInstanceTest("viewers on instance 2 get every event of instance 1 once, in order", async (
  a,
  b,
) => {
  const run = await createRun(a, "two-view", { graceMs: 600_000 });
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  const early = [
    await WsViewer.open(b.wsUrl, "two-view"),
    await SseViewer.open(b.url, "two-view"),
  ];
  const total = 1000;
  const late: Promise<WsViewer | SseViewer>[] = [];
  await pump(wrapper, 1, total, {
    window: 100,
    onSent(n) {
      if (n === 300) late.push(WsViewer.open(b.wsUrl, "two-view", { after: "150" }));
      if (n === 600) late.push(SseViewer.open(b.url, "two-view", { after: "10" }));
    },
  });
  wrapper.send({ streamEventType: "complete", seq: total + 1, data: { exitCode: 0 } });
  assert.equal((await wrapper.closed).code, 4000);
  const stored = await storedEvents(b, "two-view");
  const last = stored.at(-1)!.eventId;
  assert.equal(last, total + 4);
  const viewers = [...early, ...await Promise.all(late)];
  const starts = [0, 0, 150, 10];
  for (const [i, viewer] of viewers.entries()) {
    await viewer.until((events) => events.at(-1)?.eventId === last, `viewer ${i}`);
    assert.deepEqual(viewer.events, stored.slice(starts[i]), `viewer ${i}`);
    await viewer.close();
  }
});

twoInstanceTest("a reconnect on instance 2 closes instance 1's socket with 4001, no grace", async (
  a,
  b,
) => {
  const run = await createRun(a, "two-move", { graceMs: 600_000 });
  const first = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken, dial: "w/1" });
  const viewerOnA = await WsViewer.open(a.wsUrl, "two-move");
  await pump(first, 1, 20);
  const second = await IngestClient.connect(onInstance(run.ingestUrl, b), {
    token: run.ingestToken,
    dial: "w/2",
  });
  assert.equal(second.messages[0].lastSeq, first.acked);
  assert.deepEqual(await first.closed, { code: 4001, reason: "replaced" });
  // The replaced socket left no grace behind.
  assert.equal((await a.kv.get(keys.grace("two-move"))).value, null);
  assert.equal((await getExecution(b, run)).health, "healthy");
  // Frames stored on instance 2 reach the viewer on instance 1.
  await pump(second, 21, 40);
  await viewerOnA.until((events) => events.length === 42);
  assert.deepEqual(eventIds(viewerOnA.events), Array.from({ length: 42 }, (_, i) => i + 1));

  // A kill asked on instance 1 reaches the socket held by instance 2.
  await a.call(`/v1/sessions/two-move/executions/${run.executionId}/interrupt`, {
    method: "POST",
    json: { reason: "from a" },
  });
  const kill = await second.next((m) => m.type === "kill");
  assert.equal(kill.reason, "from a");
  // A failure decided on instance 1 closes the socket on instance 2 with 4000.
  await a.call(`/v1/sessions/two-move/executions/${run.executionId}/fail`, {
    method: "POST",
    json: { error: "stop" },
  });
  assert.deepEqual(await second.closed, { code: 4000, reason: "execution failed" });
  await eventually(async () => (await getExecution(a, run)).status === "failed", "failed");
  await viewerOnA.close();
});

Deno.test({
  name: "a viewer in another process (no watch across processes) gets every event once, by polling",
  async fn() {
    const kv = await tempKvPath();
    const writer = await startChildService({ kvPath: kv.path, port: freePort() });
    const reader = await startServer({ kvPath: kv.path });
    try {
      await writer.call("/v1/sessions", { method: "POST", json: { sessionId: "cross" } });
      const run = await writer.call<{ ingestUrl: string; ingestToken: string }>(
        "/v1/sessions/cross/executions",
        { method: "POST", json: { graceMs: 600_000 } },
      );
      const viewer = await WsViewer.open(reader.wsUrl, "cross");
      const wrapper = await IngestClient.connect(run.body.ingestUrl, {
        token: run.body.ingestToken,
      });
      await pump(wrapper, 1, 200, { window: 50 });
      const stored = await storedEvents(reader, "cross");
      await viewer.until((events) => events.length === stored.length, "every event", 10_000);
      assert.deepEqual(eventIds(viewer.events), eventIds(stored));
      await wrapper.close();
      await viewer.close();
    } finally {
      await reader.close();
      await writer.kill("SIGTERM");
      await kv.cleanup();
    }
  },
});

/**
 * Instance 1 in this process (with `config`) and instance 2 in a child process, on one KV file:
 * watches do not cross processes on a file, so instance 2 learns of changes by polling.
 */
async function withChildInstance(
  config: Partial<TestServer["config"]>,
  fn: (a: TestServer, b: ChildService) => Promise<void>,
): Promise<void> {
  const kv = await tempKvPath();
  const a = await startServer({ kvPath: kv.path, config });
  const b = await startChildService({ kvPath: kv.path, port: freePort() });
  try {
    await fn(a, b);
  } finally {
    await b[Symbol.asyncDispose]();
    await a.close();
    await kv.cleanup();
  }
}

Deno.test("a viewer on another process gets the deletion's own events before it closes", async () => {
  // The purge waits, so the events the deletion stored are still there when instance 2 polls.
  await withChildInstance({ purgeDelayMs: 3000 }, async (a, b) => {
    const run = await createRun(a, "del-b", { graceMs: 600_000 });
    const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    await pump(wrapper, 1, 3, { window: 10 });
    const viewer = await WsViewer.open(b.wsUrl, "del-b");
    await viewer.until((events) => events.length >= 5, "the first events"); // status ×2, 3 frames
    assert.equal((await a.call("/v1/sessions/del-b", { method: "DELETE" })).status, 204);
    assert.equal((await viewer.closed).code, 1000);
    const head = await a.kv.get<{ lastEventId: number }>(keys.head("del-b"));
    const all = Array.from({ length: head.value!.lastEventId }, (_, i) => i + 1);
    assert.deepEqual(eventIds(viewer.events), all);
    assert.deepEqual(viewer.events.slice(-2).map((e) => e.streamEventType), [
      "error",
      "execution_status",
    ]);
  });
});

Deno.test("a viewer never follows a session created again under the same id", async () => {
  // Instance 2 notices the deletion only at its next poll; by then the session is purged and
  // created again, with events of its own under the same id.
  await withChildInstance({ purgeDelayMs: 0 }, async (a, b) => {
    await a.call("/v1/sessions", { method: "POST", json: { sessionId: "again" } });
    const viewer = await WsViewer.open(b.wsUrl, "again");
    assert.equal((await a.call("/v1/sessions/again", { method: "DELETE" })).status, 204);
    await eventually(
      async () =>
        (await a.call("/v1/sessions", { method: "POST", json: { sessionId: "again" } }))
          .status === 201,
      "created again",
    );
    await createRun(a, "again");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stillOpen = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the viewer follows the new session")), 10_000);
    });
    const closed = await Promise.race([viewer.closed, stillOpen]).finally(() =>
      clearTimeout(timer)
    );
    assert.equal(closed.code, 1000);
    assert.deepEqual(viewer.events, []);
  });
});

Deno.test("a second process started on the same KV file leaves the first one's runs alone", async () => {
  // A rolling restart: the new process starts while the old one still serves. It must not
  // take the old one's live connections for a crashed predecessor's and end their runs.
  const kv = await tempKvPath();
  const env = { TETHER_DISCONNECT_GRACE_MS: "1000" };
  const first = await startChildService({ kvPath: kv.path, port: freePort(), env });
  try {
    await first.call("/v1/sessions", { method: "POST", json: { sessionId: "rolling" } });
    const { body: run } = await first.call<
      { executionId: string; ingestUrl: string; ingestToken: string }
    >(
      "/v1/sessions/rolling/executions",
      { method: "POST", json: { graceMs: 1000 } },
    );
    const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    await pump(wrapper, 1, 5, { window: 10 });
    const second = await startChildService({ kvPath: kv.path, port: freePort(), env });
    try {
      assert.ok(second.logs.some((line) => String(line.msg).startsWith("another process")));
      await delay(2000); // more than the grace a takeover would have started
      await pump(wrapper, 6, 10, { window: 10 });
      assert.equal(wrapper.acked, 10);
      const { body } = await first.call(`/v1/sessions/rolling/executions/${run.executionId}`);
      assert.equal(body.status, "running");
    } finally {
      await second[Symbol.asyncDispose]();
    }
    await wrapper.close();
  } finally {
    await first[Symbol.asyncDispose]();
    await kv.cleanup();
  }
});
