/**
 * Completion callbacks (PROTOCOL.md 4, `callbackUrl`): a signed POST when an execution ends,
 * retried with durable backoff on network errors, 429 and 5xx, not on other 4xx. A real
 * local HTTP server receives them; the backoff base is shortened through service options.
 */
import { MetricName } from "../src/metrics.ts";
import { ErrorCode } from "../src/protocol.ts";
import assert from "node:assert/strict";
import { delay } from "../src/async.ts";
import { wakeupVariants } from "./helpers/deadline_env.ts";
import {
  createRun,
  eventually,
  getExecution,
  IngestClient,
  serverTest,
} from "./helpers/ingest_client.ts";
import { type StartOptions, startServer, tempKvPath, type TestServer } from "./helpers/server.ts";
import { listTimers } from "../src/store/mod.ts";
import { expectedSignature } from "./helpers/signature.ts";

const SECRET = "callback-signing-secret-for-tests";
const BACKOFF_MS = 50;

/** One POST the receiver got. */
interface Received {
  at: number;
  body: string;
  signature: string | null;
  contentType: string | null;
}

/** A local HTTP server answering callbacks with the given statuses in turn (then 200). */
function startReceiver(statuses: number[] = []) {
  const received: Received[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    received.push({
      at: Date.now(),
      body: await req.text(),
      signature: req.headers.get("x-tether-signature"),
      contentType: req.headers.get("content-type"),
    });
    return new Response(null, { status: statuses.shift() ?? 200 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    received,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Callback leases short enough for a test. */
const LEASED: StartOptions = {
  config: { ticketSecret: SECRET, callbackPrivate: true },
  deadlines: { callbackLeaseMs: 300, callbackTimeoutMs: 30_000 },
};

const options = (extra: StartOptions["config"] = {}): StartOptions => ({
  config: { ticketSecret: SECRET, callbackPrivate: true, ...extra },
  deadlines: { callbackBackoffMs: BACKOFF_MS },
});

for (const { label, config } of wakeupVariants()) {
  serverTest(`[${label}] a completed execution's callback is one signed POST`, async (server) => {
    await using receiver = startReceiver();
    const run = await createRun(server, "s1", { callbackUrl: receiver.url });
    const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    wrapper.send({ streamEventType: "complete", seq: 1, data: { exitCode: 0 } });
    assert.equal((await wrapper.closed).code, 4000);
    await eventually(() => receiver.received.length === 1, "callback");
    const [hook] = receiver.received;
    const exec = await getExecution(server, run);
    assert.deepEqual(JSON.parse(hook.body), {
      sessionId: "s1",
      executionId: run.executionId,
      status: "completed",
      completedAt: exec.completedAt,
    });
    assert.equal(hook.signature, await expectedSignature(SECRET, hook.body));
    assert.equal(hook.contentType, "application/json");
    await delay(BACKOFF_MS * 4);
    assert.equal(receiver.received.length, 1);
  }, options(config));
}

serverTest("429 and 5xx are retried with doubling backoff until delivered", async (server) => {
  await using receiver = startReceiver([503, 429]);
  const run = await createRun(server, "s1", { callbackUrl: receiver.url });
  await server.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
    method: "POST",
    json: { error: "boom" },
  });
  await eventually(() => receiver.received.length === 3, "three tries");
  const [a, b, c] = receiver.received;
  assert.deepEqual(JSON.parse(a.body), {
    sessionId: "s1",
    executionId: run.executionId,
    status: "failed",
    error: "boom",
    completedAt: (await getExecution(server, run)).completedAt,
  });
  assert.equal(b.body, a.body);
  assert.equal(c.body, a.body);
  assert.equal(c.signature, await expectedSignature(SECRET, c.body));
  assert.ok(b.at - a.at >= BACKOFF_MS, `first retry after ${b.at - a.at} ms`);
  assert.ok(c.at - b.at >= 2 * BACKOFF_MS, `second retry after ${c.at - b.at} ms`);
  await delay(BACKOFF_MS * 8);
  assert.equal(receiver.received.length, 3);
}, options());

serverTest("another 4xx is not retried", async (server) => {
  await using receiver = startReceiver([400]);
  const run = await createRun(server, "s1", { callbackUrl: receiver.url });
  await server.call(`/v1/sessions/s1/executions/${run.executionId}/interrupt`, {
    method: "POST",
    json: { reason: "never mind" },
  });
  await eventually(() => receiver.received.length === 1, "callback");
  assert.deepEqual(JSON.parse(receiver.received[0].body).error, "never mind");
  assert.equal(JSON.parse(receiver.received[0].body).status, "interrupted");
  await delay(BACKOFF_MS * 8);
  assert.equal(receiver.received.length, 1);
}, options());

serverTest("a callback that keeps failing is tried 5 times, then given up", async (server) => {
  await using receiver = startReceiver([500, 500, 500, 500, 500, 500, 500]);
  const run = await createRun(server, "s1", { callbackUrl: receiver.url });
  await server.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
    method: "POST",
    json: { error: "boom" },
  });
  await eventually(() => receiver.received.length === 5, "five tries");
  await delay(BACKOFF_MS * 20); // the next would come after 16 × base
  assert.equal(receiver.received.length, 5);
  assert.equal(
    server.service.rt.metrics.get(MetricName.deadlinesFired, {
      kind: "callback",
      outcome: "gave-up",
    }),
    1,
  );
}, options());

serverTest("network errors are retried", async (server) => {
  // A TCP listener that hangs up on every connection: fetch fails with a network error.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      accepted++;
      conn.close();
    }
  })().catch(() => {});
  try {
    const run = await createRun(server, "s1", {
      callbackUrl: `http://127.0.0.1:${listener.addr.port}/hook`,
    });
    await server.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
      method: "POST",
      json: { error: "boom" },
    });
    await eventually(() => accepted >= 3, "three tries");
  } finally {
    listener.close();
    await accepting;
  }
}, options());

serverTest(
  "deleting a session sends the callback even though its data is purged",
  async (server) => {
    await using receiver = startReceiver([503]);
    const run = await createRun(server, "s1", { callbackUrl: receiver.url });
    const res = await server.api("/v1/sessions/s1", { method: "DELETE" });
    assert.equal(res.status, 204);
    await eventually(() => receiver.received.length === 2, "callback and its retry");
    for (const hook of receiver.received) {
      const body = JSON.parse(hook.body);
      assert.equal(body.executionId, run.executionId);
      assert.equal(body.status, "failed");
      assert.equal(body.error, "Session deleted");
    }
  },
  options(),
);

Deno.test({
  name: "a callback stuck in flight stays durable and is sent again when its lease expires",
  async fn() {
    const kv = await tempKvPath();
    const first = await startServer({ ...LEASED, kvPath: kv.path });
    const hung = Promise.withResolvers<void>();
    const bodies: string[] = [];
    const receiver = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        bodies.push(await req.text());
        if (bodies.length === 1) await hung.promise; // the first sender never hears back in time
        return new Response(null, { status: 200 });
      },
    );
    const second = await startServer({ ...LEASED, kvPath: kv.path });
    try {
      const run = await createRun(first, "s1", {
        callbackUrl: `http://127.0.0.1:${receiver.addr.port}/hook`,
      });
      const failed = await first.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
        method: "POST",
        json: { error: "boom" },
      });
      assert.deepEqual(failed.body, { failed: true });
      await eventually(() => bodies.length === 1, "the first POST");
      // While a sender waits (or has crashed), the claim left a lease: the callback is durable.
      const [lease] = (await listTimers(first.kv)).filter((t) => t.kind === "callback");
      assert.ok(lease, "a leased callback deadline");
      await eventually(() => bodies.length === 2, "the POST again, once the lease expired");
      assert.equal(bodies[1], bodies[0]);
      await eventually(
        async () => (await listTimers(first.kv)).every((t) => t.kind !== "callback"),
        "the delivered callback leaves no deadline",
      );
      hung.resolve(); // the stuck sender finds its lease taken over and records nothing
      await delay(100);
      assert.equal(bodies.length, 2);
      assert.deepEqual((await listTimers(first.kv)).filter((t) => t.kind === "callback"), []);
    } finally {
      hung.resolve();
      await second.close();
      await first.close();
      await receiver.shutdown();
      await kv.cleanup();
    }
  },
});

/** Callback URL rules (PROTOCOL.md 4): what creation refuses, and what a try never calls. */
const createWith = (server: TestServer, callbackUrl: string) =>
  server.call<{ error: string; message: string }>(`/v1/sessions/s1/executions`, {
    method: "POST",
    json: { callbackUrl },
  });

serverTest(
  "a callbackUrl at a loopback, private or link-local host is refused (400), nothing created",
  async (server) => {
    await server.call("/v1/sessions", { method: "POST", json: { sessionId: "s1" } });
    for (
      const url of [
        "http://127.0.0.1:9/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://localhost:8080/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
      ]
    ) {
      const res = await createWith(server, url);
      assert.equal(res.status, 400, url);
      assert.equal(res.body.error, ErrorCode.invalidRequest, url);
    }
    const list = await server.call<{ executions: unknown[] }>("/v1/sessions/s1/executions");
    assert.deepEqual(list.body.executions, []);
  },
  { config: { ticketSecret: SECRET } },
);

serverTest(
  "a callbackUrl with credentials is refused (400), even with TETHER_CALLBACK_PRIVATE=allow",
  async (server) => {
    await server.call("/v1/sessions", { method: "POST", json: { sessionId: "s1" } });
    for (const url of ["https://user:secret@hooks.example.com/", "http://user@127.0.0.1:9/"]) {
      const res = await createWith(server, url);
      assert.equal(res.status, 400, url);
      assert.equal(res.body.error, ErrorCode.invalidRequest, url);
      assert.match(res.body.message, /credentials/);
    }
  },
  options(),
);

serverTest("TETHER_CALLBACK_PRIVATE=allow accepts a loopback callbackUrl", async (server) => {
  await server.call("/v1/sessions", { method: "POST", json: { sessionId: "s1" } });
  assert.equal((await createWith(server, "http://127.0.0.1:9/hook")).status, 201);
}, options());

serverTest(
  "a redirect is not followed: the 3xx is a failed try, the target never called",
  async (server) => {
    await using target = startReceiver();
    const received: string[] = [];
    const redirector = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
      received.push(req.method);
      return new Response(null, { status: 307, headers: { location: target.url } });
    });
    try {
      const url = `http://127.0.0.1:${redirector.addr.port}/hook`;
      const run = await createRun(server, "s1", { callbackUrl: url });
      await server.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
        method: "POST",
        json: { error: "boom" },
      });
      const fired = (outcome: string) =>
        server.service.rt.metrics.get(MetricName.deadlinesFired, { kind: "callback", outcome });
      await eventually(() => fired("gave-up") === 1, "the tries given up");
      assert.deepEqual(received, ["POST", "POST"]);
      assert.equal(fired("retry"), 1);
      assert.equal(target.received.length, 0);
    } finally {
      await redirector.shutdown();
    }
  },
  { ...options(), deadlines: { callbackBackoffMs: BACKOFF_MS, callbackTries: 2 } },
);

serverTest(
  "a name that resolves to a private address when called is not called",
  async (server) => {
    await using receiver = startReceiver();
    const port = new URL(receiver.url).port;
    // The name passes creation; at call time it resolves to loopback (DNS is faked: outside).
    const run = await createRun(server, "s1", { callbackUrl: `http://hooks.tether.test:${port}/` });
    await server.call(`/v1/sessions/s1/executions/${run.executionId}/fail`, {
      method: "POST",
      json: { error: "boom" },
    });
    await eventually(
      () =>
        server.service.rt.metrics.get(MetricName.deadlinesFired, {
          kind: "callback",
          outcome: "gave-up",
        }) === 1,
      "the tries given up",
    );
    assert.equal(receiver.received.length, 0);
  },
  {
    config: { ticketSecret: SECRET },
    deadlines: {
      callbackBackoffMs: BACKOFF_MS,
      callbackTries: 2,
      resolveHost: () => Promise.resolve(["127.0.0.1"]),
    },
  },
);
