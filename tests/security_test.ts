/**
 * Security properties over real sockets (PROTOCOL.md 2 and 10): ingest tokens and tickets
 * grant exactly what they name and only while valid, secrets never leave the service in
 * logs, GET responses or events, the origin allow-list holds on HTTP and upgrades, and the
 * body, frame size and frame rate limits hold.
 */
import assert from "node:assert/strict";
import { createRun, IngestClient, storedEvents } from "./helpers/ingest_client.ts";
import { startServer, type TestServer } from "./helpers/server.ts";
import { WsViewer } from "./helpers/viewer.ts";

const ingestPath = (sid: string, eid: string) => `/v1/sessions/${sid}/executions/${eid}/ingest`;

/** Dials and resolves the close code of a socket the service closes after the upgrade. */
async function closeCodeOf(url: string, headers: Record<string, string> = {}): Promise<number> {
  const socket = new WebSocket(url, { headers });
  socket.onerror = () => {};
  const closed = await new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  return closed.code;
}

async function ticketFor(server: TestServer, sid: string, ttlMs?: number): Promise<string> {
  const res = await server.call<{ ticket: string }>(`/v1/sessions/${sid}/tickets`, {
    method: "POST",
    json: ttlMs === undefined ? {} : { ttlMs },
  });
  assert.equal(res.status, 201);
  return res.body.ticket;
}

Deno.test("security: an ingest token opens its own execution only", async () => {
  const server = await startServer();
  try {
    const a = await createRun(server, "sec-a");
    const b = await createRun(server, "sec-b");
    const a2 = await createRun(server, "sec-a"); // queued behind a, same session
    const url = (sid: string, eid: string) => server.wsUrl + ingestPath(sid, eid);
    const auth = (token: string) => ({ authorization: `Bearer ${token}` });
    // Another execution's path, in another session or the same one: 4403.
    assert.equal(await closeCodeOf(url(b.sessionId, b.executionId), auth(a.ingestToken)), 4403);
    assert.equal(await closeCodeOf(url(a.sessionId, a2.executionId), auth(a.ingestToken)), 4403);
    assert.equal(await closeCodeOf(url(b.sessionId, a.executionId), auth(a.ingestToken)), 4403);
    // Garbage, a forged MAC, a missing token: 4401.
    const forged = a.ingestToken.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
    for (const headers of [auth("garbage"), auth(forged), auth(`tok.${b.executionId}.x`), {}]) {
      assert.equal(await closeCodeOf(url(a.sessionId, a.executionId), headers), 4401);
    }
    // On HTTP routes a valid ingest token is a credential that grants nothing there: 403;
    // a forged one is no credential: 401.
    for (const path of [`/v1/sessions/${a.sessionId}`, `/v1/sessions/${a.sessionId}/events`]) {
      const status = async (token: string) => {
        const res = await fetch(server.url + path, { headers: auth(token) });
        await res.body?.cancel();
        return res.status;
      };
      assert.equal(await status(a.ingestToken), 403, path);
      assert.equal(await status(forged), 401, path);
    }
    // The right token works…
    const client = await IngestClient.connect(url(a.sessionId, a.executionId), {
      token: a.ingestToken,
    });
    await client.close();
    // …until its session is deleted.
    const deleted = await server.api(`/v1/sessions/${a.sessionId}`, { method: "DELETE" });
    assert.equal(deleted.status, 204);
    assert.equal(await closeCodeOf(url(a.sessionId, a.executionId), auth(a.ingestToken)), 4401);
  } finally {
    await server.close();
  }
});

Deno.test("security: a ticket reads its own session only, and only until it expires", async () => {
  const server = await startServer();
  try {
    await createRun(server, "tk-1");
    await createRun(server, "tk-2");
    const ticket = await ticketFor(server, "tk-1", 1000);
    const get = (path: string, init: RequestInit = {}) =>
      server.api(`${path}${path.includes("?") ? "&" : "?"}ticket=${ticket}`, {
        ...init,
        headers: { authorization: "" },
      }).then(async (res) => (await res.body?.cancel(), res.status));
    assert.equal(await get("/v1/sessions/tk-1"), 200);
    assert.equal(await get("/v1/sessions/tk-1/events"), 200);
    assert.equal(await get("/v1/sessions/tk-2"), 403);
    assert.equal(await get("/v1/sessions/tk-2/events"), 403);
    // Reading only: routes a ticket does not grant answer 403.
    assert.equal(await get("/v1/sessions/tk-1/tickets", { method: "POST" }), 403);
    assert.equal(await get("/v1/sessions/tk-1/executions", { method: "POST" }), 403);
    assert.equal(await get("/v1/sessions/tk-1", { method: "DELETE" }), 403);
    const stream = (sid: string) => `${server.wsUrl}/v1/sessions/${sid}/stream?ticket=${ticket}`;
    assert.equal(await closeCodeOf(stream("tk-2")), 4403);
    const viewer = await WsViewer.open(server.wsUrl, "tk-1", {}, { ticket });
    await viewer.until((events) => events.length >= 1, "the replay");
    await viewer.close();
    // Expired: 401 and 4401.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await get("/v1/sessions/tk-1"), 401);
    assert.equal(await closeCodeOf(stream("tk-1")), 4401);
  } finally {
    await server.close();
  }
});

Deno.test("security: a ticket dies with its session, even if the id is created again", async () => {
  const server = await startServer();
  try {
    await createRun(server, "tk-re");
    const ticket = await ticketFor(server, "tk-re");
    const read = async () => {
      const res = await fetch(`${server.url}/v1/sessions/tk-re?ticket=${ticket}`);
      await res.body?.cancel();
      return res.status;
    };
    assert.equal(await read(), 200);
    assert.equal((await server.api("/v1/sessions/tk-re", { method: "DELETE" })).status, 204);
    assert.equal(await read(), 401);
    // Re-created once the removal has finished.
    for (let i = 0;; i++) {
      const res = await server.call("/v1/sessions", {
        method: "POST",
        json: { sessionId: "tk-re" },
      });
      if (res.status === 201) break;
      assert.ok(i < 100, "the session id is free again");
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await read(), 401);
  } finally {
    await server.close();
  }
});

Deno.test("security: secrets never appear in logs, GET responses or events", async () => {
  const apiKey = "sk_test_7f1c2a9b4e5d6c3b2a1f0e9d";
  const signingSecret = "signing-secret-3b9e1c7a5d2f8e6b4a0c";
  const lines: string[] = [];
  const server = await startServer({
    config: { apiKeys: [apiKey], ticketSecret: signingSecret, logLevel: "debug" },
    logSink: (line) => lines.push(line),
  });
  const bodies: string[] = [];
  const call = async (path: string, init: RequestInit & { json?: unknown } = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${apiKey}`);
    const res = await server.api(path, { ...init, headers });
    const text = await res.text();
    if ((init.method ?? "GET") === "GET") bodies.push(text);
    return { status: res.status, text, json: () => JSON.parse(text) };
  };
  try {
    assert.equal(
      (await call("/v1/sessions", { method: "POST", json: { sessionId: "sec" } })).status,
      201,
    );
    const created = await call("/v1/sessions/sec/executions", { method: "POST", json: {} });
    const run = created.json();
    const queued = (await call("/v1/sessions/sec/executions", { method: "POST", json: {} })).json();
    const ticket =
      (await call("/v1/sessions/sec/tickets", { method: "POST", json: {} })).json().ticket;
    // A real ingest run, a viewer with the ticket, failures that log.
    const client = await IngestClient.connect(server.wsUrl + ingestPath("sec", run.executionId), {
      token: run.ingestToken,
      dial: "w1/1",
    });
    client.send({ streamEventType: "output", seq: 1, data: { text: "hello" } });
    client.send({ streamEventType: "output", seq: 5, data: {} }); // SEQ_GAP
    client.send("not json");
    await client.ackOf(1);
    const viewer = await WsViewer.open(server.wsUrl, "sec", {}, { ticket });
    await viewer.until((events) => events.some((e) => e.streamEventType === "output"));
    await viewer.close();
    await call(`/v1/sessions/sec/events?ticket=${ticket}`, { headers: { authorization: "" } });
    await call(`/v1/sessions/nope?ticket=${ticket}`, { headers: { authorization: "" } });
    await call(`/v1/sessions/sec?ticket=${ticket}x`, { headers: { authorization: "" } });
    await call("/v1/sessions/sec", { headers: { authorization: `Bearer ${run.ingestToken}` } });
    await closeCodeOf(server.wsUrl + ingestPath("sec", queued.executionId), {
      authorization: `Bearer ${run.ingestToken}`,
    });
    client.send({ streamEventType: "complete", seq: 2, data: { exitCode: 0 } });
    await client.closed;
    await call(`/v1/sessions/sec/executions/${queued.executionId}/interrupt`, {
      method: "POST",
      json: {},
    });
    for (const path of ["/v1/sessions/sec", "/v1/sessions/sec/executions", "/metrics"]) {
      assert.equal((await call(path)).status, 200);
    }
    await call(`/v1/sessions/sec/executions/${run.executionId}`);
    await call("/v1/sessions/sec/events?limit=1000");
    const events = await storedEvents(
      {
        ...server,
        call: (p: string) => call(p).then((r) => ({ status: r.status, body: r.json() })),
      } as TestServer,
      "sec",
    );
    assert.ok(lines.length > 5, "the service logged the run");
    const haystacks = {
      logs: lines.join("\n"),
      gets: bodies.join("\n"),
      events: JSON.stringify(events),
    };
    const secrets = {
      apiKey,
      signingSecret,
      ingestToken: run.ingestToken,
      queuedToken: queued.ingestToken,
      ticket,
      ticketMac: ticket.split(".")[1],
      tokenMac: run.ingestToken.split(".")[2],
    };
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [what, secret] of Object.entries(secrets)) {
        assert.ok(!text.includes(secret), `${what} appears in ${where}`);
      }
    }
    assert.ok(!haystacks.gets.includes("tokenHash"), "no token hash in GET responses");
  } finally {
    await server.close();
  }
});

Deno.test("security: TETHER_ALLOWED_ORIGINS holds on HTTP routes and upgrades", async () => {
  const server = await startServer({ config: { allowedOrigins: ["https://ok.example"] } });
  try {
    const run = await createRun(server, "orig");
    const get = async (origin?: string) => {
      const res = await server.api("/v1/sessions/orig", {
        headers: origin ? { origin } : {},
      });
      const body = await res.json();
      return { status: res.status, body, allow: res.headers.get("access-control-allow-origin") };
    };
    const good = await get("https://ok.example");
    assert.equal(good.status, 200);
    assert.equal(good.allow, "https://ok.example");
    assert.equal((await get()).status, 200, "non-browser clients send no Origin");
    const bad = await get("https://evil.example");
    assert.equal(bad.status, 403);
    assert.equal(bad.body.error, "FORBIDDEN");
    assert.equal(bad.allow, null);
    const evil = { origin: "https://evil.example" };
    const post = await server.api("/v1/sessions", {
      method: "POST",
      json: { sessionId: "evil" },
      headers: evil,
    });
    assert.equal(post.status, 403);
    await post.body?.cancel();
    assert.equal((await server.api("/v1/sessions/evil")).status, 404, "nothing was created");
    const ingest = server.wsUrl + ingestPath("orig", run.executionId);
    assert.equal(
      await closeCodeOf(ingest, { ...evil, authorization: `Bearer ${run.ingestToken}` }),
      4403,
    );
    assert.equal(
      await closeCodeOf(`${server.wsUrl}/v1/sessions/orig/stream`, {
        ...evil,
        authorization: "Bearer test-key",
      }),
      4403,
    );
    const exec = await server.call(`/v1/sessions/orig/executions/${run.executionId}`);
    assert.equal(exec.body.status, "pending", "the refused upgrade admitted nothing");
  } finally {
    await server.close();
  }
});

Deno.test("security: request bodies over 64 KiB get 413, declared or streamed", async () => {
  const server = await startServer();
  try {
    const big = JSON.stringify({ sessionId: "big", metadata: { pad: "x".repeat(65_536) } });
    const declared = await server.api("/v1/sessions", {
      method: "POST",
      body: big,
      headers: { "content-type": "application/json" },
    });
    assert.equal(declared.status, 413);
    assert.equal((await declared.json()).error, "PAYLOAD_TOO_LARGE");
    const chunks = [
      new TextEncoder().encode(big.slice(0, 40_000)),
      new TextEncoder().encode(big.slice(40_000)),
    ];
    const streamed = await server.api("/v1/sessions", {
      method: "POST",
      body: new ReadableStream({
        pull(controller) {
          const next = chunks.shift();
          if (next) controller.enqueue(next);
          else controller.close();
        },
      }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(streamed.status, 413);
    await streamed.body?.cancel();
    // Just under the limit is read (and then judged by the schema: metadata > 16 KiB).
    const under = JSON.stringify({ sessionId: "big", metadata: { pad: "x".repeat(65_000) } });
    const res = await server.call("/v1/sessions", { method: "POST", body: under });
    assert.equal(res.status, 400);
    assert.equal((await server.api("/v1/sessions/big")).status, 404);
  } finally {
    await server.close();
  }
});

Deno.test("security: a frame over maxFrameBytes closes with 1009 and stores nothing", async () => {
  const server = await startServer({ config: { maxFrameBytes: 2048 } });
  try {
    const run = await createRun(server, "size");
    const client = await IngestClient.connect(server.wsUrl + ingestPath("size", run.executionId), {
      token: run.ingestToken,
    });
    const frame = (n: number, pad: number) =>
      JSON.stringify({ streamEventType: "output", seq: n, data: { pad: "y".repeat(pad) } });
    const fits = frame(1, 0);
    client.send(frame(1, 2048 - fits.length)); // exactly the limit
    await client.ackOf(1);
    client.send(frame(2, 2049 - fits.length));
    assert.equal((await client.closed).code, 1009);
    const outputs = (await storedEvents(server, "size")).filter((e) =>
      e.streamEventType === "output"
    );
    assert.equal(outputs.length, 1);
    assert.equal((outputs[0].data as { pad: string }).pad.length, 2048 - fits.length);
  } finally {
    await server.close();
  }
});

Deno.test("security: a frame flood closes with 1008; a steady wrapper is left alone", async () => {
  const server = await startServer({ config: { maxFramesPerSec: 40 } });
  try {
    const flood = await createRun(server, "flood");
    const calm = await createRun(server, "calm");
    const open = (run: { sessionId: string; executionId: string; ingestToken: string }) =>
      IngestClient.connect(server.wsUrl + ingestPath(run.sessionId, run.executionId), {
        token: run.ingestToken,
      });
    const [flooder, steady] = await Promise.all([open(flood), open(calm)]);
    const heartbeat = { streamEventType: "heartbeat", data: {} };
    const ticker = setInterval(() => {
      for (let i = 0; i < 10; i++) {
        if (flooder.socket.readyState === WebSocket.OPEN) flooder.send(heartbeat);
      }
      if (steady.socket.readyState === WebSocket.OPEN) steady.send(heartbeat);
    }, 50); // 200 frames/s against a limit of 40, and 20 frames/s
    try {
      const closed = await Promise.race([
        flooder.closed,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 6000)),
      ]);
      assert.equal(closed?.code, 1008);
      assert.equal(steady.socket.readyState, WebSocket.OPEN);
    } finally {
      clearInterval(ticker);
    }
    await steady.close();
  } finally {
    await server.close();
  }
});

Deno.test("regression: metadata over 16 KiB and input over 32 KiB are refused with 400", async () => {
  const server = await startServer();
  try {
    // `{"pad":"…"}` is 10 bytes around the padding.
    const sized = (bytes: number) => ({ pad: "m".repeat(bytes - 10) });
    const session = (metadata: unknown) =>
      server.call("/v1/sessions", { method: "POST", json: { metadata } });
    const over = await session(sized(16 * 1024 + 1));
    assert.equal(over.status, 400);
    assert.equal(over.body.error, "INVALID_REQUEST");
    assert.equal((await session(sized(16 * 1024))).status, 201);
    await createRun(server, "limits");
    const execution = (input: unknown) =>
      server.call("/v1/sessions/limits/executions", { method: "POST", json: { input } });
    assert.equal((await execution(sized(32 * 1024 + 1))).status, 400);
    assert.equal((await execution(sized(32 * 1024))).status, 201);
  } finally {
    await server.close();
  }
});
