import assert from "node:assert/strict";
import { startAgent } from "./agent.ts";
import type { OutputStream } from "./frames.ts";
import { agent } from "./test_util.ts";

function collect() {
  const lines: [OutputStream, string][] = [];
  return {
    lines,
    onLine: (line: { text: string }, stream: OutputStream) => lines.push([stream, line.text]),
  };
}

Deno.test("startAgent forwards both streams and resolves after the last line", async () => {
  const { lines, onLine } = collect();
  const running = startAgent(agent("out:a", "err:b", "lines:2", "exit:5"), { onLine });
  assert.deepEqual(await running.exited, { code: 5, signal: null });
  assert.deepEqual(lines.filter(([s]) => s === "stdout").map(([, t]) => t), [
    "a",
    '{"type":"line","n":1}',
    '{"type":"line","n":2}',
  ]);
  assert.deepEqual(lines.filter(([s]) => s === "stderr"), [["stderr", "b"]]);
});

Deno.test("stop: SIGTERM first, SIGKILL after the grace period", async () => {
  const { lines, onLine } = collect();
  const running = startAgent(agent("ignore-term", "out:up", "hang"), { onLine });
  while (lines.length === 0) await new Promise((r) => setTimeout(r, 5));
  const t0 = performance.now();
  running.stop({ graceMs: 150 });
  running.stop({ graceMs: 150 }); // idempotent: the grace period is not restarted
  assert.deepEqual(await running.exited, { code: 137, signal: "SIGKILL" });
  assert.ok(performance.now() - t0 >= 140);
  running.stop({ signal: "SIGKILL", graceMs: 0 }); // after the exit: harmless
});

Deno.test("stop: an agent that honours SIGTERM exits at once; SIGKILL escalates", async () => {
  const { lines, onLine } = collect();
  const polite = startAgent(agent("trap:0", "out:up", "hang"), { onLine });
  while (lines.length === 0) await new Promise((r) => setTimeout(r, 5));
  polite.stop({ graceMs: 10_000 });
  assert.deepEqual(await polite.exited, { code: 0, signal: null });
  assert.deepEqual(lines.at(-1), ["stdout", "got SIGTERM"]);

  const seen = collect();
  const stubborn = startAgent(agent("ignore-term", "out:up", "hang"), { onLine: seen.onLine });
  // "up" is printed after the SIGTERM handler is set: a fixed wait could come before it.
  while (seen.lines.length === 0) await new Promise((r) => setTimeout(r, 5));
  stubborn.stop({ graceMs: 10_000 });
  const t0 = performance.now();
  stubborn.stop({ signal: "SIGKILL", graceMs: 10_000 });
  assert.equal((await stubborn.exited).signal, "SIGKILL");
  assert.ok(performance.now() - t0 < 5000);
});

Deno.test("output held open by a grandchild is given up after drainMs", async () => {
  const { lines, onLine } = collect();
  const t0 = performance.now();
  const running = startAgent(["sh", "-c", "echo hi; sleep 2 & exit 0"], { onLine, drainMs: 100 });
  assert.deepEqual(await running.exited, { code: 0, signal: null });
  assert.ok(performance.now() - t0 < 1500);
  assert.deepEqual(lines, [["stdout", "hi"]]);
});

Deno.test("a command that does not exist throws at start", () => {
  assert.throws(() => startAgent(["/nonexistent/agent"], collect()), Deno.errors.NotFound);
});
