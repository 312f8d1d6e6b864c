/**
 * The input channel on the service (PROTOCOL.md 12): acceptance, the `input` event, the
 * execution's counters, delivery after `hello` and at once while connected, the wrapper's
 * `input_delivered`, and every refusal with the state unchanged afterwards.
 */
import assert from "node:assert/strict";
import {
  connectRun,
  createRun,
  eventually,
  getExecution,
  IngestClient,
  LONG_GRACE,
  type Run,
  serverTest,
  storedEvents,
} from "./helpers/ingest_client.ts";
import type { TestServer } from "./helpers/server.ts";
import { keys } from "../src/store/keys.ts";

const inputPath = (run: Run) => `/v1/sessions/${run.sessionId}/executions/${run.executionId}/input`;

function sendInput(
  server: TestServer,
  run: Run,
  json: unknown,
  headers: Record<string, string> = {},
) {
  return server.call(inputPath(run), { method: "POST", json, headers });
}

/** What a refusal must leave as it was: the execution and the session's log. */
async function snapshot(server: TestServer, run: Run) {
  // health and lastHeartbeatAt move with time, not with the refused request
  const { health: _health, lastHeartbeatAt: _lastHeartbeatAt, ...exec } = await getExecution(
    server,
    run,
  );
  return { exec, events: await storedEvents(server, run.sessionId) };
}

const counters = (exec: Record<string, unknown>) => [
  exec.lastInputId,
  exec.deliveredInputId,
  exec.inputClosed,
];

serverTest("inputs before the wrapper connects follow hello in order; later ones at once", async (
  server,
) => {
  const run = await createRun(server, "in-1", LONG_GRACE);
  assert.deepEqual(counters(await getExecution(server, run)), [0, 0, false]);
  const first = await sendInput(server, run, { data: "one" });
  assert.deepEqual([first.status, first.body], [202, {
    executionId: run.executionId,
    inputId: 1,
    status: "pending",
  }]);
  await sendInput(server, run, { data: { two: 2 } });
  const wrapper = await connectRun(run, "w/1");
  assert.equal(wrapper.messages[0].deliveredInputId, 0);
  await wrapper.until(() => wrapper.of("input").length === 2, "two inputs");
  const third = await sendInput(server, run, { endOfInput: true });
  assert.deepEqual(third.body, { executionId: run.executionId, inputId: 3, status: "running" });
  await wrapper.until(() => wrapper.of("input").length === 3, "third input");
  assert.deepEqual(wrapper.of("input"), [
    { type: "input", inputId: 1, data: "one" },
    { type: "input", inputId: 2, data: { two: 2 } },
    { type: "input", inputId: 3, endOfInput: true },
  ]);
  assert.deepEqual(counters(await getExecution(server, run)), [3, 0, true]);
  const inputs = (await storedEvents(server, run.sessionId)).filter((e) =>
    e.streamEventType === "input"
  );
  assert.deepEqual(inputs.map((e) => [e.executionId, e.data]), [
    [run.executionId, { inputId: 1, data: "one" }],
    [run.executionId, { inputId: 2, data: { two: 2 } }],
    [run.executionId, { inputId: 3, endOfInput: true }],
  ]);

  wrapper.send({ streamEventType: "input_delivered", seq: 1, data: { inputId: 2 } });
  await wrapper.ackOf(1);
  assert.deepEqual(counters(await getExecution(server, run)), [3, 2, true]);
  wrapper.send({ streamEventType: "input_delivered", seq: 2, data: { inputId: 1 } }); // lower: kept
  await wrapper.ackOf(2);
  assert.equal((await getExecution(server, run)).deliveredInputId, 2);
  await wrapper.close();

  // A new connection gets hello.deliveredInputId 2 and only the input above it.
  const again = await connectRun(run, "w/2");
  assert.equal(again.messages[0].deliveredInputId, 2);
  await again.until(() => again.of("input").length === 1, "the undelivered input");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(again.of("input"), [{ type: "input", inputId: 3, endOfInput: true }]);
  await again.close();
});

serverTest("a pending kill comes before the inputs after hello", async (server) => {
  const run = await createRun(server, "in-kill", LONG_GRACE);
  const wrapper = await connectRun(run, "w/1");
  await sendInput(server, run, { data: "x" });
  await wrapper.until(() => wrapper.of("input").length === 1, "input");
  await server.call(`/v1/sessions/in-kill/executions/${run.executionId}/interrupt`, {
    method: "POST",
    json: {},
  });
  await wrapper.close();
  const again = await connectRun(run, "w/2");
  await again.until(() => again.of("input").length === 1, "input again");
  assert.deepEqual(again.messages.slice(0, 3).map((m) => m.type), ["hello", "kill", "input"]);
  await again.close();
});

serverTest("a queued execution takes input; it is delivered once it runs", async (server) => {
  const active = await createRun(server, "in-q", LONG_GRACE);
  const queued = await createRun(server, "in-q", LONG_GRACE);
  const res = await sendInput(server, queued, { data: "later" });
  assert.deepEqual([res.status, res.body.status], [202, "pending"]);
  await server.call(`/v1/sessions/in-q/executions/${active.executionId}/fail`, {
    method: "POST",
    json: { error: "done" },
  });
  const wrapper = await connectRun(queued);
  await wrapper.until(() => wrapper.of("input").length === 1, "input");
  await wrapper.close();
});

serverTest("every refusal of section 12 leaves the state unchanged", async (server) => {
  const run = await createRun(server, "in-err", LONG_GRACE);
  const wrapper = await connectRun(run, "w/1");
  const expectRefusal = async (
    json: unknown,
    status: number,
    error: string,
    headers: Record<string, string> = {},
  ) => {
    const before = await snapshot(server, run);
    const res = await sendInput(server, run, json, headers);
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error, error);
    assert.deepEqual(await snapshot(server, run), before);
    return res;
  };
  // Bad bodies.
  await expectRefusal({}, 400, "INVALID_REQUEST");
  await expectRefusal({ endOfInput: false }, 400, "INVALID_REQUEST");
  await expectRefusal({ data: 1, extra: true }, 400, "INVALID_REQUEST");
  await expectRefusal({ data: "x".repeat(33 * 1024) }, 400, "INVALID_REQUEST");
  await expectRefusal({ data: "x".repeat(70 * 1024) }, 413, "PAYLOAD_TOO_LARGE");
  const deep = JSON.parse("[".repeat(100) + "]".repeat(100)); // over the 64-level limit
  await expectRefusal({ data: deep }, 400, "INVALID_REQUEST");
  await expectRefusal({ data: 1 }, 400, "INVALID_REQUEST", { "idempotency-key": "" });
  // A ticket may read the session but not send input.
  const ticket = await server.call<{ ticket: string }>("/v1/sessions/in-err/tickets", {
    method: "POST",
    json: {},
  });
  const before = await snapshot(server, run);
  const byTicket = await server.api(`${inputPath(run)}?ticket=${ticket.body.ticket}`, {
    method: "POST",
    json: { data: 1 },
    headers: { authorization: "" },
  });
  assert.equal(byTicket.status, 403);
  await byTicket.body?.cancel();
  assert.deepEqual(await snapshot(server, run), before);
  const unknown = await sendInput(
    server,
    { ...run, executionId: "exc_01JZZZZZZZZZZZZZZZZZZZZZZZ" },
    {
      data: 1,
    },
  );
  assert.deepEqual([unknown.status, unknown.body.error], [404, "EXECUTION_NOT_FOUND"]);

  // Idempotency: a retry gets the same answer and creates nothing; another body → 422.
  const key = { "idempotency-key": "answer-1" };
  const first = await sendInput(server, run, { data: { a: 1, b: 2 } }, key);
  assert.equal(first.status, 202);
  const afterFirst = await snapshot(server, run);
  const retry = await sendInput(server, run, { data: { b: 2, a: 1 } }, key);
  assert.deepEqual([retry.status, retry.body], [202, first.body]);
  assert.deepEqual(await snapshot(server, run), afterFirst);
  await expectRefusal({ data: "other" }, 422, "IDEMPOTENCY_KEY_REUSED", key);

  // Queue full: TETHER_MAX_PENDING_INPUTS (3 here) accepted and not delivered.
  await sendInput(server, run, { data: 2 });
  await sendInput(server, run, { data: 3 });
  await expectRefusal({ data: 4 }, 429, "INPUT_QUEUE_FULL");
  await wrapper.until(() => wrapper.of("input").length === 3, "three inputs");
  wrapper.send({ streamEventType: "input_delivered", seq: 1, data: { inputId: 1 } });
  await wrapper.ackOf(1);
  assert.equal((await sendInput(server, run, { data: 4 })).status, 202);

  // A wrapper frame of type input is reserved; input_delivered above lastInputId is invalid;
  // neither is stored nor changes the counters.
  const framesBefore = await snapshot(server, run);
  wrapper.send({ streamEventType: "input", seq: 2, data: { inputId: 1 } });
  wrapper.send({ streamEventType: "input_delivered", seq: 3, data: { inputId: 5 } });
  wrapper.send({ streamEventType: "input_delivered", seq: 4, data: { inputId: "2" } });
  wrapper.send({ streamEventType: "input_delivered", seq: 5 });
  await wrapper.ackOf(5);
  const errors = wrapper.of("error").filter((e) => e.code === "INVALID_FRAME");
  // input_delivered above lastInputId is refused by its commit, after the ones refused at once.
  assert.deepEqual(errors.map((e) => e.seq as number).sort(), [2, 3, 4, 5]);
  assert.deepEqual(await snapshot(server, run), framesBefore);

  // endOfInput closes the input; then 409 INPUT_CLOSED.
  wrapper.send({ streamEventType: "input_delivered", seq: 6, data: { inputId: 2 } });
  await wrapper.ackOf(6);
  assert.equal((await sendInput(server, run, { endOfInput: true })).status, 202);
  await expectRefusal({ data: "late" }, 409, "INPUT_CLOSED");
  // An idempotent retry still gets its first answer after the input closed.
  assert.deepEqual((await sendInput(server, run, { data: { a: 1, b: 2 } }, key)).body, first.body);

  // A terminal execution: 409 EXECUTION_ENDED with its status.
  wrapper.send({ streamEventType: "complete", seq: 7, data: { exitCode: 0 } });
  assert.equal((await wrapper.closed).code, 4000);
  const ended = await expectRefusal({ data: 1 }, 409, "EXECUTION_ENDED");
  assert.equal(ended.body.status, "completed");
}, { config: { maxPendingInputs: 3 } });

serverTest("records written without the input fields read as 0, 0, false", async (server) => {
  const run = await createRun(server, "in-old", LONG_GRACE);
  const key = keys.exec(run.executionId);
  const stored = (await server.kv.get<Record<string, unknown>>(key)).value!;
  // What the code before section 12 wrote: no input field at all.
  const old = { ...stored };
  for (const field of ["lastInputId", "deliveredInputId", "inputClosed"]) delete old[field];
  assert.deepEqual(old, stored);
  await server.kv.set(key, old);
  assert.deepEqual(counters(await getExecution(server, run)), [0, 0, false]);
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  assert.equal(wrapper.messages[0].deliveredInputId, 0);
  assert.equal((await sendInput(server, run, { data: "hi" })).body.inputId, 1);
  await wrapper.until(() => wrapper.of("input").length === 1, "input");
  await wrapper.close();
});

serverTest("input_delivered on a replaced connection is not stored", async (server) => {
  const run = await createRun(server, "in-repl", LONG_GRACE);
  const old = await connectRun(run, "w/1");
  await sendInput(server, run, { data: 1 });
  const current = await connectRun(run, "w/2");
  await eventually(() => old.closeInfo !== undefined);
  assert.equal(old.closeInfo?.code, 4001);
  current.send({ streamEventType: "input_delivered", seq: 1, data: { inputId: 1 } });
  await current.ackOf(1);
  assert.equal((await getExecution(server, run)).deliveredInputId, 1);
  await current.close();
});

serverTest("32 KiB of data beyond Latin-1 is kept and delivered whole", async (server) => {
  const run = await createRun(server, "in-big", LONG_GRACE);
  // 32,767 bytes of JSON; as a structured KV value (UTF-16) it would exceed 64 KiB.
  const data = "a".repeat(32_762) + "中";
  assert.equal((await sendInput(server, run, { data })).status, 202);
  const wrapper = await connectRun(run);
  await wrapper.until(() => wrapper.of("input").length === 1, "the big input");
  assert.equal(wrapper.of("input")[0].data, data);
  await wrapper.close();
});

serverTest(
  "inputs kept as objects (the first stored shape) are still delivered",
  async (server) => {
    const run = await createRun(server, "in-shape", LONG_GRACE);
    await sendInput(server, run, { data: "new shape" });
    // An input kept by the first version of this code: the record itself, not its JSON bytes.
    await server.kv.set(keys.agentInput(run.sessionId, run.executionId, 2), {
      inputId: 2,
      data: { old: true },
    });
    const exec = (await server.kv.get<Record<string, unknown>>(keys.exec(run.executionId))).value!;
    await server.kv.set(keys.exec(run.executionId), { ...exec, lastInputId: 2 });
    const wrapper = await connectRun(run);
    await wrapper.until(() => wrapper.of("input").length === 2, "both inputs");
    assert.deepEqual(wrapper.of("input").map((m) => m.data), ["new shape", { old: true }]);
    await wrapper.close();
  },
);
