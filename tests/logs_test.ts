/**
 * Structured logs: every line is one JSON object `{level, time, msg, ...}`; lines about a
 * run carry `sessionId`, `executionId` and `event`; no api key, ingest token, ticket or
 * signing secret ever appears, whatever the traffic (PROTOCOL.md 2 and 11).
 */
import assert from "node:assert/strict";
import { Logger } from "../src/log.ts";
import { createRun, eventually, IngestClient } from "./helpers/ingest_client.ts";
import { API_KEY, startServer } from "./helpers/server.ts";
import { WsViewer } from "./helpers/viewer.ts";

const SIGNING_SECRET = "signing-secret-for-the-logs-test";

interface Entry {
  level: string;
  time: string;
  msg: string;
  [field: string]: unknown;
}

Deno.test({
  name: "logs: JSON lines with run context and no secrets",
  async fn() {
    const lines: string[] = [];
    const server = await startServer({
      config: { logLevel: "debug", ticketSecret: SIGNING_SECRET },
      logSink: (line) => lines.push(line),
    });
    const secrets = [API_KEY, SIGNING_SECRET, "wrong-key-from-a-stranger"];
    try {
      // A run with everything that carries a secret: token, ticket, wrong key, viewer.
      const run = await createRun(server, "logs-run");
      secrets.push(run.ingestToken);
      const { body: t } = await server.call<{ ticket: string }>("/v1/sessions/logs-run/tickets", {
        method: "POST",
        json: {},
      });
      secrets.push(t.ticket);
      const stranger = await fetch(`${server.url}/v1/sessions/logs-run`, {
        headers: { authorization: "Bearer wrong-key-from-a-stranger" },
      });
      assert.equal(stranger.status, 401);
      await stranger.body?.cancel();
      const refused = await IngestClient.dial(run.ingestUrl, { token: `${run.ingestToken}x` });
      await refused.closed;

      const viewer = await WsViewer.open(server.wsUrl, "logs-run", {}, { ticket: t.ticket });
      const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      wrapper.send({ streamEventType: "agent", seq: 1, data: { text: "hello" } });
      wrapper.send("garbage");
      await wrapper.ackOf(1);
      await wrapper.close(3000, "blip");
      const again = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
      const interrupted = await server.call(
        `/v1/sessions/logs-run/executions/${run.executionId}/interrupt`,
        { method: "POST", json: { reason: "enough" } },
      );
      assert.equal(interrupted.status, 202);
      await again.next((m) => m.type === "kill");
      again.send({ streamEventType: "interrupted", seq: 2, data: { reason: "enough" } });
      await again.closed;
      await viewer.until((events) => events.length >= 5, "the run's events");
      await viewer.close();
      await eventually(
        () => Promise.resolve(lines.some((l) => l.includes('"msg":"execution ended"'))),
        "the end is logged",
      );
    } finally {
      await server.close();
    }

    const entries: Entry[] = lines.map((line) => JSON.parse(line));
    assert.ok(entries.length >= 5, `enough lines (${entries.length})`);
    for (const entry of entries) {
      assert.ok(["debug", "info", "warn", "error"].includes(entry.level), entry.level);
      assert.equal(typeof entry.msg, "string");
      assert.equal(new Date(entry.time).toISOString(), entry.time);
      assert.equal(typeof entry.instanceId, "string");
    }
    const find = (msg: string) => {
      const entry = entries.find((e) => e.msg === msg);
      assert.ok(entry, `a "${msg}" line in:\n${lines.join("\n")}`);
      return entry;
    };
    const created = find("execution created");
    assert.equal(created.sessionId, "logs-run");
    assert.match(String(created.executionId), /^exc_/);
    const connected = find("wrapper connected");
    assert.equal(connected.sessionId, "logs-run");
    assert.equal(connected.executionId, created.executionId);
    assert.equal(typeof connected.event, "string");
    const ended = find("execution ended");
    assert.equal(ended.sessionId, "logs-run");
    assert.equal(ended.executionId, created.executionId);
    assert.equal(ended.event, "execution_status");
    assert.equal(ended.status, "interrupted");

    for (const secret of secrets) {
      const leaks = lines.filter((line) => line.includes(secret));
      assert.deepEqual(leaks, [], `no line contains ${secret.slice(0, 6)}…`);
    }
  },
});

Deno.test("logs: fields named like secrets are redacted", () => {
  const lines: string[] = [];
  const log = new Logger("info", (line) => lines.push(line)).with({ sessionId: "s1" });
  log.info("oops", { token: "t0k", apiKey: "k3y", ticket: "t1ck", authorization: "Bearer x" });
  log.debug("below the level");
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]);
  assert.equal(entry.sessionId, "s1");
  for (const field of ["token", "apiKey", "ticket", "authorization"]) {
    assert.equal(entry[field], "[redacted]", field);
  }
});

Deno.test({
  name: "a short TETHER_TICKET_SECRET is accepted with a warning, and signs tickets",
  async fn() {
    const lines: string[] = [];
    const server = await startServer({
      config: { logLevel: "warn", ticketSecret: "short" },
      logSink: (line) => lines.push(line),
    });
    try {
      const warnings = lines.map((line) => JSON.parse(line) as Entry)
        .filter((e) => e.level === "warn" && e.msg.includes("TETHER_TICKET_SECRET"));
      assert.equal(warnings.length, 1, lines.join("\n"));
      assert.ok(!lines.join("\n").includes('"short"'), "the secret itself is never logged");
      await server.call("/v1/sessions", { method: "POST", json: { sessionId: "short-secret" } });
      const { body: t } = await server.call<{ ticket: string }>(
        "/v1/sessions/short-secret/tickets",
        { method: "POST", json: {} },
      );
      const read = await fetch(`${server.url}/v1/sessions/short-secret?ticket=${t.ticket}`);
      assert.equal(read.status, 200);
      await read.body?.cancel();
    } finally {
      await server.close();
    }
  },
});
