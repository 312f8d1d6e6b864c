/**
 * `GET /v1/openapi.json` (PROTOCOL.md 13): a valid OpenAPI 3.1 document (checked by
 * `@readme/openapi-parser`) that lists every route of sections 2, 4, 6 (SSE), 6.1 and 12,
 * and whose schemas hold the service's real answers, successes and errors alike (checked
 * with Ajv's JSON Schema 2020-12 validator, the dialect of OpenAPI 3.1).
 */
import assert from "node:assert/strict";
import { validate as validateOpenApi } from "@readme/openapi-parser";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { API_KEY, startServer, type TestServer } from "./helpers/server.ts";
import { connectIngest } from "./helpers/runs.ts";

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  components: { securitySchemes: Record<string, unknown> };
};

const DOC_ID = "https://tether.invalid/openapi.json";

/** The routes of PROTOCOL.md 2, 4, 6 (SSE), 6.1 and 12 that the document must list. */
const ROUTES: [string, string][] = [
  ["post", "/v1/sessions"],
  ["get", "/v1/sessions/{sid}"],
  ["delete", "/v1/sessions/{sid}"],
  ["post", "/v1/sessions/{sid}/executions"],
  ["get", "/v1/sessions/{sid}/executions"],
  ["get", "/v1/sessions/{sid}/executions/{eid}"],
  ["post", "/v1/sessions/{sid}/executions/{eid}/interrupt"],
  ["post", "/v1/sessions/{sid}/executions/{eid}/fail"],
  ["post", "/v1/sessions/{sid}/executions/{eid}/input"],
  ["get", "/v1/sessions/{sid}/events"],
  ["get", "/v1/sessions/{sid}/ds"],
  ["head", "/v1/sessions/{sid}/ds"],
  ["post", "/v1/sessions/{sid}/tickets"],
  ["get", "/v1/openapi.json"],
];

/** Checks real responses against the document's schemas. */
class Checker {
  readonly #ajv = new Ajv2020({ strict: false, allErrors: true });
  readonly checked = new Set<string>();

  constructor(readonly doc: Doc) {
    addFormats.default(this.#ajv);
    this.#ajv.addSchema({ ...doc, $id: DOC_ID });
  }

  /** Asserts that `res` is documented for this route and matches its schema. */
  async check(method: string, path: string, res: Response): Promise<void> {
    const label = `${method.toUpperCase()} ${path} → ${res.status}`;
    const responses = this.doc.paths[path]?.[method]?.responses;
    assert.ok(responses, `${label}: route not documented`);
    const status = String(res.status) in responses ? String(res.status) : "default";
    assert.ok(status in responses, `${label}: status not documented`);
    this.checked.add(`${method} ${path} ${res.status}`);
    const text = await res.text();
    const contentType = res.headers.get("content-type") ?? "";
    if (!contentType.startsWith("application/json") || text === "") return;
    const pointer = ["paths", path, method, "responses", status, "content", "application/json"]
      .map((part) => part.replaceAll("~", "~0").replaceAll("/", "~1"));
    const validate = this.#ajv.getSchema(`${DOC_ID}#/${pointer.join("/")}/schema`);
    assert.ok(validate, `${label}: no JSON schema`);
    const body = JSON.parse(text);
    assert.ok(validate(body), `${label}: ${JSON.stringify(validate.errors)}\n${text}`);
  }
}

async function fetchDoc(server: TestServer): Promise<Doc> {
  const res = await fetch(`${server.url}/v1/openapi.json`); // no credentials
  assert.equal(res.status, 200);
  return await res.json();
}

Deno.test("openapi: a valid OpenAPI 3.1 document listing every route, without secrets", async () => {
  const server = await startServer();
  try {
    const doc = await fetchDoc(server);
    assert.equal(doc.openapi, "3.1.0");
    const result = await validateOpenApi(structuredClone(doc) as never);
    assert.equal(result.valid, true, JSON.stringify(result));
    for (const [method, path] of ROUTES) {
      assert.ok(doc.paths[path]?.[method], `${method} ${path} is documented`);
    }
    assert.deepEqual(Object.keys(doc.components.securitySchemes).sort(), ["apiKey", "ticket"]);
    assert.ok(!JSON.stringify(doc).includes(API_KEY), "no api key in the document");
  } finally {
    await server.close();
  }
});

Deno.test({
  name: "openapi: the service's real answers match the documented schemas",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await startServer({ config: { maxQueue: 1 } });
    try {
      const checker = new Checker(await fetchDoc(server));
      await exerciseSessions(server, checker);
      await exerciseExecutions(server, checker);
      await exerciseReads(server, checker);
      for (const [method, path] of ROUTES) {
        const seen = [...checker.checked].filter((c) => c.startsWith(`${method} ${path} `));
        assert.ok(seen.some((c) => / 2\d\d$/.test(c)), `a success of ${method} ${path}`);
        if (path !== "/v1/openapi.json") {
          assert.ok(seen.some((c) => / [45]\d\d$/.test(c)), `an error of ${method} ${path}`);
        }
      }
    } finally {
      await server.close();
    }
  },
});

const SID = "/v1/sessions/{sid}";

async function exerciseSessions(server: TestServer, c: Checker): Promise<void> {
  const post = (json: unknown, headers?: HeadersInit) =>
    server.api("/v1/sessions", { method: "POST", json, headers });
  await c.check("post", "/v1/sessions", await post({ sessionId: "o1", metadata: { a: 1 } }));
  await c.check("post", "/v1/sessions", await post({ sessionId: "o1" }));
  await c.check("post", "/v1/sessions", await post({ sessionId: "bad id" }));
  await c.check("post", "/v1/sessions", await post({}, { authorization: "Bearer wrong" }));
  await c.check(
    "post",
    "/v1/sessions",
    await post({ metadata: { big: "x".repeat(70_000) } }),
  );
  await c.check("get", SID, await server.api("/v1/sessions/o1"));
  await c.check("get", SID, await server.api("/v1/sessions/nope"));
  await server.client.createSession({ sessionId: "gone" });
  await c.check("delete", SID, await server.api("/v1/sessions/gone", { method: "DELETE" }));
  await c.check("delete", SID, await server.api("/v1/sessions/gone", { method: "DELETE" }));
  const tickets = `${SID}/tickets`;
  const ticket = await server.api("/v1/sessions/o1/tickets", { method: "POST", json: {} });
  await c.check("post", tickets, ticket.clone());
  const { ticket: t } = await ticket.json();
  await c.check(
    "post",
    tickets,
    await server.api("/v1/sessions/o1/tickets", { method: "POST", json: { ttlMs: 1 } }),
  );
  await c.check("get", SID, await fetch(`${server.url}/v1/sessions/other?ticket=${t}`));
  await c.check("get", "/v1/openapi.json", await fetch(`${server.url}/v1/openapi.json`));
}

async function exerciseExecutions(server: TestServer, c: Checker): Promise<void> {
  const executions = `${SID}/executions`;
  const create = (json: unknown, headers?: HeadersInit) =>
    server.api("/v1/sessions/o1/executions", { method: "POST", json, headers });
  const first = await create({ input: { p: 1 } }, { "idempotency-key": "k" });
  await c.check("post", executions, first.clone());
  const run = await first.json();
  await c.check("post", executions, await create({ ifIdle: true }));
  await c.check("post", executions, await create({ input: 2 }, { "idempotency-key": "k" }));
  const queued = await create({});
  await c.check("post", executions, queued.clone());
  const { executionId: queuedId } = await queued.json();
  await c.check("post", executions, await create({})); // queue full (TETHER_MAX_QUEUE 1)
  await c.check(
    "post",
    executions,
    await server.api("/v1/sessions/nope/executions", { method: "POST", json: {} }),
  );
  await c.check("get", executions, await server.api("/v1/sessions/o1/executions?limit=5"));
  await c.check("get", executions, await server.api("/v1/sessions/o1/executions?after=exc_x"));
  const one = `${executions}/{eid}`;
  await c.check("get", one, await server.api(`/v1/sessions/o1/executions/${run.executionId}`));
  await c.check("get", one, await server.api(`/v1/sessions/o1/executions/exc_nope`));
  const interrupt = (eid: string) =>
    server.api(`/v1/sessions/o1/executions/${eid}/interrupt`, { method: "POST", json: {} });
  await c.check("post", `${one}/interrupt`, await interrupt(queuedId));
  await c.check("post", `${one}/interrupt`, await interrupt("exc_nope"));
  const input = (eid: string, json: unknown) =>
    server.api(`/v1/sessions/o1/executions/${eid}/input`, { method: "POST", json });
  await c.check("post", `${one}/input`, await input(run.executionId, { data: "go" }));
  await c.check("post", `${one}/input`, await input(run.executionId, {}));
  await c.check("post", `${one}/input`, await input(queuedId, { data: "late" }));
  await c.check("post", `${one}/input`, await input("exc_nope", { data: 1 }));
  const conn = await connectIngest(run);
  conn.send({ streamEventType: "output", data: { stream: "stdout", text: "hi" } });
  await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
  // A running execution's view (health, startedAt…) was checked above while pending; now ended.
  await c.check("get", one, await server.api(`/v1/sessions/o1/executions/${run.executionId}`));
  const fail = (json: unknown) =>
    server.api(`/v1/sessions/o1/executions/${run.executionId}/fail`, { method: "POST", json });
  await c.check("post", `${one}/fail`, await fail({ error: "late" }));
  await c.check("post", `${one}/fail`, await fail({ error: 1 }));
}

async function exerciseReads(server: TestServer, c: Checker): Promise<void> {
  const events = `${SID}/events`;
  await c.check("get", events, await server.api("/v1/sessions/o1/events?limit=2"));
  await c.check("get", events, await server.api("/v1/sessions/o1/events?after=x"));
  await c.check("get", events, await server.api("/v1/sessions/nope/events"));
  const abort = new AbortController();
  const sse = await server.api("/v1/sessions/o1/events", {
    headers: { accept: "text/event-stream" },
    signal: abort.signal,
  });
  assert.equal(sse.status, 200);
  assert.match(sse.headers.get("content-type") ?? "", /^text\/event-stream/);
  c.checked.add(`get ${events} 200`);
  const reader = sse.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("running → completed") && !/"status":"completed"/.test(text)) {
    text += (await reader.read()).value ?? "";
  }
  abort.abort();
  await reader.cancel().catch(() => {});
  const page = { events: [] as unknown[], lastEventId: 0, nextAfter: 0 };
  for (const line of text.split("\n")) {
    if (line.startsWith("data: ")) page.events.push(JSON.parse(line.slice(6)));
  }
  // Every SSE data line is an Envelope: check them as a JSON page of the same schema.
  await c.check(
    "get",
    events,
    new Response(JSON.stringify(page), { headers: { "content-type": "application/json" } }),
  );

  const ds = `${SID}/ds`;
  await c.check("get", ds, await server.api("/v1/sessions/o1/ds?offset=-1"));
  await c.check("get", ds, await server.api("/v1/sessions/o1/ds?offset=bogus"));
  await c.check("get", ds, await server.api("/v1/sessions/o1/ds?offset=-1&live=sometimes"));
  await c.check("head", ds, await server.api("/v1/sessions/o1/ds", { method: "HEAD" }));
  await c.check("head", ds, await server.api("/v1/sessions/nope/ds", { method: "HEAD" }));
  await c.check(
    "get",
    ds,
    await server.api("/v1/sessions/o1/ds", { method: "PUT" }).then(
      (res) => (assert.equal(res.status, 405), res),
    ),
  );
}
