/**
 * Bad input on every REST route (PROTOCOL.md 1, 4, 10): each gets the documented status and
 * error code, and nothing stored changes, in the session addressed or any other.
 */
import assert from "node:assert/strict";
import { assertError, assertInvalid, snapshot } from "./helpers/assertions.ts";
import { createRun, IngestClient, type Run, serverTest } from "./helpers/ingest_client.ts";
import { API_KEY, rawRequest, type TestServer } from "./helpers/server.ts";

/** A raw request: `body` is sent as given (text or a stream), with a JSON content type. */
async function raw(
  server: TestServer,
  method: string,
  path: string,
  body?: BodyInit,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown }> {
  const res = await server.api(path, {
    method,
    body,
    headers: { "content-type": "application/json", ...headers },
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the failure message
  }
  return { status: res.status, body: parsed };
}

/** A session with a running execution, a queued one and a few events; and a bystander. */
async function populated(server: TestServer): Promise<{ a: Run; b: Run; wrapper: IngestClient }> {
  const a = await createRun(server, "s", { input: { task: 1 } });
  const b = await createRun(server, "s", { input: "second" });
  const wrapper = await IngestClient.connect(a.ingestUrl, { token: a.ingestToken });
  wrapper.send({ streamEventType: "output", seq: 1, data: { text: "hello" } });
  await wrapper.ackOf(1);
  await createRun(server, "bystander");
  return { a, b, wrapper };
}

/** Runs `attack` and proves that neither session changed. */
async function unchanged(server: TestServer, attack: () => Promise<void>): Promise<void> {
  const before = [await snapshot(server, "s"), await snapshot(server, "bystander")];
  await attack();
  const after = [await snapshot(server, "s"), await snapshot(server, "bystander")];
  assert.deepEqual(after, before);
  const health = await server.call("/healthz");
  assert.deepEqual(health, { status: 200, body: { status: "ok" } });
}

const NOT_JSON = ["{", "not json", "{'a': 1}", '{"a":1', "\u0000"];
const NOT_OBJECTS = ["[]", "null", "5", '"text"', "true"];
const OVER_64_KIB = JSON.stringify({ input: "x".repeat(64 * 1024) });

/** A body of `bytes` bytes sent without a Content-Length (chunked). */
function stream(text: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.slice(i, i + 8192));
      controller.close();
    },
  });
}

/** The garbage every JSON body route must refuse with 400 (or 413 when too large). */
async function refuseGarbage(server: TestServer, path: string): Promise<void> {
  for (const body of [...NOT_JSON, ...NOT_OBJECTS]) {
    assertInvalid(await raw(server, "POST", path, body));
  }
  assertInvalid(await raw(server, "POST", path, JSON.stringify({ unknownField: 1 })));
  assertError(await raw(server, "POST", path, OVER_64_KIB), 413, "PAYLOAD_TOO_LARGE");
  assertError(await raw(server, "POST", path, stream(OVER_64_KIB)), 413, "PAYLOAD_TOO_LARGE");
}

serverTest("POST /v1/sessions refuses bad bodies and creates nothing", async (server) => {
  await populated(server);
  await unchanged(server, async () => {
    await refuseGarbage(server, "/v1/sessions");
    const bad: unknown[] = [
      { sessionId: 5 },
      { sessionId: "" },
      { sessionId: "has space" },
      { sessionId: "-leading-dash" },
      { sessionId: "a/b" },
      { sessionId: "x".repeat(129) },
      { sessionId: "ok", metadata: "text" },
      { sessionId: "ok", metadata: [1, 2] },
      { sessionId: "ok", metadata: null },
      { sessionId: "ok", metadata: { big: "m".repeat(16 * 1024) } },
      { sessionId: "ok", extra: true },
    ];
    for (const body of bad) {
      assertInvalid(await raw(server, "POST", "/v1/sessions", JSON.stringify(body)));
    }
    assertError(await server.call("/v1/sessions/ok"), 404, "SESSION_NOT_FOUND");
  });
  // The limits are inclusive: 128 characters and 16 KiB of metadata are fine.
  const longest = "x".repeat(128);
  const metadata = { m: "m".repeat(16 * 1024 - 8) }; // {"m":"…"} is exactly 16 KiB
  assert.equal(JSON.stringify(metadata).length, 16 * 1024);
  const ok = await raw(
    server,
    "POST",
    "/v1/sessions",
    JSON.stringify({ sessionId: longest, metadata }),
  );
  assert.equal(ok.status, 201, JSON.stringify(ok).slice(0, 300));
});

serverTest(
  "POST …/executions refuses bad bodies and headers and creates nothing",
  async (server) => {
    await populated(server);
    await unchanged(server, async () => {
      const path = "/v1/sessions/s/executions";
      await refuseGarbage(server, path);
      const bad: unknown[] = [
        { input: "i".repeat(32 * 1024) },
        { ifIdle: "yes" },
        { ifIdle: 1 },
        { graceMs: 999 },
        { graceMs: 600_001 },
        { graceMs: 1500.5 },
        { graceMs: "2000" },
        { heartbeatTimeoutMs: 9999 },
        { heartbeatTimeoutMs: 3_600_001 },
        { callbackUrl: "ftp://example.com/x" },
        { callbackUrl: "not a url" },
        { callbackUrl: 5 },
        { callbackUrl: `https://example.com/${"x".repeat(2048 - 19)}` },
        { executionId: "exc_01JAAAAAAAAAAAAAAAAAAAAAAA" },
      ];
      for (const body of bad) assertInvalid(await raw(server, "POST", path, JSON.stringify(body)));
      for (const key of ["k".repeat(129), "tab\there"]) {
        assertInvalid(await raw(server, "POST", path, "{}", { "idempotency-key": key }));
      }
    });
    // Inclusive limits.
    const edge = await raw(
      server,
      "POST",
      "/v1/sessions/s/executions",
      JSON.stringify({
        graceMs: 1000,
        heartbeatTimeoutMs: 3_600_000,
        input: "i".repeat(32 * 1024 - 2),
      }),
      { "idempotency-key": "k".repeat(128) },
    );
    assert.equal(edge.status, 201, JSON.stringify(edge).slice(0, 300));
    // The longest callbackUrl still leaves room for the longest error when the run ends.
    const longUrl = `https://example.com/${"x".repeat(2048 - 20)}`;
    const body = JSON.stringify({ callbackUrl: longUrl });
    const created = await raw(server, "POST", "/v1/sessions/s/executions", body);
    assert.equal(created.status, 201);
    const { executionId } = created.body as { executionId: string };
    const error = JSON.stringify({ error: "😀".repeat(1100) });
    const path = `/v1/sessions/s/executions/${executionId}/fail`;
    const failed = await raw(server, "POST", path, error);
    assert.equal(failed.status, 200, JSON.stringify(failed).slice(0, 300));
  },
);

serverTest("interrupt, fail and tickets refuse bad bodies and change nothing", async (server) => {
  const { a } = await populated(server);
  const base = `/v1/sessions/s/executions/${a.executionId}`;
  await unchanged(server, async () => {
    for (const path of [`${base}/interrupt`, `${base}/fail`, "/v1/sessions/s/tickets"]) {
      await refuseGarbage(server, path);
    }
    for (const body of [{ reason: 5 }, { reason: null }, { reason: "x", force: true }]) {
      assertInvalid(await raw(server, "POST", `${base}/interrupt`, JSON.stringify(body)));
    }
    const badFails: unknown[] = [
      {},
      { error: 5 },
      { error: null },
      { error: "x", streamEventType: "execution_status" },
      { error: "x", streamEventType: "wrapper_disconnected" },
      { error: "x", streamEventType: "bad type!" },
      { error: "x", streamEventType: "" },
      { error: "x", streamEventType: "t".repeat(65) },
      { error: "x", streamEventType: 7 },
      { error: "x", fatal: false },
    ];
    for (const body of badFails) {
      assertInvalid(await raw(server, "POST", `${base}/fail`, JSON.stringify(body)));
    }
    for (const body of [{ ttlMs: "1000" }, { ttlMs: 999 }, { ttlMs: 86_400_001 }, { ttl: 1000 }]) {
      assertInvalid(await raw(server, "POST", "/v1/sessions/s/tickets", JSON.stringify(body)));
    }
  });
});

serverTest("a Host header that makes no URL is a 400 on every route, not a 500", async (
  server,
) => {
  await server.call("/v1/sessions", { method: "POST", json: { sessionId: "hosts" } });
  const before = await snapshot(server, "hosts");
  const port = Number(new URL(server.url).port);
  for (const host of ["a b", "a:b:c"]) {
    for (
      const [method, path] of [
        ["GET", "/v1/sessions/hosts"],
        ["POST", "/v1/sessions"],
        ["GET", "/metrics"],
        ["GET", "/healthz"],
      ]
    ) {
      const answer = await rawRequest(port, [
        `${method} ${path} HTTP/1.1`,
        `Host: ${host}`,
        `Authorization: Bearer ${API_KEY}`,
        "Content-Type: application/json",
      ], method === "POST" ? "{}" : "");
      assert.match(answer, /^HTTP\/1.1 400 /, `${host} ${method} ${path}`);
      assert.match(answer, /"error":"INVALID_REQUEST"/);
    }
  }
  assert.deepEqual(await snapshot(server, "hosts"), before);
});

serverTest("bad ids are 404 and change nothing", async (server) => {
  await populated(server);
  await unchanged(server, async () => {
    const sids = ["bad%20id", "-x", "x".repeat(129), "%00", "s%2Fother"];
    for (const sid of sids) {
      for (
        const [method, path] of [
          ["GET", `/v1/sessions/${sid}`],
          ["DELETE", `/v1/sessions/${sid}`],
          ["POST", `/v1/sessions/${sid}/executions`],
          ["GET", `/v1/sessions/${sid}/events`],
          ["POST", `/v1/sessions/${sid}/tickets`],
        ]
      ) {
        const res = await raw(server, method, path, method === "POST" ? "{}" : undefined);
        assert.equal(res.status, 404, `${method} ${path}: ${JSON.stringify(res)}`);
      }
    }
    for (
      const eid of [
        "exc_bad",
        "exc_01JAAAAAAAAAAAAAAAAAAAAAAA",
        "EXC_01JAAAAAAAAAAAAAAAAAAAAAAA",
        "%20",
      ]
    ) {
      const base = `/v1/sessions/s/executions/${eid}`;
      assertError(await raw(server, "GET", base), 404, "EXECUTION_NOT_FOUND");
      assertError(await raw(server, "POST", `${base}/interrupt`, "{}"), 404, "EXECUTION_NOT_FOUND");
      assertError(
        await raw(server, "POST", `${base}/fail`, '{"error":"x"}'),
        404,
        "EXECUTION_NOT_FOUND",
      );
    }
  });
});

serverTest("bad query parameters are 400 and change nothing", async (server) => {
  const { a } = await populated(server);
  await unchanged(server, async () => {
    for (const limit of ["0", "1001", "abc", "-1", "1.5", ""]) {
      assertInvalid(await raw(server, "GET", `/v1/sessions/s/executions?limit=${limit}`));
      assertInvalid(await raw(server, "GET", `/v1/sessions/s/events?limit=${limit}`));
    }
    for (const after of ["-1", "abc", "1.5", "1e3", ""]) {
      assertInvalid(await raw(server, "GET", `/v1/sessions/s/events?after=${after}`));
    }
    // Too long for a KV key too (it is never looked up).
    const huge = `exc_${"A".repeat(3000)}`;
    for (const after of ["junk", "exc_01JAAAAAAAAAAAAAAAAAAAAAAA", "", huge]) {
      assertInvalid(await raw(server, "GET", `/v1/sessions/s/executions?after=${after}`));
    }
  });
  // The limits are inclusive.
  for (const limit of ["1", "1000"]) {
    assert.equal(
      (await raw(server, "GET", `/v1/sessions/s/executions?limit=${limit}`)).status,
      200,
    );
    assert.equal((await raw(server, "GET", `/v1/sessions/s/events?limit=${limit}`)).status, 200);
  }
  const page = await raw(server, "GET", `/v1/sessions/s/executions?after=${a.executionId}`);
  assert.equal(page.status, 200);
});

serverTest("refused credentials change nothing", async (server) => {
  const { a } = await populated(server);
  const base = `/v1/sessions/s/executions/${a.executionId}`;
  await unchanged(server, async () => {
    for (const authorization of ["", "Bearer nope"]) {
      for (
        const [method, path, body] of [
          ["POST", "/v1/sessions", '{"sessionId":"intruder"}'],
          ["DELETE", "/v1/sessions/s", undefined],
          ["POST", "/v1/sessions/s/executions", "{}"],
          ["POST", `${base}/interrupt`, "{}"],
          ["POST", `${base}/fail`, '{"error":"x"}'],
          ["POST", "/v1/sessions/s/tickets", "{}"],
        ] as const
      ) {
        assertError(await raw(server, method, path, body, { authorization }), 401, "UNAUTHORIZED");
      }
    }
  });
});
