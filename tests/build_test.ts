/**
 * The single-file builds (PROTOCOL.md 13) under the machine's Node: `deno task build`, then
 * `node dist/tether-wrapper.mjs` runs a real run to `completed` through a proxy that cuts
 * the connection in the middle, and `node dist/tether.mjs` answers a command.
 */
import assert from "node:assert/strict";
import { build } from "../build/build.ts";
import { startChaosProxy } from "./helpers/chaos_proxy.ts";
import { eventually } from "./helpers/ingest_client.ts";
import { connectIngest } from "./helpers/runs.ts";
import { API_KEY, startServer } from "./helpers/server.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const decoder = new TextDecoder();

async function hasNode(): Promise<boolean> {
  try {
    return (await new Deno.Command("node", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "build: node runs dist/tether-wrapper.mjs to completed across a cut, and dist/tether.mjs",
  ignore: !(await hasNode()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await build();
    const server = await startServer();
    await using proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port) });
    try {
      await server.client.createSession({ sessionId: "node" });
      const run = await server.client.createExecution("node");
      const wrapper = new Deno.Command("node", {
        args: [
          "dist/tether-wrapper.mjs",
          "--ingest-url",
          proxy.via(run.ingestUrl),
          "--token",
          run.ingestToken,
          "--reconnect-base-ms",
          "50",
          "--",
          "node",
          "examples/agent.mjs",
          "--delay-ms",
          "100",
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const agentEvents = async () =>
        (await server.client.getEvents("node", { eventTypes: ["agent"] })).events.length;
      await eventually(async () => await agentEvents() >= 3, "the agent's first lines");
      assert.equal(proxy.cut(), 1, "the wrapper's connection was cut");
      const { code, stderr } = await wrapper.output();
      const log = decoder.decode(stderr);
      assert.equal(code, 0, log);
      assert.match(log, /connection lost/);
      assert.ok(proxy.stats.connections >= 2, "the wrapper reconnected");
      const exec = await server.client.getExecution("node", run.executionId);
      assert.equal(exec.status, "completed");
      const events = (await server.client.getEvents("node", { limit: 1000 })).events;
      const lines = events.filter((e) => e.streamEventType === "agent");
      assert.equal(lines.length, 11, "every line of the example agent, once");
      assert.deepEqual(
        events.map((e) => e.eventId),
        events.map((_, i) => i + 1),
      );

      const cli = await new Deno.Command("node", {
        args: ["dist/tether.mjs", "--json", "executions", "get", "node", run.executionId],
        cwd: ROOT,
        env: { TETHER_URL: server.url, TETHER_API_KEY: API_KEY },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(cli.code, 0, decoder.decode(cli.stderr));
      assert.equal(JSON.parse(decoder.decode(cli.stdout)).status, "completed");

      // ~500 KB into a pipe, which Node leaves non-blocking: every line arrives.
      await server.client.createSession({ sessionId: "pipe" });
      const conn = await connectIngest(await server.client.createExecution("pipe"));
      const text = "x".repeat(500);
      for (let i = 0; i < 1000; i++) conn.send({ streamEventType: "output", data: { text } });
      await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
      const printEvents = new Deno.Command("node", {
        args: ["dist/tether.mjs", "events", "pipe"],
        cwd: ROOT,
        env: { TETHER_URL: server.url, TETHER_API_KEY: API_KEY },
        stdout: "piped",
        stderr: "piped",
      });
      const whole = await printEvents.output();
      assert.equal(whole.code, 0, decoder.decode(whole.stderr));
      const printed = decoder.decode(whole.stdout).trim().split("\n");
      assert.equal(printed.filter((line) => / output /.test(line)).length, 1000);

      // A reader that goes away (`| head`): the Node build ends quietly with 141 too.
      const piped = printEvents.spawn();
      const reader = piped.stdout.getReader();
      assert.ok((await reader.read()).value);
      await reader.cancel();
      const [status, pipeErr] = await Promise.all([
        piped.status,
        new Response(piped.stderr).text(),
      ]);
      assert.equal(status.code, 141, pipeErr);
      assert.equal(pipeErr, "");

      for (const file of ["dist/tether.mjs", "dist/tether-wrapper.mjs"]) {
        const help = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", file, "--help"],
          cwd: ROOT,
          stdout: "piped",
        }).output();
        assert.equal(help.code, 0, `deno run -A ${file} --help`);
        assert.match(decoder.decode(help.stdout), /^Usage: /);
      }
    } finally {
      await server.close();
    }
  },
});
