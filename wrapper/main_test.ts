import assert from "node:assert/strict";
import { startFakeService } from "./testdata/fake_service.ts";
import { agent } from "./test_util.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** The CLI as a real process, as `deno task wrapper` runs it. */
function wrapper(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { TETHER_WRAPPER_RECONNECT_BASE_MS: "10", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function finished(child: Deno.ChildProcess) {
  const { code, stderr } = await child.output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

Deno.test("CLI: a bad option exits 64 with a message naming it", async () => {
  const args = [
    "--ingest-url=http://127.0.0.1:1/x",
    "--token=t",
    "--heartbeat-ms=often",
    "--",
    "x",
  ];
  const { code, stderr } = await finished(wrapper(args));
  assert.equal(code, 64);
  assert.match(stderr, /--heartbeat-ms/);
});

Deno.test("CLI: options from the environment; the agent's exit code decides", async () => {
  await using service = await startFakeService();
  const child = wrapper(["--", ...agent('out:{"type":"result"}', "exit:0")], {
    TETHER_INGEST_URL: service.url,
    TETHER_INGEST_TOKEN: "env-token",
  });
  assert.equal((await finished(child)).code, 0);
  assert.equal(service.dials[0].authorization, "Bearer env-token");
  assert.match(service.dials[0].dial!, /^[A-Za-z0-9_-]{1,64}\/1$/);
  assert.deepEqual(service.stored.map((f) => f.streamEventType), ["agent", "complete"]);
});

Deno.test("CLI: SIGTERM stops the agent, reports interrupted and exits 130", async () => {
  await using service = await startFakeService();
  const child = wrapper([
    `--ingest-url=${service.url}`,
    "--token=t",
    "--",
    ...agent("trap:0", "out:ready", "hang"),
  ]);
  await service.waitFor(() => service.stored.length === 1, { timeoutMs: 10_000 });
  child.kill("SIGTERM");
  const { code, stderr } = await finished(child);
  assert.equal(code, 130, stderr);
  assert.deepEqual(service.stored.at(-1)!.data, { reason: "Wrapper received SIGTERM" });
});

Deno.test("CLI: a refused token exits 4 without starting the agent", async () => {
  await using service = await startFakeService();
  service.plan({ kind: "close", code: 4401, reason: "unauthorized" });
  const child = wrapper([`--ingest-url=${service.url}`, "--token=bad", "--", ...agent("out:x")]);
  const { code, stderr } = await finished(child);
  assert.equal(code, 4);
  assert.doesNotMatch(stderr, /agent started/);
});
