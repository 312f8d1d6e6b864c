/**
 * The input channel end to end (PROTOCOL.md 12): a real agent process records what it reads
 * on stdin, behind the real wrapper CLI, and every input must reach it exactly once and in
 * order: sent before the wrapper connects, while it is connected, and while a cutting proxy
 * makes it reconnect dozens of times; sent to another instance than the one holding the
 * connection; and never rewritten by a fresh wrapper process for inputs already delivered.
 */
import assert from "node:assert/strict";
import { startChaosProxy } from "./helpers/chaos_proxy.ts";
import {
  connectRun,
  createRun,
  getExecution,
  IngestClient,
  type Run,
} from "./helpers/ingest_client.ts";
import { FAST_RECONNECT_ARGS } from "./helpers/chaos_run.ts";
import { spawnWrapper } from "./helpers/runs.ts";
import { startServer, tempKvPath, type TestServer } from "./helpers/server.ts";
import { seedFrom } from "./helpers/random.ts";

const AGENT = new URL("./helpers/input_agent.ts", import.meta.url).pathname;
const agent = (record: string) => [Deno.execPath(), "run", "-A", AGENT, record];

/** Posts an input, waiting and retrying while the execution's input queue is full (429). */
async function send(server: TestServer, run: Run, body: unknown): Promise<number> {
  for (;;) {
    const res = await server.call<{ inputId: number }>(
      `/v1/sessions/${run.sessionId}/executions/${run.executionId}/input`,
      { method: "POST", json: body },
    );
    if (res.status === 202) return res.body.inputId;
    assert.equal(res.status, 429, JSON.stringify(res.body));
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Each JSON line of the record file, parsed. */
async function recorded(path: string): Promise<unknown[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text === "" || text.endsWith("\n"), "the record ends with a whole line");
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

Deno.test(
  "inputs before connecting, while connected and across 50+ cuts: each once, in order",
  async () => {
    const seed = seedFrom("TETHER_CHAOS_SEED");
    const server = await startServer({ config: { disconnectGraceMs: 10_000, sweepMs: 100 } });
    const proxy = startChaosProxy({
      targetPort: Number(new URL(server.url).port),
      seed,
      cutAfterMs: [40, 200],
      delayChance: 0.02,
      delayMs: [1, 30],
    });
    const record = await Deno.makeTempFile();
    try {
      const run = await createRun(server, "in-chaos");
      let n = 0;
      for (; n < 10; n++) await send(server, run, { data: { n: n + 1 } }); // before connecting
      const wrapper = spawnWrapper({ ...run, ingestUrl: proxy.via(run.ingestUrl) }, agent(record), {
        wrapperArgs: ["--input", "jsonl", ...FAST_RECONNECT_ARGS],
      });
      while (proxy.stats.scheduledCuts < 50 || n < 150) {
        await send(server, run, { data: { n: ++n } });
        await new Promise((r) => setTimeout(r, 10));
      }
      const last = await send(server, run, { endOfInput: true });
      const status = await wrapper.status;
      const cuts = proxy.stats.scheduledCuts;
      proxy.calm();
      assert.equal(status.code, 0, `wrapper exit (seed ${seed})`);
      const expected = Array.from({ length: n }, (_, i) => ({ n: i + 1 }));
      assert.deepEqual(await recorded(record), expected, `seed ${seed}: each input once, in order`);
      const exec = await getExecution(server, run);
      assert.equal(exec.status, "completed");
      assert.deepEqual([exec.lastInputId, exec.deliveredInputId, exec.inputClosed], [
        last,
        last,
        true,
      ]);
      console.log(`input chaos: seed ${seed}, ${n} inputs, ${cuts} cuts`);
    } finally {
      await proxy.close();
      await server.close();
      await Deno.remove(record);
    }
  },
);

Deno.test(
  "a fresh wrapper for an execution with deliveredInputId 5 never writes inputs 1–5",
  async () => {
    const server = await startServer();
    const record = await Deno.makeTempFile();
    try {
      const run = await createRun(server, "in-fresh", { graceMs: 600_000 });
      for (let i = 1; i <= 7; i++) await send(server, run, { data: `input ${i}` });
      // An earlier wrapper process wrote inputs 1–5 and confirmed them, then died.
      const earlier = await connectRun(run, "old/1");
      await earlier.until(() => earlier.of("input").length === 7, "seven inputs");
      earlier.send({ streamEventType: "input_delivered", seq: 1, data: { inputId: 5 } });
      await earlier.ackOf(1);
      await earlier.close();
      const wrapper = spawnWrapper(run, agent(record), { wrapperArgs: ["--input", "text"] });
      await send(server, run, { endOfInput: true });
      assert.equal((await wrapper.status).code, 0);
      assert.equal(await Deno.readTextFile(record), "input 6\ninput 7\n");
      assert.equal((await getExecution(server, run)).deliveredInputId, 8);
    } finally {
      await server.close();
      await Deno.remove(record);
    }
  },
);

Deno.test("an input sent to another instance than the one holding the connection", async () => {
  const kv = await tempKvPath();
  const a = await startServer({ kvPath: kv.path });
  const b = await startServer({ kvPath: kv.path });
  try {
    const run = await createRun(a, "in-two", { graceMs: 600_000 });
    const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
    for (let i = 1; i <= 5; i++) await send(i % 2 ? b : a, run, { data: i });
    await wrapper.until(() => wrapper.of("input").length === 5, "five inputs on instance 1");
    assert.deepEqual(wrapper.of("input").map((m) => m.data), [1, 2, 3, 4, 5]);
    wrapper.send({ streamEventType: "input_delivered", seq: 1, data: { inputId: 5 } });
    await wrapper.ackOf(1);
    assert.equal((await getExecution(b, run)).deliveredInputId, 5);
    await wrapper.close();
  } finally {
    await a.close();
    await b.close();
    await kv.cleanup();
  }
});
