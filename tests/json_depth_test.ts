/**
 * The JSON nesting limit at every edge (PROTOCOL.md 10): metadata, execution input, ingest
 * frames and query values at 64 levels pass, at 65 and 5,000 levels are refused (400
 * `INVALID_REQUEST` / `INVALID_FRAME`) and nothing is stored; a session with 64-level
 * metadata can still be deleted.
 */
import assert from "node:assert/strict";
import { MAX_JSON_DEPTH } from "../src/json_depth.ts";
import {
  connectRun,
  createRun,
  LONG_GRACE,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import { WsViewer } from "./helpers/viewer.ts";

/** A value nested `depth` levels deep (`{}` is 1). */
const nested = (depth: number): unknown => {
  let value: unknown = {};
  for (let i = 1; i < depth; i++) value = i % 2 ? { a: value } : [value];
  return value;
};
/** An object (metadata must be one) nested `depth` levels deep. */
const nestedObject = (depth: number): unknown =>
  depth % 2 ? nested(depth) : { a: nested(depth - 1) };

const TOO_DEEP = [MAX_JSON_DEPTH + 1, 5000];

serverTest(
  "metadata nested 64 levels is stored (and deletable); deeper is a 400",
  async (server) => {
    for (const depth of TOO_DEEP) {
      const res = await server.call("/v1/sessions", {
        method: "POST",
        json: { sessionId: `deep-${depth}`, metadata: nestedObject(depth) },
      });
      assert.equal(res.status, 400, `depth ${depth}`);
      assert.equal(res.body.error, "INVALID_REQUEST");
      assert.equal((await server.call(`/v1/sessions/deep-${depth}`)).status, 404);
    }
    const ok = await server.call("/v1/sessions", {
      method: "POST",
      json: { sessionId: "deep-ok", metadata: nestedObject(MAX_JSON_DEPTH) },
    });
    assert.equal(ok.status, 201);
    assert.deepEqual(
      (await server.call("/v1/sessions/deep-ok")).body.metadata,
      nestedObject(MAX_JSON_DEPTH),
    );
    assert.equal((await server.api("/v1/sessions/deep-ok", { method: "DELETE" })).status, 204);
  },
);

serverTest(
  "execution input nested 64 levels is accepted; deeper is a 400, nothing created",
  async (server) => {
    assert.equal(
      (await server.call("/v1/sessions", { method: "POST", json: { sessionId: "in" } })).status,
      201,
    );
    for (const depth of TOO_DEEP) {
      const res = await server.call("/v1/sessions/in/executions", {
        method: "POST",
        json: { input: nested(depth) },
      });
      assert.equal(res.status, 400, `depth ${depth}`);
      assert.equal(res.body.error, "INVALID_REQUEST");
    }
    const before = await server.call<{ lastEventId: number }>("/v1/sessions/in");
    assert.equal(before.body.lastEventId, 0, "no execution_status event was stored");
    const list = await server.call<{ executions: unknown[] }>("/v1/sessions/in/executions");
    assert.equal(list.body.executions.length, 0);
    const ok = await server.call<{ executionId: string }>("/v1/sessions/in/executions", {
      method: "POST",
      json: { input: nested(MAX_JSON_DEPTH) },
    });
    assert.equal(ok.status, 201);
    const exec = await server.call(`/v1/sessions/in/executions/${ok.body.executionId}`);
    assert.deepEqual(exec.body.input, nested(MAX_JSON_DEPTH));
  },
);

serverTest(
  "frames nesting deeper than 64 levels get INVALID_FRAME and are not stored",
  async (server) => {
    const run = await createRun(server, "frames", LONG_GRACE);
    const client = await connectRun(run);
    client.send({ streamEventType: "output", seq: 1, data: nested(MAX_JSON_DEPTH + 1) });
    client.send({ streamEventType: "output", seq: 2, data: nested(5000) });
    client.send({ streamEventType: "output", data: nested(5000) });
    client.send({ streamEventType: "output", seq: 3, data: nested(MAX_JSON_DEPTH) });
    await client.ackOf(3);
    const errors = client.of("error");
    assert.deepEqual(errors.map((e) => [e.code, e.seq]), [
      ["INVALID_FRAME", 1],
      ["INVALID_FRAME", 2],
      ["INVALID_FRAME", undefined],
    ]);
    const stored = await storedEvents(server, "frames");
    const outputs = stored.filter((e) => e.streamEventType === "output");
    assert.equal(outputs.length, 1);
    assert.deepEqual(outputs[0].data, nested(MAX_JSON_DEPTH));
    assert.equal(client.closeInfo, undefined, "the socket stays open");
    await client.close();
  },
);

serverTest(
  "query values nesting deeper than 64 levels: 400 (1008 on the WebSocket)",
  async (server) => {
    const run = await createRun(server, "query", LONG_GRACE);
    const text = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    const paths = (value: string) => [
      `/v1/sessions/query/events?executionIds=${encodeURIComponent(value)}`,
      `/v1/sessions/query/events?eventTypes=${encodeURIComponent(value)}`,
      `/v1/sessions/query/ds?offset=-1&cursor=${encodeURIComponent(value)}`,
      `/v1/sessions/query/executions?after=${encodeURIComponent(value)}`,
    ];
    for (const depth of TOO_DEEP) {
      for (const path of paths(text(depth))) {
        const res = await server.api(path);
        assert.equal(res.status, 400, `${path.slice(0, 60)} at depth ${depth}`);
        assert.equal((await res.json()).error, "INVALID_REQUEST");
      }
      const viewer = await WsViewer.open(server.wsUrl, "query", { eventTypes: text(depth) });
      assert.equal((await viewer.closed).code, 1008);
    }
    const fine = await server.api(paths(text(MAX_JSON_DEPTH))[0]);
    assert.equal(fine.status, 200);
    await fine.body?.cancel();
    const session = await server.call<{ lastEventId: number }>("/v1/sessions/query");
    assert.equal(session.body.lastEventId, 1, "only the creation event of the run");
    assert.equal(run.sessionId, "query");
  },
);
