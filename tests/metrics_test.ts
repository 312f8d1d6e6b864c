/**
 * `GET /metrics` (PROTOCOL.md 11): Prometheus text with every counter and gauge, each one
 * moved by the real thing it counts, over real sockets.
 */
import assert from "node:assert/strict";
import {
  createRun,
  eventually,
  IngestClient,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";
import { WsViewer } from "./helpers/viewer.ts";

/** Every series of PROTOCOL.md 11, by metric name. */
const METRICS = {
  tether_events_stored_total: "counter",
  tether_frames_rejected_total: "counter",
  tether_executions_ended_total: "counter",
  tether_grace_started_total: "counter",
  tether_grace_expired_total: "counter",
  tether_grace_cancelled_total: "counter",
  tether_deadlines_fired_total: "counter",
  tether_deadline_lateness_ms_sum: "counter",
  tether_deadline_lateness_ms_max: "gauge",
  tether_ingest_sockets: "gauge",
  tether_viewer_sockets: "gauge",
};

/** Reads `/metrics` into `series → value` (series as written, labels included). */
async function scrape(server: TestServer): Promise<Map<string, number>> {
  const res = await server.api("/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  for (const [name, type] of Object.entries(METRICS)) {
    assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `${name} is declared a ${type}`);
    assert.ok(text.includes(`# HELP ${name} `), `${name} has help`);
  }
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-z_]+(?:\{[^}]*\})?) (-?[\d.e+]+)$/.exec(line);
    assert.ok(m, `a valid sample line: ${line}`);
    series.set(m[1], Number(m[2]));
  }
  return series;
}

/** The sum of every series of `name` whose labels include all of `labels`. */
function sum(series: Map<string, number>, name: string, labels: Record<string, string> = {}) {
  let total = 0;
  for (const [key, value] of series) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) total += value;
  }
  return total;
}

async function metric(server: TestServer, name: string, labels: Record<string, string> = {}) {
  return sum(await scrape(server), name, labels);
}

serverTest("metrics: the api key is required", async (server) => {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error, "UNAUTHORIZED");
});

serverTest("metrics: every counter and gauge moves with what it counts", async (server) => {
  const zero = await scrape(server);
  for (const name of Object.keys(METRICS)) assert.equal(sum(zero, name), 0, name);

  // Sockets: one wrapper, one viewer.
  const run = await createRun(server, "metrics-a");
  let wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  const viewer = await WsViewer.open(server.wsUrl, "metrics-a");
  await eventually(
    async () => (await metric(server, "tether_viewer_sockets")) === 1,
    "viewer gauge",
  );
  assert.equal(await metric(server, "tether_ingest_sockets"), 1);

  // Rejected frames, by code.
  wrapper.send("not json");
  wrapper.send({ streamEventType: "agent", seq: 5, data: {} });
  await wrapper.until(() => wrapper.of("error").length === 2, "two error frames");
  assert.equal(await metric(server, "tether_frames_rejected_total", { code: "INVALID_FRAME" }), 1);
  assert.equal(await metric(server, "tether_frames_rejected_total", { code: "SEQ_GAP" }), 1);

  // A drop starts a grace, a reconnect cancels it.
  wrapper.send({ streamEventType: "agent", seq: 1, data: { step: 1 } });
  await wrapper.ackOf(1);
  await wrapper.close(3000, "network blip");
  await eventually(
    async () => (await metric(server, "tether_grace_started_total")) === 1,
    "grace started",
  );
  wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  assert.equal(await metric(server, "tether_grace_cancelled_total"), 1);

  // A terminal frame ends the execution: counted by status.
  wrapper.send({ streamEventType: "complete", seq: 2, data: { exitCode: 0 } });
  await wrapper.closed;
  assert.equal(
    await metric(server, "tether_executions_ended_total", { status: "completed" }),
    1,
  );

  // A grace that runs out: expired, a deadline fired (with its lateness), execution failed.
  const dropped = await createRun(server, "metrics-b", { graceMs: 1000 });
  const lost = await IngestClient.connect(dropped.ingestUrl, { token: dropped.ingestToken });
  await lost.close(3001, "gone for good");
  await eventually(
    async () => (await metric(server, "tether_grace_expired_total")) === 1,
    "grace expired",
    10_000,
  );
  const afterExpiry = await scrape(server);
  assert.equal(sum(afterExpiry, "tether_grace_started_total"), 2);
  assert.ok(sum(afterExpiry, "tether_deadlines_fired_total", { kind: "grace" }) >= 1);
  assert.ok(sum(afterExpiry, "tether_deadline_lateness_ms_sum") >= 0);
  assert.ok(sum(afterExpiry, "tether_deadline_lateness_ms_max") >= 0);
  assert.equal(sum(afterExpiry, "tether_executions_ended_total", { status: "failed" }), 1);

  // An interrupt of a pending execution.
  const pending = await createRun(server, "metrics-c");
  const interrupted = await server.call(
    `/v1/sessions/metrics-c/executions/${pending.executionId}/interrupt`,
    { method: "POST", json: {} },
  );
  assert.equal(interrupted.status, 202);
  assert.equal(
    await metric(server, "tether_executions_ended_total", { status: "interrupted" }),
    1,
  );

  // Stored events: every event of every session, each counted once.
  const stored = (await Promise.all(
    ["metrics-a", "metrics-b", "metrics-c"].map((sid) => storedEvents(server, sid)),
  )).flat().length;
  assert.equal(await metric(server, "tether_events_stored_total"), stored);

  // Gauges fall back when the sockets go.
  await viewer.close();
  await eventually(
    async () => (await metric(server, "tether_viewer_sockets")) === 0,
    "viewer gauge back to 0",
  );
  assert.equal(await metric(server, "tether_ingest_sockets"), 0);
});
